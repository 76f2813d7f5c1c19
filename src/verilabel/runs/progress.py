"""Per-shard progress counters of a run (``run_progress``), kept in the transactions that settle samples.

A worker adds its batch's done and failed samples to its own shard's row when it commits their states, so the
counters never disagree with ``run_samples`` (a crash rolls both back), workers never contend for one row, and
``run watch`` reads a few rows where it would otherwise count a million.
"""

from __future__ import annotations

from sqlalchemy import case, delete, func, insert, literal, select
from sqlalchemy.orm import Session

from verilabel.store.bulk import add_to_counters
from verilabel.store.schema import RunProgressRow, RunSampleRow


def add(session: Session, run_id: str, shard: int, done: int, failed: int) -> None:
    if done or failed:
        add_to_counters(
            session,
            RunProgressRow,
            [{"run_id": run_id, "shard": shard, "done": done, "failed": failed}],
            ("done", "failed"),
        )


def recount(session: Session, run_id: str) -> None:
    """Rebuild a run's counters from its samples (after samples are re-sharded or reset, in that transaction)."""
    session.execute(delete(RunProgressRow).where(RunProgressRow.run_id == run_id))
    source = (
        select(
            literal(run_id),
            RunSampleRow.shard,
            func.sum(case((RunSampleRow.state == "done", 1), else_=0)),
            func.sum(case((RunSampleRow.state == "failed", 1), else_=0)),
        )
        .where(RunSampleRow.run_id == run_id, RunSampleRow.state != "pending")
        .group_by(RunSampleRow.shard)
    )
    session.execute(insert(RunProgressRow).from_select(["run_id", "shard", "done", "failed"], source))


def totals(session: Session, run_id: str) -> tuple[int, int]:
    """(done, failed) samples of the run."""
    done, failed = session.execute(
        select(
            func.coalesce(func.sum(RunProgressRow.done), 0), func.coalesce(func.sum(RunProgressRow.failed), 0)
        ).where(RunProgressRow.run_id == run_id)
    ).one()
    return int(done), int(failed)
