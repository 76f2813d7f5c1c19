"""``verilabel review ...``: the class table, promote, undo, approve."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from verilabel.cli.output import JSON_OPTION_HELP, console, print_json

if TYPE_CHECKING:
    from verilabel.review.service import LabelQuery

app = typer.Typer(no_args_is_help=True, help="Review generated labels: filter, promote, undo, approve.")

MIN_HELP = "Only labels with confidence >= this."
MAX_HELP = "Only labels with confidence <= this."


def _query(
    min_confidence: float | None,
    max_confidence: float | None,
    classes: list[str],
    samples: Path | None = None,
    labels: Path | None = None,
    view: str | None = None,
    tags: list[str] | None = None,
) -> LabelQuery:
    from verilabel.datasets.service import read_id_file
    from verilabel.datasets.views import parse_view
    from verilabel.errors import ConfigError
    from verilabel.review.service import LabelQuery

    label_ids = None
    if labels is not None:
        try:
            label_ids = [line.strip() for line in labels.read_text().split() if line.strip()]
        except FileNotFoundError:
            raise ConfigError("labels", f"label id file not found: {labels}") from None
    try:
        sample_ids = read_id_file(samples) if samples is not None else None
    except FileNotFoundError:
        raise ConfigError("samples", f"sample id file not found: {samples}") from None
    return LabelQuery(
        min_confidence=min_confidence,
        max_confidence=max_confidence,
        classes=list(classes),
        sample_ids=sample_ids,
        view=parse_view(view) if view else None,
        label_ids=label_ids,
        tags=list(tags or []),
    )


@app.command("table")
def table(
    run: str = typer.Argument(..., help="Run id, name or field (DATASET/NAME when ambiguous)."),
    min_confidence: float | None = typer.Option(None, "--min-confidence", help=MIN_HELP),
    max_confidence: float | None = typer.Option(None, "--max-confidence", help=MAX_HELP),
    classes: list[str] = typer.Option([], "--class", help="Only this class; repeatable."),
    samples: Path | None = typer.Option(None, "--samples", help="File of sample ids (JSON list or one per line)."),
    view: str | None = typer.Option(None, "--view", help="Only samples matching this view expression."),
    approval: bool = typer.Option(False, "--approval", help="The approval set (promoted labels) instead."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Per class: instances in the current filter of the total, and their mean confidence."""
    from verilabel.review.service import class_table
    from verilabel.store import Store

    rows = class_table(
        Store.open(), run, _query(min_confidence, max_confidence, classes, samples, view=view), approval=approval
    )
    if as_json:
        print_json([r.to_json() for r in rows])
        return
    from rich.table import Table

    out = Table("label", "instances", "mean confidence", title="approval set" if approval else "review set")
    for r in rows:
        mean = "-" if r.mean_confidence is None else f"{r.mean_confidence:.3f}"
        out.add_row(r.label, f"{r.instances} of {r.total}" if r.instances != r.total else str(r.total), mean)
    console().print(out)


@app.command("promote")
def promote(
    run: str = typer.Argument(..., help="Run id, name or field (DATASET/NAME when ambiguous)."),
    classes: list[str] = typer.Option([], "--class", help="Only this class; repeatable."),
    min_confidence: float | None = typer.Option(None, "--min-confidence", help=MIN_HELP),
    max_confidence: float | None = typer.Option(None, "--max-confidence", help=MAX_HELP),
    samples: Path | None = typer.Option(None, "--samples", help="File of sample ids."),
    labels: Path | None = typer.Option(None, "--labels", help="File of label ids, one per line."),
    view: str | None = typer.Option(None, "--view", help="Only samples matching this view expression."),
    tags: list[str] = typer.Option([], "--tag", help="Only labels with this tag; repeatable."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Promote the matching review labels for approval."""
    from verilabel.review.service import promote as promote_labels
    from verilabel.store import Store

    count = promote_labels(
        Store.open(), run, _query(min_confidence, max_confidence, classes, samples, labels, view, tags)
    )
    print_json({"promoted": count}) if as_json else console().print(f"promoted {count} labels for approval")


@app.command("undo")
def undo(
    run: str = typer.Argument(..., help="Run id, name or field (DATASET/NAME when ambiguous)."),
    all_: bool = typer.Option(False, "--all", help="Return every promoted label to review."),
    classes: list[str] = typer.Option([], "--class", help="Return this class; repeatable."),
    labels: Path | None = typer.Option(None, "--labels", help="File of label ids, one per line."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Return promoted labels to the review set: all, per class, or per label id."""
    from verilabel.errors import ConfigError
    from verilabel.review.service import undo as undo_labels
    from verilabel.store import Store

    if all_ == bool(classes or labels):
        raise ConfigError("undo", "say what to undo: --all, or --class C (repeatable), or --labels FILE")
    count = undo_labels(Store.open(), run, None if all_ else _query(None, None, classes, labels=labels))
    print_json({"undone": count}) if as_json else console().print(f"returned {count} labels to review")


@app.command("approve")
def approve(
    run: str = typer.Argument(..., help="Run id, name or field (DATASET/NAME when ambiguous)."),
    yes: bool = typer.Option(False, "--yes", help="Confirm: approval is final."),
    allow_empty: bool = typer.Option(
        False, "--allow-empty", help="Approve even with nothing promoted: every label is discarded."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Write promoted labels into the dataset and discard the rest. Final: the run closes."""
    from verilabel.errors import ConfigError
    from verilabel.review.service import approve as approve_run
    from verilabel.store import Store

    if not yes:
        raise ConfigError("yes", "approval writes the promoted labels and deletes the others, for good: pass --yes")
    result = approve_run(Store.open(), run, allow_empty=allow_empty)
    if as_json:
        print_json(result.to_json())
    else:
        console().print(f"approved {result.approved} labels into field {result.field}; discarded {result.discarded}")


@app.command("labels")
def labels_(
    run: str = typer.Argument(..., help="Run id, name or field (DATASET/NAME when ambiguous)."),
    classes: list[str] = typer.Option([], "--class", help="Only this class; repeatable."),
    min_confidence: float | None = typer.Option(None, "--min-confidence", help=MIN_HELP),
    max_confidence: float | None = typer.Option(None, "--max-confidence", help=MAX_HELP),
    approval: bool = typer.Option(False, "--approval", help="The approval set instead."),
    sort: str = typer.Option("-confidence", "--sort", help="confidence, -confidence, id or sample."),
    limit: int = typer.Option(50, "--limit"),
    offset: int = typer.Option(0, "--offset"),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """A page of labels from the review (or approval) set."""
    from verilabel.datasets.service import sample_paths
    from verilabel.labels import Detection
    from verilabel.review.service import list_labels
    from verilabel.store import Store

    store = Store.open()
    page = list_labels(
        store,
        run,
        _query(min_confidence, max_confidence, classes),
        approval=approval,
        limit=limit,
        offset=offset,
        sort=sort,
    )
    paths = sample_paths(store, [sample_id for sample_id, _ in page])
    rows: list[dict[str, Any]] = [
        {
            "id": label.id,
            "sample_id": sample_id,
            "path": paths.get(sample_id),
            "label": label.label,
            "confidence": label.confidence,
            "box": list(label.box.as_tuple()) if isinstance(label, Detection) else None,
            "attributes": label.attributes,
            "tags": label.tags,
        }
        for sample_id, label in page
    ]
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    out = Table("id", "sample", "file", "label", "confidence", "box (x, y, w, h)")
    for r in rows:
        box = "" if r["box"] is None else ", ".join(f"{v:.3f}" for v in r["box"])
        confidence = "-" if r["confidence"] is None else f"{r['confidence']:.3f}"
        name = Path(r["path"]).name if r["path"] else "?"
        out.add_row(str(r["id"]), str(r["sample_id"]), name, str(r["label"]), confidence, box)
    console().print(out)


@app.command("tag")
def tag(
    run: str = typer.Argument(..., help="Run id, name or field (DATASET/NAME when ambiguous)."),
    tags: list[str] = typer.Argument(..., help="Tags, e.g. needs-fix."),
    remove: bool = typer.Option(False, "--remove", help="Remove the tags instead of adding them."),
    classes: list[str] = typer.Option([], "--class", help="Only this class; repeatable."),
    min_confidence: float | None = typer.Option(None, "--min-confidence", help=MIN_HELP),
    max_confidence: float | None = typer.Option(None, "--max-confidence", help=MAX_HELP),
    samples: Path | None = typer.Option(None, "--samples", help="File of sample ids."),
    labels: Path | None = typer.Option(None, "--labels", help="File of label ids, one per line."),
    view: str | None = typer.Option(None, "--view", help="Only samples matching this view expression."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Tag the run's labels that match the filters (tags survive approval and export)."""
    from verilabel.review.service import tag_labels
    from verilabel.store import Store

    query = _query(min_confidence, max_confidence, classes, samples, labels, view)
    count = tag_labels(Store.open(), run, tags, query, remove=remove)
    key = "untagged" if remove else "tagged"
    print_json({key: count}) if as_json else console().print(f"{key} {count} labels")
