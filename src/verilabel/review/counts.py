"""Per-class label counts of a run (``run_class_counts``), kept in the transactions that change labels.

Every write that inserts run labels or moves them between the review and approval sets calls one of these in
the SAME transaction, so the counts can never disagree with the labels (a crash rolls both back). The class
table then reads totals from a few rows instead of scanning a million.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import ColumnElement, delete, func, insert, literal, select, update
from sqlalchemy.orm import Session

from verilabel.store.bulk import add_to_counters
from verilabel.store.schema import RunClassCountRow, RunLabelRow

Delta = tuple[int, int, float]  # labels, labels with a confidence, confidence sum
REVIEW, PROMOTED = "review", "promoted"


def deltas_of(labels: Iterable[tuple[str, float | None]]) -> dict[str, Delta]:
    """Count ``(label, confidence)`` pairs per class."""
    out: dict[str, Delta] = {}
    for label, confidence in labels:
        count, scored, total = out.get(label, (0, 0, 0.0))
        if confidence is None:
            out[label] = (count + 1, scored, total)
        else:
            out[label] = (count + 1, scored + 1, total + confidence)
    return out


def add(session: Session, run_id: str, state: str, deltas: Mapping[str, Delta], sign: int = 1) -> None:
    """Add (``sign=1``) or subtract (``-1``) per-class deltas, as one upsert."""
    rows = [
        {
            "run_id": run_id,
            "review_state": state,
            "label": label,
            "count": sign * count,
            "scored": sign * scored,
            "confidence_sum": sign * total,
        }
        for label, (count, scored, total) in deltas.items()
    ]
    add_to_counters(session, RunClassCountRow, rows, ("count", "scored", "confidence_sum"))


def matching(session: Session, where: ColumnElement[bool]) -> dict[str, Delta]:
    """Per-class deltas of the run labels matching ``where`` (what a move is about to move)."""
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


def recount(session: Session, run_id: str) -> None:
    """Rebuild a run's counts from its labels (after a bulk INSERT ... SELECT, or to repair)."""
    session.execute(delete(RunClassCountRow).where(RunClassCountRow.run_id == run_id))
    source = (
        select(
            literal(run_id),
            RunLabelRow.review_state,
            RunLabelRow.label,
            func.count(),
            func.count(RunLabelRow.confidence),
            func.coalesce(func.sum(RunLabelRow.confidence), 0.0),
        )
        .where(RunLabelRow.run_id == run_id)
        .group_by(RunLabelRow.review_state, RunLabelRow.label)
    )
    session.execute(
        insert(RunClassCountRow).from_select(
            ["run_id", "review_state", "label", "count", "scored", "confidence_sum"], source
        )
    )


def totals(session: Session, run_id: str, state: str) -> dict[str, Delta]:
    rows = session.execute(
        select(RunClassCountRow.label, RunClassCountRow.count, RunClassCountRow.scored, RunClassCountRow.confidence_sum)
        .where(RunClassCountRow.run_id == run_id, RunClassCountRow.review_state == state, RunClassCountRow.count > 0)
        .order_by(RunClassCountRow.label)
    ).all()
    return {label: (int(count), int(scored), float(total)) for label, count, scored, total in rows}


def close(session: Session, run_id: str) -> None:
    """At approval: the promoted counts become the ``approved`` ones, the review counts the ``discarded``."""
    for state, final in ((PROMOTED, "approved"), (REVIEW, "discarded")):
        session.execute(
            update(RunClassCountRow)
            .where(RunClassCountRow.run_id == run_id, RunClassCountRow.review_state == state)
            .values(review_state=final)
        )


def summary(session: Session, run_id: str) -> dict[str, tuple[int, int]]:
    """Per state: (labels, classes with at least one label)."""
    rows = session.execute(
        select(RunClassCountRow.review_state, func.sum(RunClassCountRow.count), func.count())
        .where(RunClassCountRow.run_id == run_id, RunClassCountRow.count > 0)
        .group_by(RunClassCountRow.review_state)
    ).all()
    return {state: (int(labels or 0), int(classes)) for state, labels, classes in rows}
