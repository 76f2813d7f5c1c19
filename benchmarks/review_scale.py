"""Review at scale: a synthetic run of 1,000,000 labels over 100,000 samples (SQLite by default).

    python benchmarks/review_scale.py [--labels 1000000] [--samples 100000] [--url sqlite:///...]

Times the class table (all, and under a confidence filter), a filtered page of labels, a run's status (what
`run watch` polls) and `run list`, tagging one class, promote-by-filter of about half the labels, approve, and
COCO / Label Studio exports of the approved field with their peak memory. Baselines in the same sitting: the
status read as it used to be (counting the run's labels and samples), and tagging by reading and writing each
label in Python. Targets on a 2-core machine with SQLite: class table, page and status under 300 ms; promote
500k and approve 1M under 60 s each; exports in memory that stays flat (a fraction of the file they write).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, update

CLASSES = [f"class_{i:02d}" for i in range(20)]


def timed(label: str, fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    print(f"{label}: {best * 1000:.0f} ms", flush=True)
    return best, result


def build(url: str, labels: int, samples: int) -> str:
    from verilabel.datasets.service import create_dataset, dataset_row, now
    from verilabel.labels import new_label_id
    from verilabel.review import counts
    from verilabel.runs import progress
    from verilabel.runs.config import RunRequest
    from verilabel.runs.service import create_run
    from verilabel.store import Store
    from verilabel.store.schema import RunLabelRow, RunRow, RunSampleRow, SampleRow

    store = Store(url)
    create_dataset(store, "big")
    with store.write() as session:
        dataset_id = dataset_row(session, "big").id
        stamp = now()
        for start in range(0, samples, 10_000):
            session.execute(
                insert(SampleRow),
                [
                    {
                        "dataset_id": dataset_id,
                        "path": f"/data/img_{i:07d}.jpg",
                        "width": 640,
                        "height": 480,
                        "meta": {},
                        "created_at": stamp,
                    }
                    for i in range(start, min(samples, start + 10_000))
                ],
            )
    request = RunRequest(dataset="big", task="detection", model="mediapipe-face", field="auto")
    run = create_run(store, request, start=False)
    rng = np.random.default_rng(0)
    first_sample = 1
    start = time.perf_counter()
    for offset in range(0, labels, 50_000):
        count = min(50_000, labels - offset)
        confidences = rng.random(count)
        classes = rng.integers(0, len(CLASSES), count)
        sample_ids = first_sample + rng.integers(0, samples, count)
        boxes = rng.random((count, 2)) * 0.5
        rows = [
            {
                "id": new_label_id(),
                "run_id": run.id,
                "sample_id": int(sample_ids[i]),
                "kind": "detection",
                "label": CLASSES[classes[i]],
                "confidence": float(confidences[i]),
                "x": float(boxes[i, 0]),
                "y": float(boxes[i, 1]),
                "w": 0.1,
                "h": 0.1,
                "attributes": {},
                "tags": [],
                "review_state": "review",
            }
            for i in range(count)
        ]
        with store.write() as session:
            session.execute(insert(RunLabelRow), rows)
    with store.write() as session:
        counts.recount(session, run.id)
        session.execute(update(RunSampleRow).where(RunSampleRow.run_id == run.id).values(state="done"))
        progress.recount(session, run.id)
        session.execute(update(RunRow).where(RunRow.id == run.id).values(status="in_review"))
    print(f"inserted {labels} labels in {time.perf_counter() - start:.1f} s", flush=True)
    return run.id


def status_by_counting(store: Any, run: str) -> tuple[int, int, dict[str, int]]:
    """What a status read cost before the counters: labels and classes counted, samples grouped by state."""
    from sqlalchemy import func, select

    from verilabel.store.schema import RunLabelRow, RunSampleRow

    with store.read() as session:
        labels, classes = session.execute(
            select(func.count(), func.count(func.distinct(RunLabelRow.label))).where(RunLabelRow.run_id == run)
        ).one()
        states = dict(
            session.execute(
                select(RunSampleRow.state, func.count()).where(RunSampleRow.run_id == run).group_by(RunSampleRow.state)
            ).all()
        )
    return labels, classes, states


def tag_in_python(store: Any, run: str, tag: str, label: str) -> int:
    """Tagging as it was done before: every matching label read, changed in Python and written back."""
    from sqlalchemy import select, update

    from verilabel.store.schema import RunLabelRow

    with store.write() as session:
        changes = [
            {"id": label_id, "tags": [*(tags or []), tag]}
            for label_id, tags in session.execute(
                select(RunLabelRow.id, RunLabelRow.tags).where(RunLabelRow.run_id == run, RunLabelRow.label == label)
            )
            if tag not in (tags or [])
        ]
        if changes:
            session.execute(update(RunLabelRow), changes)
    return len(changes)


def peak_memory(fn: Callable[..., Any], *args: Any) -> tuple[Any, int]:
    """``fn(*args)`` and the peak of the Python memory it allocated (tracemalloc)."""
    import tracemalloc

    tracemalloc.start()
    try:
        result = fn(*args)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file in a temporary folder)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    url = args.url or f"sqlite:///{Path(tempfile.mkdtemp(prefix='verilabel-review-')) / 'bench.db'}"

    from verilabel.datasets.export import export_field
    from verilabel.review import service as review
    from verilabel.review.service import LabelQuery
    from verilabel.runs.service import get_run, list_runs
    from verilabel.store import Store

    run = build(url, args.labels, args.samples)
    store = Store(url)
    results: dict[str, Any] = {"labels": args.labels, "samples": args.samples, "database": url.split(":")[0]}
    results["class_table_s"], _ = timed("class table (all)", lambda: review.class_table(store, run), repeat=3)
    results["class_table_filtered_s"], _ = timed(
        "class table (confidence 0.3..0.7)",
        lambda: review.class_table(store, run, LabelQuery(min_confidence=0.3, max_confidence=0.7)),
        repeat=3,
    )
    results["page_s"], _ = timed(
        "page of 100 (confidence >= 0.8, sorted)",
        lambda: review.list_labels(store, run, LabelQuery(min_confidence=0.8), limit=100),
        repeat=3,
    )
    results["class_page_s"], _ = timed(
        "page of 100 (one class, confidence >= 0.5)",
        lambda: review.list_labels(store, run, LabelQuery(classes=["class_07"], min_confidence=0.5), limit=100),
        repeat=3,
    )
    results["status_s"], _ = timed("run status (run watch's poll)", lambda: get_run(store, run), repeat=3)
    results["status_counting_s"], _ = timed(
        "run status, counting labels and samples (before)", lambda: status_by_counting(store, run), repeat=3
    )
    results["run_list_s"], _ = timed("run list", lambda: list_runs(store, "big"), repeat=3)
    results["tag_class_s"], tagged = timed(
        "tag one class (set-based)", lambda: review.tag_labels(store, run, ["check"], LabelQuery(classes=["class_03"]))
    )
    results["tagged"] = tagged
    results["tag_class_python_s"], _ = timed(
        "tag one class, each label read and written in Python (before)",
        lambda: tag_in_python(store, run, "check-2", "class_03"),
    )
    results["promote_s"], promoted = timed(
        "promote confidence >= 0.5", lambda: review.promote(store, run, LabelQuery(min_confidence=0.5))
    )
    results["promoted"] = promoted
    results["approve_s"], approved = timed("approve", lambda: review.approve(store, run))
    results["approved"] = approved.to_json()
    out = Path(tempfile.mkdtemp(prefix="verilabel-export-"))
    for fmt in ("coco", "label-studio"):
        seconds, summary = timed(f"export {fmt}", lambda fmt=fmt: export_field(store, "big", "auto", fmt, out / fmt))
        _, peak = peak_memory(
            export_field, store, "big", "auto", fmt, out / f"{fmt}-traced"
        )  # timed apart: tracing slows
        written = Path(summary.path).stat().st_size
        results[f"export_{fmt}_s"] = seconds
        results[f"export_{fmt}_peak_mb"] = round(peak / 2**20, 1)
        results[f"export_{fmt}_file_mb"] = round(written / 2**20, 1)
        print(
            f"  {summary.labels} labels: peak Python memory {peak / 2**20:.0f} MiB for a {written / 2**20:.0f} MiB file"
        )
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
