// verilabel app
