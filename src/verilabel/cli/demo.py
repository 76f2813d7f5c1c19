"""``verilabel demo``: label sample images with the offline models and leave the runs in review."""

from __future__ import annotations

import typer

from verilabel.cli.output import JSON_OPTION_HELP, console, escape, plural, print_json


def demo(
    dataset: str = typer.Option("demo", "--dataset", help="Name of the demo dataset (recreated if it exists)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Build a small dataset from scikit-image's sample images and label it with the offline models."""
    from verilabel.cli.run import exit_unless_finished, follow
    from verilabel.demo import DEMO_RUNS, build_demo
    from verilabel.store import Store

    store = Store.open()
    summary, runs, skipped = build_demo(store, dataset)
    out = console()
    if not as_json:
        out.print(
            f"dataset [bold]{dataset}[/]: {summary.added} sample images from scikit-image "
            f"({len(summary.unreadable)} unreadable)"
        )
        for run in runs:
            why = next(d.why for d in DEMO_RUNS if d.model == run.model)
            out.print(f"  run [bold]{run.name}[/] ({run.model}): {why}")
        for name in skipped:
            out.print(f"  [yellow]skipped[/] {escape(name)}")
    finished = [follow(store, run.id, quiet=as_json) for run in runs]
    if as_json:
        print_json(
            {
                "dataset": dataset,
                "samples": summary.added,
                "skipped": skipped,
                "runs": [info.to_json() for info in finished],
            }
        )
        for info in finished:
            exit_unless_finished(info)
        return
    out.print()
    for info in finished:
        colour = "green" if info.status == "in_review" else "red"
        out.print(
            f"[{colour}]{info.status}[/] {info.name}: {plural(info.labels, 'label')} in "
            f"{plural(info.classes, 'class')} on {plural(info.done, 'image')} ({info.failed} failed)"
            + (f": {info.error}" if info.error else "")
        )
    out.print("\nWhat to look at next:")
    steps = [
        ("verilabel serve --open", f"see and review the labels in your browser (dataset {dataset})"),
        (f"verilabel run list {dataset}", "the runs, now in review"),
    ]
    if finished:
        first = finished[0].name
        steps += [
            (f"verilabel run show {first}", "progress, failures, per-stage timings"),
            (f"verilabel review table {first}", "per class: instances and mean confidence"),
            (f"verilabel review labels {first} --min-confidence 0.8", "the most confident labels"),
            (f"verilabel review promote {first} --min-confidence 0.8", "promote them for approval"),
            (f"verilabel review approve {first} --yes", "write them into the dataset"),
        ]
    steps += [(f"verilabel dataset show {dataset}", "samples and fields"), ("verilabel models", "the catalogue")]
    width = max(len(command) for command, _ in steps)
    for command, why in steps:
        out.print(f"  {command.ljust(width)}  # {why}", soft_wrap=True)
    for info in finished:
        exit_unless_finished(info)
