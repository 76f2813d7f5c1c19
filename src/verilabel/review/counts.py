"""Per-class label counts of a run, by confidence bin (``run_class_counts``), kept in the transactions that change
labels.

Every write that inserts run labels or moves them between the review and approval sets calls one of these in
the SAME transaction, so the counts can never disagree with the labels (a crash rolls both back). A class's
total is the sum of its bins; the confidence histogram the app's slider works from is the bins themselves: both
are a few thousand rows to read instead of a million labels to scan. Bin ``i`` holds the confidences in
``[i / BINS, (i + 1) / BINS)`` (the last one includes 1.0); labels without a confidence are in bin ``-1``, as are
the counts of runs approved before the bins existed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, Integer, case, cast, delete, func, insert, literal, select, update
from sqlalchemy.orm import Session

from verilabel.store.bulk import add_to_counters
from verilabel.store.schema import RunClassCountRow, RunLabelRow

BINS = 100  # the slider moves in steps of 0.01
UNSCORED = -1
Delta = tuple[int, int, float]  # labels, labels with a confidence, confidence sum
Key = tuple[str, int]  # class, bin
REVIEW, PROMOTED = "review", "promoted"
# A confidence on a bin's edge (0.29 is 28.999... x 100) belongs to the bin that the filter `>= 0.29` starts at.
_NUDGE = 1e-9


def bin_of(confidence: float | None) -> int:
    if confidence is None:
        return UNSCORED
    return min(math.floor(confidence * BINS + _NUDGE), BINS - 1)


def bin_column(session: Session) -> ColumnElement[Any]:
    """``bin_of`` in SQL (SQLite's integer cast truncates; PostgreSQL's would round, so it floors)."""
    scaled = RunLabelRow.confidence * BINS + _NUDGE
    if session.get_bind().dialect.name == "postgresql":
        index: ColumnElement[Any] = func.least(cast(func.floor(scaled), Integer), BINS - 1)
    else:
        index = func.min(cast(scaled, Integer), BINS - 1)
    return case((RunLabelRow.confidence.is_(None), UNSCORED), else_=index)


def deltas_of(labels: Iterable[tuple[str, float | None]]) -> dict[Key, Delta]:
    """Count ``(label, confidence)`` pairs per class and bin."""
    out: dict[Key, Delta] = {}
    for label, confidence in labels:
        key = (label, bin_of(confidence))
        count, scored, total = out.get(key, (0, 0, 0.0))
        if confidence is None:
            out[key] = (count + 1, scored, total)
        else:
            out[key] = (count + 1, scored + 1, total + confidence)
    return out


def per_class(deltas: Mapping[Key, Delta]) -> dict[str, Delta]:
    """Bins folded into one delta per class."""
    out: dict[str, Delta] = {}
    for (label, _), (count, scored, total) in deltas.items():
        before = out.get(label, (0, 0, 0.0))
        out[label] = (before[0] + count, before[1] + scored, before[2] + total)
    return out


def add(session: Session, run_id: str, state: str, deltas: Mapping[Key, Delta], sign: int = 1) -> None:
    """Add (``sign=1``) or subtract (``-1``) per-class, per-bin deltas, as one upsert."""
    rows = [
        {
            "run_id": run_id,
            "review_state": state,
            "label": label,
            "bin": index,
            "count": sign * count,
            "scored": sign * scored,
            "confidence_sum": sign * total,
        }
        for (label, index), (count, scored, total) in deltas.items()
    ]
    add_to_counters(session, RunClassCountRow, rows, ("count", "scored", "confidence_sum"))


def matching_classes(session: Session, where: ColumnElement[bool]) -> dict[str, Delta]:
    """Per class: the run labels matching ``where`` (a filtered class table: no bins to compute)."""
    rows = session.execute(
        select(
            RunLabelRow.label,
            func.count(),
            func.count(RunLabelRow.confidence),
            func.coalesce(func.sum(RunLabelRow.confidence), 0.0),
        )
        .where(where)
        .group_by(RunLabelRow.label)
    ).all()
    return {label: (int(count), int(scored), float(total or 0.0)) for label, count, scored, total in rows}


def from_bins(found: Mapping[Key, Delta], lo: int, hi: int) -> dict[str, Delta]:
    """Per class, the labels of bins ``lo`` to ``hi - 1`` (with the unscored ones when that is every bin)."""
    every = lo == 0 and hi == BINS
    kept = {key: delta for key, delta in found.items() if lo <= key[1] < hi or (every and key[1] == UNSCORED)}
    return per_class(kept)


def bin_edge(value: float | None, default: int) -> int | None:
    """The bin whose lower edge ``value`` is (``default`` for None), or None when it falls inside a bin."""
    if value is None:
        return default
    edge = round(value * BINS)
    return edge if abs(value * BINS - edge) < 1e-6 else None


def matching(session: Session, where: ColumnElement[bool]) -> dict[Key, Delta]:
    """Per class and bin: the run labels matching ``where`` (what a move is about to move)."""
    index = bin_column(session)
    rows = session.execute(
        select(
            RunLabelRow.label,
            index,
            func.count(),
            func.count(RunLabelRow.confidence),
            func.coalesce(func.sum(RunLabelRow.confidence), 0.0),
        )
        .where(where)
        .group_by(RunLabelRow.label, index)
    ).all()
    return {(label, int(b)): (int(count), int(scored), float(total or 0.0)) for label, b, count, scored, total in rows}


def recount(session: Session, run_id: str) -> None:
    """Rebuild a run's counts from its labels (after a bulk INSERT ... SELECT, or to repair)."""
    session.execute(delete(RunClassCountRow).where(RunClassCountRow.run_id == run_id))
    index = bin_column(session)
    source = (
        select(
            literal(run_id),
            RunLabelRow.review_state,
            RunLabelRow.label,
            index,
            func.count(),
            func.count(RunLabelRow.confidence),
            func.coalesce(func.sum(RunLabelRow.confidence), 0.0),
        )
        .where(RunLabelRow.run_id == run_id)
        .group_by(RunLabelRow.review_state, RunLabelRow.label, index)
    )
    session.execute(
        insert(RunClassCountRow).from_select(
            ["run_id", "review_state", "label", "bin", "count", "scored", "confidence_sum"], source
        )
    )


def close(session: Session, run_id: str) -> None:
    """At approval: the promoted counts become the ``approved`` ones, the review counts the ``discarded``."""
    for state, final in ((PROMOTED, "approved"), (REVIEW, "discarded")):
        session.execute(
            update(RunClassCountRow)
            .where(RunClassCountRow.run_id == run_id, RunClassCountRow.review_state == state)
            .values(review_state=final)
        )


def totals(session: Session, run_id: str, state: str) -> dict[str, Delta]:
    """Per class with labels in the set: (labels, labels with a confidence, confidence sum)."""
    count = func.sum(RunClassCountRow.count)
    rows = session.execute(
        select(
            RunClassCountRow.label, count, func.sum(RunClassCountRow.scored), func.sum(RunClassCountRow.confidence_sum)
        )
        .where(RunClassCountRow.run_id == run_id, RunClassCountRow.review_state == state)
        .group_by(RunClassCountRow.label)
        .having(count > 0)
        .order_by(RunClassCountRow.label)
    ).all()
    return {label: (int(n), int(scored or 0), float(total or 0.0)) for label, n, scored, total in rows}


def bins(session: Session, run_id: str, state: str) -> dict[Key, Delta]:
    """Per class and bin, the set's counts (the histogram)."""
    rows = session.execute(
        select(
            RunClassCountRow.label,
            RunClassCountRow.bin,
            RunClassCountRow.count,
            RunClassCountRow.scored,
            RunClassCountRow.confidence_sum,
        ).where(RunClassCountRow.run_id == run_id, RunClassCountRow.review_state == state, RunClassCountRow.count > 0)
    ).all()
    return {(label, int(b)): (int(n), int(scored), float(total)) for label, b, n, scored, total in rows}


def summary(session: Session, run_id: str) -> dict[str, tuple[int, int]]:
    """Per state: (labels, classes with at least one label)."""
    per_label = (
        select(RunClassCountRow.review_state, RunClassCountRow.label, func.sum(RunClassCountRow.count).label("n"))
        .where(RunClassCountRow.run_id == run_id)
        .group_by(RunClassCountRow.review_state, RunClassCountRow.label)
        .subquery()
    )
    rows = session.execute(
        select(per_label.c.review_state, func.sum(per_label.c.n), func.count())
        .where(per_label.c.n > 0)
        .group_by(per_label.c.review_state)
    ).all()
    return {state: (int(labels or 0), int(classes)) for state, labels, classes in rows}
