from verilabel.cli import run_main

run_main()
