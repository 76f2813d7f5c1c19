"""``verilabel dataset ...``: create datasets from folders, COCO or YOLO; list and show them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from verilabel.cli.output import JSON_OPTION_HELP, console, print_json

if TYPE_CHECKING:
    from verilabel.datasets.service import ImportSummary

app = typer.Typer(no_args_is_help=True, help="Create, list and inspect datasets.")


def _with_progress(label: str, work: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True, console=console()
    ) as bar:
        task = bar.add_task(label, total=None)
        return work(lambda done, total: bar.update(task, completed=done, total=total))


def _report(summary: ImportSummary, as_json: bool) -> None:
    if as_json:
        print_json(summary.to_json())
        return
    out = console()
    out.print(
        f"[bold]{summary.dataset}[/]: {summary.added} samples added, {summary.already_present} already "
        f"present, {summary.labels} labels imported"
    )
    if summary.unreadable:
        out.print(
            f"[yellow]{len(summary.unreadable)} files could not be read[/] (kept as samples; runs will "
            "record them as failures), e.g. " + ", ".join(summary.unreadable[:3])
        )


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Dataset name."),
    from_dir: Path | None = typer.Option(None, "--from-dir", help="Folder of images (searched recursively)."),
    from_coco: Path | None = typer.Option(None, "--from-coco", help="COCO detection JSON file."),
    images: Path | None = typer.Option(None, "--images", help="Image folder of --from-coco."),
    from_yolo: Path | None = typer.Option(None, "--from-yolo", help="YOLO dataset root (data.yaml, images/, labels/)."),
    from_voc: Path | None = typer.Option(
        None, "--from-voc", help="Pascal VOC root (Annotations/, JPEGImages/), or a folder of XML files beside images."
    ),
    field: str = typer.Option("ground_truth", "--field", help="Label field for imported COCO / YOLO / VOC labels."),
    exist_ok: bool = typer.Option(False, "--exist-ok", help="Add to the dataset if it already exists."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Create a dataset (media files stay where they are)."""
    from verilabel.datasets import service
    from verilabel.errors import ConfigError
    from verilabel.store import Store

    sources = [s for s in (from_dir, from_coco, from_yolo, from_voc) if s is not None]
    if len(sources) > 1:
        raise ConfigError("source", "pass only one of --from-dir, --from-coco, --from-yolo, --from-voc")
    if from_coco is not None and images is None:
        raise ConfigError("images", "--from-coco needs --images DIR (the folder its file_name values are in)")
    store = Store.open()
    info = service.create_dataset(store, name, exist_ok=exist_ok)
    summary: ImportSummary | None = None
    if from_dir is not None:
        summary = _with_progress("probing images", lambda p: service.add_images(store, name, from_dir, progress=p))
    elif from_coco is not None:
        assert images is not None
        summary = service.import_coco(store, name, from_coco, images, field_name=field)
    elif from_yolo is not None:
        summary = _with_progress(
            "probing images", lambda p: service.import_yolo(store, name, from_yolo, field_name=field, progress=p)
        )
    elif from_voc is not None:
        summary = service.import_voc(store, name, from_voc, field_name=field)
    if summary is not None:
        _report(summary, as_json)
    elif as_json:
        print_json(info.to_json())
    else:
        console().print(
            f"created empty dataset [bold]{name}[/]; add images with `verilabel dataset add {name} --from-dir DIR`"
        )


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Dataset name."),
    from_dir: Path = typer.Option(
        ..., "--from-dir", help="Folder of images; only files not yet in the dataset are added."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Add the new images of a folder to a dataset."""
    from verilabel.datasets import service
    from verilabel.store import Store

    store = Store.open()
    _report(_with_progress("probing images", lambda p: service.add_images(store, name, from_dir, progress=p)), as_json)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP)) -> None:
    """List datasets."""
    from rich.table import Table

    from verilabel.datasets import service
    from verilabel.store import Store

    infos = service.list_datasets(Store.open())
    if as_json:
        print_json([i.to_json() for i in infos])
        return
    table = Table("name", "samples", "label fields", "created")
    for info in infos:
        table.add_row(info.name, str(info.samples), ", ".join(info.fields) or "-", f"{info.created_at:%Y-%m-%d %H:%M}")
    console().print(table if infos else "no datasets yet: `verilabel dataset create NAME --from-dir DIR`")


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Dataset name."),
    view: str | None = typer.Option(None, "--view", help="Only samples matching this view expression."),
    limit: int = typer.Option(10, "--limit", help="How many samples to list."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Show a dataset: counts, label fields, tags and its first samples."""
    from rich.table import Table

    from verilabel.datasets import service
    from verilabel.datasets.views import parse_view
    from verilabel.store import Store

    store = Store.open()
    info = service.dataset_info(store, name)
    parsed = parse_view(view) if view else None
    matching = len(service.sample_ids(store, name, parsed)) if parsed else info.samples
    rows = service.samples(store, name, parsed, limit=limit)
    if as_json:
        print_json({**info.to_json(), "matching": matching, "first_samples": [s.to_json() for s in rows]})
        return
    out = console()
    out.print(f"[bold]{info.name}[/]: {info.samples} samples" + (f", {matching} match the view" if parsed else ""))
    for field_name, meta in info.fields.items():
        out.print(f"  field [cyan]{field_name}[/] ({meta['kind']}): {meta['labels']} labels")
    if info.tags:
        out.print("  tags: " + ", ".join(f"{t} ({n})" for t, n in info.tags.items()))
    table = Table("id", "path", "size", "tags")
    for s in rows:
        table.add_row(str(s.id), s.path, f"{s.width}x{s.height}" if s.width else "unreadable", ",".join(s.tags))
    out.print(table)


@app.command("delete")
def delete(name: str = typer.Argument(...), yes: bool = typer.Option(False, "--yes", help="Confirm.")) -> None:
    """Delete a dataset with its samples, labels and runs (media files are left alone)."""
    from verilabel.datasets import service
    from verilabel.errors import ConfigError
    from verilabel.store import Store

    if not yes:
        raise ConfigError("yes", f"deleting {name!r} removes its labels and runs: pass --yes to confirm")
    service.delete_dataset(Store.open(), name)
    console().print(f"deleted dataset {name}")
