"""``verilabel run ...``: generate labels in the background, follow, resume and cancel runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from verilabel.cli.output import JSON_OPTION_HELP, console, print_json

if TYPE_CHECKING:
    from verilabel.runs.service import RunInfo
    from verilabel.store import Store

app = typer.Typer(no_args_is_help=True, help="Generate labels in the background and follow the runs.")


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _model_options(values: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` pairs; a VALUE that reads as JSON (numbers, true, lists) is parsed as JSON."""
    import json

    from verilabel.errors import ConfigError

    options: dict[str, object] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key.strip():
            raise ConfigError("model_option", f"cannot read {value!r}: write KEY=VALUE, e.g. detections_per_img=20")
        try:
            options[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            options[key.strip()] = raw
    return options


def follow(store: Store, run_id: str, *, quiet: bool = False) -> RunInfo:
    """Wait for a run, with a live progress bar unless ``quiet``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from verilabel.runs.service import wait_run

    if quiet:
        return wait_run(store, run_id)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
        console=console(),
    ) as bar:
        task = bar.add_task("queued", total=None, detail="")

        def update(info: RunInfo) -> None:
            detail = f"{info.rate:.1f} img/s, {info.failed} failed, {info.labels} labels"
            bar.update(
                task,
                description=f"{info.name} [{info.status}]",
                completed=info.done + info.failed,
                total=info.total or None,
                detail=detail,
            )

        return wait_run(store, run_id, on_progress=update)


def _summary(info: RunInfo) -> None:
    out = console()
    colour = {"in_review": "green", "error": "red", "cancelled": "yellow"}.get(info.status, "cyan")
    state = f"[{colour}]{info.status}[/]" + (
        " [red](stalled: no live worker; `verilabel run resume` continues it)[/]" if info.stalled else ""
    )
    out.print(f"run [bold]{info.name}[/] ({info.id}) on {info.dataset}: {state}")
    out.print(
        f"  {info.task} with {info.model} -> field [cyan]{info.field}[/], min confidence "
        f"{info.config.get('min_confidence')}"
    )
    eta = f", ETA {info.eta_seconds:.0f}s" if info.eta_seconds else ""
    out.print(
        f"  progress: {info.done} done, {info.failed} failed, {info.pending} pending of {info.total}"
        f" ({info.rate:.1f} img/s{eta})"
    )
    out.print(f"  labels: {info.labels} in {info.classes} classes")
    if info.error:
        out.print(f"  [red]error:[/] {info.error}")
    for failure in info.failures[:5]:
        out.print(f"  [yellow]failed[/] sample {failure['sample_id']}: {failure['error']}")
    if info.failed > 5:
        out.print(f"  ... and {info.failed - 5} more failures (`verilabel run show {info.id} --json`)")


@app.command("create")
def create(
    dataset: str = typer.Argument(..., help="Dataset to label."),
    task: str = typer.Option(..., "--task", help="classification, detection, segmentation or keypoints."),
    model: str = typer.Option(..., "--model", help="Catalogue name (`verilabel models`) or python:pkg.mod:factory."),
    field: str = typer.Option(..., "--field", help="New label field for the generated labels."),
    weights: str | None = typer.Option(None, "--weights", help="Local weights file/folder or another hub id."),
    classes: str | None = typer.Option(None, "--classes", help="Comma-separated classes (required for zero-shot)."),
    alias: list[str] = typer.Option([], "--alias", help="DATASET_CLASS=MODEL_CLASS[,...]; repeatable."),
    min_confidence: float | None = typer.Option(None, "--min-confidence", help="Drop labels below this (0..1)."),
    name: str | None = typer.Option(None, "--name", help="Run name (generated if absent)."),
    target: str = typer.Option("all", "--target", help="all | view:EXPR | ids:FILE"),
    mask_dir: str | None = typer.Option(None, "--mask-dir", help="Where masks are written (segmentation)."),
    workers: int = typer.Option(
        1,
        "--workers",
        help="Parallel worker processes: one GPU each when there are several, else sharing the GPU (for fast "
        "models whose decoding outpaces one process) or splitting the CPU cores.",
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per model call (model default)."),
    max_labels: int | None = typer.Option(
        None, "--max-labels", help="Keep at most this many labels per image, the most confident."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    model_option: list[str] = typer.Option([], "--model-option", help="KEY=VALUE passed to the model; repeatable."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the run to finish, with a progress bar."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Create a run; it generates labels in the background and this returns at once (unless --wait)."""
    from verilabel.runs.config import RunRequest
    from verilabel.runs.service import create_run
    from verilabel.store import Store

    store = Store.open()
    request = RunRequest(
        dataset=dataset,
        task=task,
        model=model,
        field=field,
        classes=_split(classes),
        aliases=alias,
        min_confidence=min_confidence,
        weights=weights,
        mask_dir=mask_dir,
        name=name,
        target=target,
        workers=workers,
        batch_size=batch_size,
        max_labels=max_labels,
        device=device,
        model_options=_model_options(model_option),
    )
    info = create_run(store, request)
    if wait:
        info = follow(store, info.id, quiet=as_json)
    if as_json:
        print_json({"id": info.id, **({"status": info.status, "name": info.name} if not wait else info.to_json())})
        return
    if not wait:
        console().print(
            f"run [bold]{info.name}[/] ({info.id}) started on {info.total} samples; follow it with "
            f"`verilabel run watch {info.id}`"
        )
    else:
        _summary(info)


@app.command("analyze")
def analyze(
    dataset: str = typer.Argument(...),
    field: str = typer.Option(..., "--field", help="Existing label field whose labels have confidences."),
    name: str | None = typer.Option(None, "--name", help="Run name (generated if absent)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Review an existing label field: a run that starts in review with its labels."""
    from verilabel.review.service import analyze_field
    from verilabel.runs.service import get_run
    from verilabel.store import Store

    store = Store.open()
    info = get_run(store, analyze_field(store, dataset, field, name=name))
    if as_json:
        print_json(info.to_json())
    else:
        _summary(info)


@app.command("list")
def list_(
    dataset: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP)
) -> None:
    """List the runs of a dataset."""
    from rich.table import Table

    from verilabel.runs.service import list_runs
    from verilabel.store import Store

    infos = list_runs(Store.open(), dataset)
    if as_json:
        print_json([i.to_json() for i in infos])
        return
    table = Table("id", "name", "status", "model", "field", "done", "failed", "total", "labels")
    for i in infos:
        status = i.status + (" (stalled)" if i.stalled else "")
        table.add_row(i.id, i.name, status, i.model, i.field, str(i.done), str(i.failed), str(i.total), str(i.labels))
    console().print(table if infos else f"no runs on {dataset} yet: `verilabel run create {dataset} ...`")


@app.command("show")
def show(
    run: str = typer.Argument(..., help="Run id or name."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Show a run: status, progress, failures, timings."""
    from verilabel.runs.service import get_run
    from verilabel.store import Store

    info = get_run(Store.open(), run)
    if as_json:
        print_json(info.to_json())
    else:
        _summary(info)


@app.command("watch")
def watch(run: str = typer.Argument(..., help="Run id or name.")) -> None:
    """Follow a run with a live progress bar until it finishes."""
    from verilabel.runs.service import get_run
    from verilabel.store import Store

    store = Store.open()
    _summary(follow(store, get_run(store, run).id))


@app.command("resume")
def resume(
    run: str = typer.Argument(..., help="Run id or name."),
    workers: int | None = typer.Option(None, "--workers", help="Worker count (default: as before)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Also retry samples that failed."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the run to finish."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Continue an errored, cancelled or stalled run: finished samples are skipped."""
    from verilabel.runs.service import resume_run
    from verilabel.store import Store

    store = Store.open()
    info = resume_run(store, run, workers=workers, retry_failed=retry_failed)
    if wait:
        info = follow(store, info.id, quiet=as_json)
    if as_json:
        print_json(info.to_json())
    else:
        _summary(info)


@app.command("cancel")
def cancel(
    run: str = typer.Argument(..., help="Run id or name."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Ask a run's workers to stop after their current batch (labels written so far are kept)."""
    from verilabel.runs.service import cancel_run
    from verilabel.store import Store

    info = cancel_run(Store.open(), run)
    if as_json:
        print_json(info.to_json())
    else:
        console().print(f"cancel requested for {info.name}; `verilabel run resume {info.id}` continues it later")
