"""Review of a run's generated labels.

A run in review holds two sets: the *review* set (generated, not yet promoted) and the *approval* set
(promoted). Every operation is one SQL statement or one transaction, never a read-modify-write in Python, so
two reviewers working on the same run at once never lose or double an action.

``approve`` is terminal: in ONE transaction the promoted labels are copied into the dataset's label field, every
generated label is deleted and the run becomes ``approved``. Mask files of discarded labels are removed after
the commit (a crash there leaves only unreferenced files, which ``remove_orphan_masks`` clears).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_, delete, func, insert, literal, not_, or_, select, update

from verilabel import history
from verilabel.datasets.service import find_field
from verilabel.datasets.views import View
from verilabel.errors import ConfigError, ConflictError
from verilabel.review import counts
from verilabel.review.counts import PROMOTED, REVIEW
from verilabel.runs.service import run_row
from verilabel.store import Store, json_lists
from verilabel.store.db import lock_row
from verilabel.store.schema import LabelRow, RunClassCountRow, RunLabelRow, RunRow, RunSampleRow

if TYPE_CHECKING:
    from verilabel.labels import Label

_COPIED = (
    "id",
    "kind",
    "label",
    "confidence",
    "x",
    "y",
    "w",
    "h",
    "mask_path",
    "mask_rle",
    "polygon",
    "keypoints",
    "attributes",
    "tags",
    "sample_id",
)
SORTS: dict[str, Any] = {
    "confidence": RunLabelRow.confidence.asc(),
    "-confidence": RunLabelRow.confidence.desc(),
    "id": RunLabelRow.id.asc(),
    "sample": RunLabelRow.sample_id.asc(),
}


@dataclass
class LabelQuery:
    """Which generated labels: every criterion given must hold (an empty query selects all)."""

    min_confidence: float | None = None
    max_confidence: float | None = None
    below: float | None = None  # confidence < below: a histogram bin's open upper edge (the app's slider)
    classes: list[str] = dataclasses.field(default_factory=list)
    sample_ids: list[int] | None = None
    view: View | None = None  # samples of the run's dataset
    label_ids: list[str] | None = None
    tags: list[str] = dataclasses.field(default_factory=list)  # labels with any of these tags

    def validate(self) -> LabelQuery:
        for name in ("min_confidence", "max_confidence", "below"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(name, f"{value} is outside [0, 1]")
        low, high = self.min_confidence, self.max_confidence
        if low is not None and high is not None and low > high:
            raise ConfigError("max_confidence", f"{high} is below min_confidence {low}")
        return self

    def to_json(self) -> dict[str, Any]:
        """The filter, for the history (long id lists are counted, not copied)."""
        out: dict[str, Any] = {}
        for name in ("min_confidence", "max_confidence", "below"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.classes:
            out["classes"] = list(self.classes)
        if self.tags:
            out["tags"] = list(self.tags)
        if self.sample_ids is not None:
            out["samples"] = len(self.sample_ids)
        if self.label_ids is not None:
            out["labels"] = len(self.label_ids)
        if self.view is not None:
            out["view"] = True
        return out

    def conditions(self, dataset_id: int) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.min_confidence is not None:
            found.append(RunLabelRow.confidence >= self.min_confidence)
        if self.max_confidence is not None:
            found.append(RunLabelRow.confidence <= self.max_confidence)
        if self.below is not None:
            found.append(RunLabelRow.confidence < self.below)
        if self.classes:
            found.append(RunLabelRow.label.in_(self.classes))
        if self.sample_ids is not None:
            found.append(RunLabelRow.sample_id.in_(self.sample_ids))
        if self.view is not None:
            found.append(RunLabelRow.sample_id.in_(self.view.sample_ids_query(dataset_id).order_by(None)))
        if self.label_ids is not None:
            found.append(RunLabelRow.id.in_(self.label_ids))
        if self.tags:
            found.append(or_(*(json_lists.contains(RunLabelRow.tags, tag) for tag in self.tags)))
        return found


@dataclass(frozen=True)
class ClassRow:
    label: str
    instances: int  # in the current query
    total: int  # in the whole set (review or approval)
    mean_confidence: float | None  # of the instances in the current query

    def to_json(self) -> dict[str, Any]:
        mean = None if self.mean_confidence is None else round(self.mean_confidence, 4)
        return {"label": self.label, "instances": self.instances, "total": self.total, "mean_confidence": mean}


def _open_run(session: Any, run: str, *, lock: bool = False) -> RunRow:
    row = run_row(session, run, lock=lock)
    if row.status == "approved":
        raise ConflictError(f"run {row.name!r} is approved: its review is closed. Create a new run to label more.")
    if row.status != "in_review":
        hint = (
            "wait for it to finish"
            if row.status in ("queued", "generating")
            else (f"`verilabel run resume {row.id}` finishes it first")
        )
        raise ConflictError(f"run {row.name!r} is {row.status}, not in_review: {hint}")
    return row  # type: ignore[no-any-return]


def _check_classes(session: Any, row: RunRow, query: LabelQuery | None) -> None:
    """A class filter naming a class the run has no label of is a typo, not an empty selection: say so."""
    if query is None or not query.classes:
        return
    known = set(session.scalars(select(RunClassCountRow.label).where(RunClassCountRow.run_id == row.id)))
    unknown = [name for name in query.classes if name not in known]
    if unknown:
        listed = ", ".join(sorted(known)[:30]) or "none yet"
        raise ConfigError(
            "class", f"run {row.name!r} has no label of class {', '.join(map(repr, unknown))}; its classes: {listed}"
        )


def _where(row: RunRow, state: str, query: LabelQuery | None) -> ColumnElement[bool]:
    return and_(
        RunLabelRow.run_id == row.id,
        RunLabelRow.review_state == state,
        *(query.validate().conditions(row.dataset_id) if query else []),
    )


def class_table(store: Store, run: str, query: LabelQuery | None = None, *, approval: bool = False) -> list[ClassRow]:
    """Per class: instances matching ``query`` of the total in the review set (or the approval set), and the
    mean confidence of the matching instances. Promoted labels never count in the review table.

    Totals come from ``run_class_counts`` (a few rows, kept with the labels); only a filtered table scans
    labels, and a confidence filter scans the covering (run, state, confidence, label) index."""
    state = PROMOTED if approval else REVIEW
    with store.read() as session:
        row = _open_run(session, run)
        _check_classes(session, row, query)
        whole = counts.totals(session, row.id, state)
        conditions = query.validate().conditions(row.dataset_id) if query else []
        if not conditions:
            matched = whole
        elif (edges := _bin_range(query)) is not None:  # the app's slider: read from the bins, no label scanned
            matched = counts.from_bins(counts.bins(session, row.id, state), *edges)
            if query and query.classes:
                matched = {label: delta for label, delta in matched.items() if label in query.classes}
        else:
            matched = counts.matching_classes(session, _where(row, state, query))
    return [
        ClassRow(
            label,
            matched.get(label, (0, 0, 0.0))[0],
            total,
            _mean(matched.get(label)),
        )
        for label, (total, _, _) in whole.items()
    ]


def _bin_range(query: LabelQuery | None) -> tuple[int, int] | None:
    """The bins a query selects when it is a confidence range on bin edges (``min_confidence`` and ``below``),
    maybe with classes, and nothing else; otherwise None."""
    if query is None or query.max_confidence is not None or query.sample_ids is not None or query.view is not None:
        return None
    if query.label_ids is not None or query.tags:
        return None
    lo, hi = counts.bin_edge(query.min_confidence, 0), counts.bin_edge(query.below, counts.BINS)
    return (lo, hi) if lo is not None and hi is not None else None


def _mean(delta: counts.Delta | None) -> float | None:
    if delta is None or delta[1] == 0:
        return None
    return delta[2] / delta[1]


def list_labels(
    store: Store,
    run: str,
    query: LabelQuery | None = None,
    *,
    approval: bool = False,
    limit: int = 100,
    offset: int = 0,
    sort: str = "-confidence",
) -> list[tuple[int, Label]]:
    """A page of ``(sample_id, label)`` from the review (or approval) set."""
    from verilabel.store.convert import row_label

    if sort not in SORTS:
        raise ConfigError("sort", f"{sort!r}: use one of {', '.join(SORTS)}")
    with store.read() as session:
        row = _open_run(session, run)
        rows = session.scalars(
            select(RunLabelRow)
            .where(_where(row, PROMOTED if approval else REVIEW, query))
            .order_by(SORTS[sort], RunLabelRow.id)
            .limit(limit)
            .offset(offset)
        ).all()
        return [(r.sample_id, row_label(r)) for r in rows]


BINS = counts.BINS


@dataclass(frozen=True)
class Histogram:
    """Per class, how many labels of a set fall in each confidence bin ``[i / BINS, (i + 1) / BINS)`` (the last bin
    includes 1.0), and their confidence sum: a browser computes the class table of any bin-aligned range from it,
    at every frame of a slider, with no request. Labels without a confidence are counted apart."""

    counts: dict[str, list[int]]
    sums: dict[str, list[float]]
    unscored: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "bins": BINS,
            "classes": {
                label: {
                    "counts": self.counts[label],
                    "sums": [round(v, 4) for v in self.sums[label]],
                    "unscored": self.unscored.get(label, 0),
                }
                for label in sorted(self.counts)
            },
        }


def histogram(store: Store, run: str, *, approval: bool = False) -> Histogram:
    """The confidence histogram of the review set (or the approval set), read from the run's counts by bin."""
    with store.read() as session:
        row = _open_run(session, run)
        found = counts.bins(session, row.id, PROMOTED if approval else REVIEW)
    histogram = Histogram({}, {}, {})
    for (label, index), (count, _, total) in found.items():
        histogram.counts.setdefault(label, [0] * BINS)
        histogram.sums.setdefault(label, [0.0] * BINS)
        if index == counts.UNSCORED:
            histogram.unscored[label] = count
        else:
            histogram.counts[label][index] = count
            histogram.sums[label][index] = total
    return histogram


def sample_page(
    store: Store,
    run: str,
    query: LabelQuery | None = None,
    *,
    approval: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> tuple[bool, list[tuple[int, list[Label]]]]:
    """A page of the samples that have labels matching ``query`` in the review (or approval) set, in id order, each
    with its matching labels (what the review grid shows), and whether more follow. Walks the covering (run, state,
    sample, confidence, label) index in sample order: a page costs the same at 1M labels; counting every matching
    sample would not (the class table counts the labels)."""
    from verilabel.store.convert import row_label

    with store.read() as session:
        row = _open_run(session, run)
        where = _where(row, PROMOTED if approval else REVIEW, query)
        ids = list(
            session.scalars(
                select(RunLabelRow.sample_id)
                .where(where)
                .distinct()
                .order_by(RunLabelRow.sample_id)
                .limit(limit + 1)
                .offset(offset)
            )
        )
        more, ids = len(ids) > limit, ids[:limit]
        by_sample: dict[int, list[Label]] = {sample_id: [] for sample_id in ids}
        if ids:
            labels = session.scalars(
                select(RunLabelRow)
                .where(where, RunLabelRow.sample_id.in_(ids))
                .order_by(RunLabelRow.sample_id, RunLabelRow.confidence.desc(), RunLabelRow.id)
            )
            for label_row in labels:
                by_sample[label_row.sample_id].append(row_label(label_row))
    return more, list(by_sample.items())


def _move(store: Store, run: str, query: LabelQuery | None, source: str, target: str, actor: str | None) -> int:
    """One UPDATE moves the matching labels between the sets: concurrent reviewers cannot interleave inside it."""
    with store.write() as session:
        row = _open_run(session, run, lock=True)  # reviewers of one run take turns: the counts stay exact
        _check_classes(session, row, query)
        where = _where(row, source, query)
        moved = counts.matching(session, where)
        result = session.execute(
            update(RunLabelRow).where(where).values(review_state=target).execution_options(synchronize_session=False)
        )
        counts.add(session, row.id, source, moved, sign=-1)
        counts.add(session, row.id, target, moved)
        count = int(result.rowcount)  # type: ignore[attr-defined]
        history.record(
            session,
            "promote" if target == PROMOTED else "undo",
            actor=actor,
            dataset_id=row.dataset_id,
            run_id=row.id,
            labels=count,
            filter=query.to_json() if query else {},
        )
        return count


def promote(store: Store, run: str, query: LabelQuery | None = None, *, actor: str | None = None) -> int:
    """Move the matching review labels to the approval set; returns how many moved."""
    return _move(store, run, query, REVIEW, PROMOTED, actor)


def undo(store: Store, run: str, query: LabelQuery | None = None, *, actor: str | None = None) -> int:
    """Move the matching promoted labels back to the review set (no query: undo all)."""
    return _move(store, run, query, PROMOTED, REVIEW, actor)


@dataclass(frozen=True)
class ApproveResult:
    approved: int
    discarded: int
    field: str

    def to_json(self) -> dict[str, Any]:
        return {"approved": self.approved, "discarded": self.discarded, "field": self.field}


def _copy_promoted(session: Any, row: RunRow, field_id: int) -> int:
    promoted = RunLabelRow.run_id == row.id, RunLabelRow.review_state == PROMOTED
    count = int(session.scalar(select(func.count()).where(*promoted)) or 0)
    source = select(*(getattr(RunLabelRow, c) for c in _COPIED), literal(field_id)).where(*promoted)
    session.execute(insert(LabelRow).from_select([*_COPIED, "field_id"], source))
    return count


def _delete_generated(session: Any, row: RunRow) -> int:
    counts.close(session, row.id)
    result = session.execute(
        delete(RunLabelRow).where(RunLabelRow.run_id == row.id).execution_options(synchronize_session=False)
    )
    return int(result.rowcount)


def approve(store: Store, run: str, *, allow_empty: bool = False, actor: str | None = None) -> ApproveResult:
    """Terminal and atomic: the field's labels become exactly the promoted ones, the rest are deleted, and the
    run is approved. For a generated run the field is new (empty until now); for an analysis of existing
    labels this drops the labels the reviewer did not promote.

    With nothing promoted this would discard every label: refused unless ``allow_empty``."""
    with store.write() as session:
        row = _open_run(session, run, lock=True)
        promoted = counts.summary(session, row.id).get(PROMOTED, (0, 0))[0]
        if not promoted and not allow_empty:
            in_review = counts.summary(session, row.id).get(REVIEW, (0, 0))[0]
            raise ConflictError(
                f"run {row.name!r} has no promoted label: approving would discard all {in_review} labels and leave "
                f"field {row.field!r} empty. Promote the good ones first (`verilabel review promote {row.name} "
                "--min-confidence X`), or approve with --allow-empty if an empty field is what you want."
            )
        field = find_field(session, row.dataset_id, row.field)
        if field is None:  # the run reserved it at creation; only a hand-edited database lacks it
            raise ConflictError(f"run {row.name!r}: its label field {row.field!r} is missing from the dataset")
        mask_dir = row.config.get("mask_dir")
        discarded_masks = (
            list(
                session.scalars(
                    select(RunLabelRow.mask_path).where(
                        RunLabelRow.run_id == row.id,
                        RunLabelRow.review_state == REVIEW,
                        RunLabelRow.mask_path.is_not(None),
                    )
                )
            )
            if mask_dir  # only masks this run wrote are ours to delete, never a user's own files
            else []
        )
        session.execute(delete(LabelRow).where(LabelRow.field_id == field.id))
        approved = _copy_promoted(session, row, field.id)
        removed = _delete_generated(session, row)
        row.status = "approved"
        result = ApproveResult(approved, removed - approved, row.field)
        history.record(session, "approve", actor=actor, dataset_id=row.dataset_id, run_id=row.id, **result.to_json())
    for path in discarded_masks:
        if path and mask_dir and Path(path).is_relative_to(Path(mask_dir)):
            Path(path).unlink(missing_ok=True)
    return result


def analyze_field(
    store: Store, dataset: str, field_name: str, *, name: str | None = None, actor: str | None = None
) -> str:
    """Start a review of an existing label field: a run that begins ``in_review`` with copies of its labels.

    Approving it leaves in the field exactly the labels that were promoted. Needs at least one label with a
    confidence in [0, 1] (the review filters and the class table are about confidence)."""
    from verilabel.datasets.service import dataset_row, now
    from verilabel.runs import progress
    from verilabel.runs.config import unique_run_name
    from verilabel.runs.service import new_run_id

    with store.write() as session:
        dataset_id = dataset_row(session, dataset).id
        # Analyses of one field take turns (PostgreSQL; SQLite writers always do): two open reviews of a field
        # would each rewrite it on approval, the second silently undoing the first.
        field = find_field(session, dataset_id, field_name)
        field = field and lock_row(session, field)
        if field is None:
            raise ConfigError("field", f"dataset {dataset!r} has no label field {field_name!r}")
        if field.run_id is not None and session.scalar(
            select(RunRow.id).where(RunRow.id == field.run_id, RunRow.status != "approved")
        ):
            raise ConflictError(f"field {field_name!r} belongs to run {field.run_id}, still open: review that run")
        open_review = session.scalar(
            select(RunRow.name).where(
                RunRow.dataset_id == dataset_id, RunRow.field == field_name, RunRow.status == "in_review"
            )
        )
        if open_review is not None:
            raise ConflictError(
                f"run {open_review!r} already reviews field {field_name!r}: continue that review, or approve it "
                "before analyzing the field again"
            )
        scored = session.scalar(
            select(LabelRow.id).where(LabelRow.field_id == field.id, LabelRow.confidence.between(0.0, 1.0)).limit(1)
        )
        if scored is None:
            raise ConflictError(
                f"no label in field {field_name!r} has a confidence in [0, 1]; the review works on confidences. "
                "Import labels with scores (COCO `score`, a YOLO 6th column) to analyze them."
            )
        run_name = name or unique_run_name(session, dataset_id, f"analyze-{field_name}")
        if session.scalar(select(RunRow.id).where(RunRow.dataset_id == dataset_id, RunRow.name == run_name)):
            raise ConfigError("name", f"dataset {dataset!r} already has a run named {run_name!r}")
        run_id = new_run_id()
        stamp = now()
        session.add(
            RunRow(
                id=run_id,
                dataset_id=dataset_id,
                name=run_name,
                status="in_review",
                task=field.kind,
                model=f"existing:{field_name}",
                field=field_name,
                config={"source": "analyze", "name": run_name},
                model_info={},
                timings={},
                total=0,
                workers=0,
                error=None,
                cancel_requested=False,
                created_at=stamp,
                queued_at=stamp,
                started_at=stamp,
                finished_at=stamp,
            )
        )
        session.flush()
        columns = [c for c in _COPIED if c != "sample_id"]
        source = select(
            *(getattr(LabelRow, c) for c in columns), LabelRow.sample_id, literal(run_id), literal(REVIEW)
        ).where(LabelRow.field_id == field.id)
        session.execute(insert(RunLabelRow).from_select([*columns, "sample_id", "run_id", "review_state"], source))
        counts.recount(session, run_id)
        samples = select(LabelRow.sample_id).where(LabelRow.field_id == field.id).distinct().subquery()
        session.execute(
            insert(RunSampleRow).from_select(
                ["run_id", "sample_id", "shard", "state"],
                select(literal(run_id), samples.c.sample_id, literal(0), literal("done")),
            )
        )
        progress.recount(session, run_id)
        total = session.scalar(select(func.count()).where(RunSampleRow.run_id == run_id))
        session.execute(update(RunRow).where(RunRow.id == run_id).values(total=total))
        history.record(session, "analyze", actor=actor, dataset_id=dataset_id, run_id=run_id, field=field_name)
    return run_id


def tag_labels(
    store: Store,
    run: str,
    tags: list[str],
    query: LabelQuery | None = None,
    *,
    remove: bool = False,
    actor: str | None = None,
) -> int:
    """Add (or remove) tags on the run's labels matching ``query``, in either set; returns labels changed.
    Set-based: one UPDATE per tag, whatever the number of labels."""
    tags = list(dict.fromkeys(tag.strip() for tag in tags))
    if not tags or any(not tag for tag in tags):
        raise ConfigError("tags", "give at least one non-empty tag")
    with store.write() as session:
        row = _open_run(session, run, lock=True)
        _check_classes(session, row, query)
        selected = and_(RunLabelRow.run_id == row.id, *(query.validate().conditions(row.dataset_id) if query else []))
        dialect = session.get_bind().dialect.name

        def needs(tag: str) -> ColumnElement[bool]:
            has = json_lists.contains(RunLabelRow.tags, tag)
            return has if remove else not_(has)

        changed = int(session.scalar(select(func.count()).where(selected, or_(*(needs(tag) for tag in tags)))) or 0)
        for tag in tags:
            value = (json_lists.removed if remove else json_lists.appended)(RunLabelRow.tags, tag, dialect)
            session.execute(
                update(RunLabelRow)
                .where(selected, needs(tag))
                .values(tags=value)
                .execution_options(synchronize_session=False)
            )
        history.record(
            session,
            "untag" if remove else "tag",
            actor=actor,
            dataset_id=row.dataset_id,
            run_id=row.id,
            tags=tags,
            labels=changed,
            filter=query.to_json() if query else {},
        )
        return changed
