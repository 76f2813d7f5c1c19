"""``verilabel tag`` and ``verilabel export``."""

from __future__ import annotations

from pathlib import Path

import typer

from verilabel.cli.output import JSON_OPTION_HELP, console, print_json

tag_app = typer.Typer(no_args_is_help=True, help="Tag samples (e.g. needs-fix); tags work in views: tags=needs-fix.")


def _tag(add: bool, dataset: str, tags: list[str], view: str | None, as_json: bool) -> None:
    from verilabel.datasets import service
    from verilabel.datasets.views import parse_view
    from verilabel.store import Store

    parsed = parse_view(view) if view else None
    change = service.tag_samples if add else service.untag_samples
    count = change(Store.open(), dataset, tags, parsed)
    key = "tagged" if add else "untagged"
    print_json({key: count}) if as_json else console().print(f"{key} {count} (sample, tag) pairs")


@tag_app.command("add")
def add(
    dataset: str = typer.Argument(...),
    tags: list[str] = typer.Argument(..., help="Tags to add."),
    view: str | None = typer.Option(None, "--view", help="Only samples matching this view expression."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Add tags to the samples of a dataset (or of a view)."""
    _tag(True, dataset, tags, view, as_json)


@tag_app.command("remove")
def remove(
    dataset: str = typer.Argument(...),
    tags: list[str] = typer.Argument(..., help="Tags to remove."),
    view: str | None = typer.Option(None, "--view", help="Only samples matching this view expression."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Remove tags from the samples of a dataset (or of a view)."""
    _tag(False, dataset, tags, view, as_json)


def export(
    dataset: str = typer.Argument(...),
    field: str = typer.Option(..., "--field", help="Label field to export."),
    fmt: str = typer.Option(..., "--format", help="coco, yolo, voc, label-studio, cvat or fiftyone."),
    out: Path = typer.Option(..., "--out", help="Output folder (fiftyone: the name of the FiftyOne dataset)."),
    view: str | None = typer.Option(None, "--view", help="Only samples matching this view expression."),
    with_scores: bool = typer.Option(
        False, "--with-scores", help="YOLO: end each label line with its confidence (not trainable as is)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="fiftyone: replace a FiftyOne dataset of that name."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Export a label field to COCO JSON, a YOLO folder, a Pascal VOC folder, Label Studio tasks, CVAT XML or a
    FiftyOne dataset (media are never copied)."""
    from verilabel.datasets.export import export_field
    from verilabel.datasets.views import parse_view
    from verilabel.store import Store

    parsed = parse_view(view) if view else None
    summary = export_field(
        Store.open(), dataset, field, fmt, out, view=parsed, with_scores=with_scores, overwrite=overwrite
    )
    if as_json:
        print_json(summary.to_json())
    else:
        console().print(f"exported {summary.labels} labels on {summary.images} images to {summary.path}")
        if summary.next_step:
            console().print(f"next: {summary.next_step}")
