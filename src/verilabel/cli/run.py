"""``verilabel run ...``: generate labels in the background, follow, resume and cancel runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from verilabel.cli.output import EXIT_RUN_FAILED, JSON_OPTION_HELP, console, escape, fitted_table, plural, print_json

if TYPE_CHECKING:
    from rich.console import Console

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
    """Wait for a run: a live progress bar on a terminal, a line per status change (and every 10 s) when the
    output goes to a file or a pipe, nothing when ``quiet``."""
    from verilabel.runs.service import wait_run

    if quiet:
        return wait_run(store, run_id)
    out = console()
    if not out.is_terminal:
        return wait_run(store, run_id, on_progress=_ProgressLines(out))
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        console=out,
    ) as bar:
        task = bar.add_task("queued", total=None, detail="")

        def update(info: RunInfo) -> None:
            bar.update(
                task,
                description=escape(f"{info.name} [{info.status}]"),
                completed=info.done + info.failed,
                total=info.total or None,
                detail=_progress_detail(info),
            )

        return wait_run(store, run_id, on_progress=update)


def _progress_detail(info: RunInfo) -> str:
    """Speed (live, or the average once workers stopped), ETA when known, failures and labels."""
    parts = []
    if info.rate > 0:
        parts.append(f"{info.rate:.1f} img/s")
    elif info.average_rate is not None:
        parts.append(f"avg {info.average_rate:.1f} img/s")
    if info.eta_seconds is not None:
        parts.append(f"ETA {_duration(info.eta_seconds)}")
    parts += [f"{info.failed} failed", plural(info.labels, "label")]
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


class _ProgressLines:
    """Progress for logs: one line when the status changes, and one every ``every`` seconds meanwhile."""

    def __init__(self, out: Console, every: float = 10.0) -> None:
        self.out, self.every = out, every
        self.status, self.last = "", 0.0

    def __call__(self, info: RunInfo) -> None:
        import time

        if info.status == self.status and time.monotonic() - self.last < self.every:
            return
        self.status, self.last = info.status, time.monotonic()
        self.out.print(
            escape(f"{info.name} [{info.status}] {info.done + info.failed}/{info.total} samples, ")
            + _progress_detail(info)
        )


def finished_well(info: RunInfo) -> bool:
    return info.status in ("in_review", "approved") and not info.stalled


def exit_unless_finished(info: RunInfo) -> None:
    """Exit with code 3 when a run that was waited for ended in error, was cancelled or stalled: scripts that
    chain commands after `--wait` must not go on with a run that has no labels to review."""
    if not finished_well(info):
        raise typer.Exit(EXIT_RUN_FAILED)


def _summary(info: RunInfo) -> None:
    out = console()
    colour = {"in_review": "green", "approved": "green", "error": "red", "cancelled": "yellow"}.get(info.status, "cyan")
    state = f"[{colour}]{info.status}[/]" + (
        " [red](stalled: no live worker; `verilabel run resume` continues it)[/]" if info.stalled else ""
    )
    out.print(f"run [bold]{escape(info.name)}[/] ({info.id}) on {escape(info.dataset)}: {state}")
    floor = "" if info.min_confidence is None else f", min confidence {info.min_confidence:g}"
    out.print(f"  {info.task} with {escape(info.model)} -> field [cyan]{escape(info.field)}[/]{floor}")
    runtime = _runtime_text(info.model_info)
    if runtime:
        out.print(f"  runtime: {runtime}")
    speed = []
    if info.rate > 0:
        speed.append(f"{info.rate:.1f} img/s")
        if info.eta_seconds:
            speed.append(f"ETA {_duration(info.eta_seconds)}")
    elif info.average_rate is not None:
        speed.append(f"average {info.average_rate:.1f} img/s")
    out.print(
        f"  progress: {info.done} done, {info.failed} failed, {info.pending} pending of {info.total}"
        + (f" ({', '.join(speed)})" if speed else "")
    )
    out.print(f"  labels: {_labels_text(info)} in {plural(info.classes, 'class')}")
    if info.error:
        out.print(f"  [red]error:[/] {escape(info.error)}")
    for failure in info.failures[:5]:
        out.print(f"  [yellow]failed[/] sample {failure['sample_id']}: {escape(str(failure['error']))}")
    if info.failed > 5:
        out.print(f"  ... and {info.failed - 5} more failures (`verilabel run show {info.id} --json`)")


def _runtime_text(model_info: dict[str, Any]) -> str:
    """What ran the model, on which device, and why when ``auto`` did not take ONNX Runtime."""
    name = model_info.get("runtime")
    if not name:
        return ""
    details = [str(model_info["device"])] if model_info.get("device") else []
    if model_info.get("runtime_export"):
        details.append(f"export {model_info['runtime_export']}")
    text = f"{escape(str(name))}" + (f" on {', '.join(escape(d) for d in details)}" if details else "")
    reason = model_info.get("runtime_reason")
    if reason:
        colour = "yellow" if model_info.get("runtime_warning") else "dim"
        text += f" [{colour}]({escape(str(reason))})[/]"
    return text


def _labels_text(info: RunInfo) -> str:
    """Where the labels are: generated (in review, some promoted), or approved into the dataset."""
    if info.status == "approved":
        return f"{info.labels} approved into the dataset, {info.discarded or 0} discarded"
    if info.status == "in_review":
        return f"{info.labels} in review ({info.promoted} promoted)"
    return str(info.labels)


def run_ref(store: Store, info: RunInfo) -> str:
    """How to name the run in a next command: its name, or DATASET/NAME when another dataset has a run of that
    name."""
    from verilabel.errors import ConflictError
    from verilabel.runs.service import get_run

    try:
        get_run(store, info.name)
    except ConflictError:
        return f"{info.dataset}/{info.name}"
    return info.name


@app.command("create")
def create(
    dataset: str = typer.Argument(..., help="Dataset to label."),
    task: str = typer.Option(..., "--task", help="classification, detection, segmentation or keypoints."),
    model: str = typer.Option(..., "--model", help="Catalogue name (`verilabel models`) or python:pkg.mod:factory."),
    field: str = typer.Option(..., "--field", help="New label field for the generated labels."),
    weights: str | None = typer.Option(None, "--weights", help="Local weights file/folder or another hub id."),
    classes: str | None = typer.Option(None, "--classes", help="Comma-separated classes (required for zero-shot)."),
    alias: list[str] = typer.Option(
        [], "--alias", help="DATASET_CLASS=MODEL_CLASS[,...]; repeatable. Synonyms: --alias dog=dog,puppy."
    ),
    negative: list[str] = typer.Option(
        [],
        "--negative",
        help="Look-alikes to suppress, comma-separated or repeated (--negative 'toy dog'): asked for, never "
        "stored; a box they find and outscore is dropped.",
    ),
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
    runtime: str = typer.Option(
        "auto",
        "--runtime",
        help="What runs the network: auto (ONNX Runtime on a CPU where the model exports, 2-3x faster; torch "
        "otherwise), torch, or onnx.",
    ),
    model_option: list[str] = typer.Option([], "--model-option", help="KEY=VALUE passed to the model; repeatable."),
    executor: str = typer.Option(
        "local", "--executor", help="local (worker processes on this machine) or ray (actors on a Ray cluster)."
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray: auto (the cluster this machine joined), ray://HOST:10001, or none (local)."
    ),
    gpus_per_worker: float | None = typer.Option(
        None, "--gpus-per-worker", help="Ray: GPUs per worker (default 1 where the cluster has GPUs, else 0)."
    ),
    cpus_per_worker: float | None = typer.Option(None, "--cpus-per-worker", help="Ray: CPUs per worker (1)."),
    shards: int | None = typer.Option(
        None, "--shards", help="Ray: pieces the samples are cut into, handed to workers as they free up (8 each)."
    ),
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
        negatives=negative,
        min_confidence=min_confidence,
        weights=weights,
        mask_dir=mask_dir,
        name=name,
        target=target,
        workers=workers,
        batch_size=batch_size,
        max_labels=max_labels,
        device=device,
        runtime=runtime,
        model_options=_model_options(model_option),
        executor=executor,
        ray_address=ray_address,
        gpus_per_worker=gpus_per_worker,
        cpus_per_worker=cpus_per_worker,
        shards=shards,
    )
    info = create_run(store, request)
    if wait:
        info = follow(store, info.id, quiet=as_json)
    if as_json:
        print_json({"id": info.id, **({"status": info.status, "name": info.name} if not wait else info.to_json())})
    elif not wait:
        console().print(
            f"run [bold]{escape(info.name)}[/] ({info.id}) started on {plural(info.total, 'sample')}; follow it "
            f"with `verilabel run watch {escape(run_ref(store, info))}`"
        )
    else:
        _summary(info)
    if wait:
        exit_unless_finished(info)


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

    from verilabel.runs.service import list_runs
    from verilabel.store import Store

    infos = list_runs(Store.open(), dataset)
    if as_json:
        print_json([i.to_json() for i in infos])
        return
    with_field = any(i.field != i.name for i in infos)
    columns = [("id", True), ("name", False), ("status", True), ("progress", True), ("labels", True)]
    columns += [("field", False)] * with_field + [("model", False)]
    rows = [
        [
            i.id,
            i.name,
            i.status + (" (stalled)" if i.stalled else ""),
            f"{i.done + i.failed}/{i.total}" + (f" ({i.failed} failed)" if i.failed else ""),
            _labels_cell(i),
            *([i.field] if with_field else []),
            i.model,
        ]
        for i in infos
    ]
    console().print(
        fitted_table(columns, rows) if infos else f"no runs on {dataset} yet: `verilabel run create {dataset} ...`"
    )


def _labels_cell(info: RunInfo) -> str:
    if info.status == "approved":
        return f"{info.labels} approved"
    if info.status == "in_review" and info.promoted:
        return f"{info.labels} ({info.promoted} promoted)"
    return str(info.labels)


@app.command("show")
def show(
    run: str = typer.Argument(..., help="Run id, name or field (DATASET/NAME when ambiguous)."),
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
def watch(run: str = typer.Argument(..., help="Run id, name or field (DATASET/NAME when ambiguous).")) -> None:
    """Follow a run with a live progress bar until it finishes (exit code 3 if it ends in error, cancelled or
    stalled)."""
    from verilabel.runs.service import get_run
    from verilabel.store import Store

    store = Store.open()
    info = follow(store, get_run(store, run).id)
    _summary(info)
    exit_unless_finished(info)


@app.command("resume")
def resume(
    run: str = typer.Argument(..., help="Run id, name or field (DATASET/NAME when ambiguous)."),
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
    if wait:
        exit_unless_finished(info)


@app.command("cancel")
def cancel(
    run: str = typer.Argument(..., help="Run id, name or field (DATASET/NAME when ambiguous)."),
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


@app.command("delete")
def delete(
    run: str = typer.Argument(..., help="Run id, name or field (DATASET/NAME when ambiguous)."),
    yes: bool = typer.Option(False, "--yes", help="Confirm: the run's labels are deleted for good."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Delete a run not yet approved: stops its workers, deletes its labels and masks, frees its field."""
    from verilabel.errors import ConfigError
    from verilabel.runs.service import delete_run
    from verilabel.store import Store

    if not yes:
        raise ConfigError("yes", f"deleting run {run!r} deletes its generated labels for good: pass --yes")
    result = delete_run(Store.open(), run)
    if as_json:
        print_json(result.to_json())
        return
    freed = f"; field {result.field_freed!r} is free again" if result.field_freed else ""
    console().print(
        f"deleted run {escape(result.run)}: {plural(result.labels, 'label')} and {plural(result.masks, 'mask file')}"
        + escape(freed)
    )
