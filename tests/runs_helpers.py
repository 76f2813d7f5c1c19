"""Helpers for run tests: a labelled blob dataset and a snapshot of a run's labels."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.support.images import write_blob_images
from tests.support.transactions import rival_transaction
from verilabel.datasets import service as ds
from verilabel.runs.config import RunRequest
from verilabel.store import Store
from verilabel.store.schema import RunLabelRow, RunRow

BLOBS = "python:tests.support.blob_model:detector"


def blob_dataset(store: Store, root: Path, count: int, name: str = "d") -> list[Path]:
    paths = write_blob_images(root, count)
    ds.create_dataset(store, name)
    ds.add_images(store, name, root)
    return paths


def request(field: str, **kwargs: object) -> RunRequest:
    options: dict[str, object] = {"dataset": "d", "task": "detection", "model": BLOBS, "field": field}
    options.update(kwargs)
    return RunRequest(**options)  # type: ignore[arg-type]


def label_snapshot(store: Store, run_id: str) -> list[tuple]:
    """A run's labels without their ids: what must be identical between equivalent runs."""
    with store.read() as session:
        rows = session.execute(
            select(
                RunLabelRow.sample_id,
                RunLabelRow.label,
                RunLabelRow.confidence,
                RunLabelRow.x,
                RunLabelRow.y,
                RunLabelRow.w,
                RunLabelRow.h,
            ).where(RunLabelRow.run_id == run_id)
        ).all()
    return sorted(tuple(round(v, 6) if isinstance(v, float) else v for v in row) for row in rows)


def duplicate_ids(store: Store, run_id: str) -> int:
    with store.read() as session:
        total = session.scalar(select(func.count()).where(RunLabelRow.run_id == run_id))
        distinct = session.scalar(select(func.count(func.distinct(RunLabelRow.id))).where(RunLabelRow.run_id == run_id))
    return int(total or 0) - int(distinct or 0)


@contextmanager
def status_changing(store: Store, run_id: str, status: str, hold: float = 1.0) -> Iterator[None]:
    """Inside the block, another transaction holds the run's row lock while it sets ``status`` (as a worker
    settling the run, or an approve, does); it commits ``hold`` seconds after the block starts."""

    def change(session: Session) -> None:
        row = session.get(RunRow, run_id, with_for_update=True)
        assert row is not None
        row.status = status

    with rival_transaction(store, change, hold):
        yield
