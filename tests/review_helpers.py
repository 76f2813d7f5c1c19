"""A run in review with labels written directly (no model): exact control over classes and confidences."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import insert, select

from verilabel.datasets import service as ds
from verilabel.labels import new_label_id
from verilabel.review import counts
from verilabel.runs import service as runs
from verilabel.runs.config import RunRequest
from verilabel.store import Store
from verilabel.store.schema import RunLabelRow, RunRow, SampleRow

BLOBS = "python:tests.support.blob_model:detector"


def synthetic_run(
    store: Store,
    tmp_path: Path,
    labels: list[tuple[int, str, float]],
    *,
    samples: int = 4,
    field: str = "auto",
    mask_dir: Path | None = None,
) -> str:
    """``labels``: (sample index, class, confidence). Returns the run id, status in_review."""
    if "d" not in [d.name for d in ds.list_datasets(store)]:
        ds.create_dataset(store, "d")
        with store.write() as session:
            dataset_id = ds.dataset_row(session, "d").id
            session.execute(
                insert(SampleRow),
                [
                    {
                        "dataset_id": dataset_id,
                        "path": str(tmp_path / f"s{i}.png"),
                        "width": 100,
                        "height": 100,
                        "meta": {},
                        "created_at": ds.now(),
                    }
                    for i in range(samples)
                ],
            )
    run = runs.create_run(store, RunRequest(dataset="d", task="detection", model=BLOBS, field=field), start=False)
    if mask_dir is not None:
        mask_dir = mask_dir / run.id
        mask_dir.mkdir(parents=True)
    with store.write() as session:
        ids = list(session.scalars(select(SampleRow.id).order_by(SampleRow.id)))
        rows = []
        for index, (sample, label, confidence) in enumerate(labels):
            label_id = new_label_id()
            mask_path = None
            if mask_dir is not None:
                mask_path = str(mask_dir / f"{label_id}.png")
                Path(mask_path).write_bytes(b"png")
            rows.append(
                {
                    "id": label_id,
                    "run_id": run.id,
                    "sample_id": ids[sample],
                    "kind": "detection",
                    "label": label,
                    "confidence": confidence,
                    "x": 0.0,
                    "y": 0.0,
                    "w": 0.1 + index * 1e-4,
                    "h": 0.1,
                    "mask_path": mask_path,
                    "attributes": {},
                    "tags": [],
                    "review_state": "review",
                }
            )
        if rows:
            session.execute(insert(RunLabelRow), rows)
        counts.recount(session, run.id)
        row = session.get(RunRow, run.id)
        assert row is not None
        row.status = "in_review"
        if mask_dir is not None:
            row.config = {**row.config, "mask_dir": str(mask_dir.parent)}
    return run.id


def states(store: Store, run_id: str) -> dict[str, str]:
    with store.read() as session:
        return dict(
            session.execute(select(RunLabelRow.id, RunLabelRow.review_state).where(RunLabelRow.run_id == run_id)).all()
        )
