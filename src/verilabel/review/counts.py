"""Per-class label counts of a run (``run_class_counts``), kept in the transactions that change labels.

Every write that inserts run labels or moves them between the review and approval sets calls one of these in
the SAME transaction, so the counts can never disagree with the labels (a crash rolls both back). The class
table then reads totals from a few rows instead of scanning a million.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, literal, select
from sqlalchemy.orm import Session

from verilabel.store.schema import RunClassCountRow, RunLabelRow

Delta = tuple[int, int, float]  # labels, labels with a confidence, confidence sum


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
    """Add (``sign=1``) or subtract (``-1``) per-class deltas, as one upsert in class order: concurrent
    workers on PostgreSQL then lock the count rows in the same order and cannot deadlock."""
    if not deltas:
        return
    rows = [
        {
            "run_id": run_id,
            "review_state": state,
            "label": label,
            "count": sign * count,
            "scored": sign * scored,
            "confidence_sum": sign * total,
        }
        for label, (count, scored, total) in sorted(deltas.items())
    ]
    statement = _upsert(session)
    table = RunClassCountRow.__table__
    statement = statement.on_conflict_do_update(
        index_elements=["run_id", "review_state", "label"],
        set_={
            "count": table.c.count + statement.excluded.count,
            "scored": table.c.scored + statement.excluded.scored,
            "confidence_sum": table.c.confidence_sum + statement.excluded.confidence_sum,
        },
    )
    session.execute(statement, rows)


def _upsert(session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(RunClassCountRow)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(RunClassCountRow)


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
