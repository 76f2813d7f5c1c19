"""The labelling pipeline in process: overlap of asynchronous models, group commit, failures, batch halving."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.runs_helpers import blob_dataset, label_snapshot, request
from tests.support.blob_model import AsyncBlobModel, BlobModel, async_detector, detector
from tests.support.images import write_blob_images
from verilabel.labels import Label
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext
from verilabel.runs import service as runs
from verilabel.runs.pipeline import Outcome, Pipeline, PipelineOptions, StageTimer, WorkItem
from verilabel.store import Store
from verilabel.store.schema import RunLabelRow

CONTEXT = PredictContext("detection", ("red", "green", "blue"), 0.0)


def options(batch_size: int = 4) -> PipelineOptions:
    names = {name: name for name in CONTEXT.classes}
    return PipelineOptions(
        batch_size, decode_threads=2, max_pixels=10**8, draft_size=None, min_confidence=0.0, to_dataset=names
    )


def run_pipeline(
    model: Any, items: list[WorkItem], sink: Any = None, batch_size: int = 4
) -> tuple[list[list[Outcome]], StageTimer]:
    calls: list[list[Outcome]] = []
    timer = StageTimer()
    Pipeline(model, CONTEXT, options(batch_size), timer, threading.Event()).run(items, sink or calls.append)
    return calls, timer


def work(tmp_path: Path, count: int) -> list[WorkItem]:
    return [WorkItem(i, str(path)) for i, path in enumerate(write_blob_images(tmp_path, count))]


def summary(calls: list[list[Outcome]]) -> list[tuple[int, list[tuple[str, float | None]]]]:
    return [(o.sample_id, [(label.label, label.confidence) for label in o.labels]) for batch in calls for o in batch]


def test_an_asynchronous_model_is_labelled_beside_the_model_thread_with_the_same_results(tmp_path: Path):
    items = work(tmp_path, 18)
    plain = detector(LoadRequest())
    overlapped = async_detector(LoadRequest())
    expected, _ = run_pipeline(plain, items)
    got, timer = run_pipeline(overlapped, items)
    assert summary(got) == summary(expected)  # same labels, same order
    assert [o.sample_id for batch in got for o in batch] == list(range(18))
    assert overlapped.threads == {"verilabel-labeller"}  # to_labels ran in the labelling thread
    assert {"model", "labels", "wait_labels"} <= set(timer.seconds)
    assert timer.images == 18


def test_a_synchronous_model_is_not_split(tmp_path: Path):
    model = AsyncBlobModel(async_detector.spec)
    model.asynchronous = False  # type: ignore[misc]
    run_pipeline(model, work(tmp_path, 6))
    assert model.threads == {threading.current_thread().name}  # predict, in the calling (model) thread


def test_the_writer_commits_queued_batches_together_and_writes_each_outcome_once(tmp_path: Path):
    items = work(tmp_path, 40)
    calls: list[list[Outcome]] = []

    def slow_sink(batch: list[Outcome]) -> None:
        time.sleep(0.2)  # a database slower than the model: batches queue up behind it
        calls.append(batch)

    run_pipeline(detector(LoadRequest()), items, slow_sink, batch_size=2)
    written = [o.sample_id for batch in calls for o in batch]
    assert written == list(range(40))
    assert max(len(batch) for batch in calls) > 2  # at least one transaction carried several batches
    assert len(calls) < 20


class FailingLabels(AsyncBlobModel):
    def to_labels(self, raw: Any, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        if any(item.sample_id >= 8 for item in images):
            raise RuntimeError("post-processing broke on the third batch")
        return super().to_labels(raw, images, context)


def test_a_failure_while_labelling_stops_the_run_and_nothing_after_it_is_written(tmp_path: Path):
    calls: list[list[Outcome]] = []
    with pytest.raises(RuntimeError, match="third batch"):
        run_pipeline(FailingLabels(async_detector.spec), work(tmp_path, 20), calls.append)
    written = [o.sample_id for batch in calls for o in batch]
    assert written == list(range(len(written))) and len(written) <= 8


class OutOfMemoryAbove(AsyncBlobModel):
    """A device that fits 2 images at a time."""

    def __init__(self) -> None:
        super().__init__(async_detector.spec)
        self.sizes: list[int] = []

    def infer(self, images: Sequence[ImageItem], context: PredictContext) -> Any:
        self.sizes.append(len(images))
        if len(images) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().infer(images, context)


def test_out_of_memory_in_infer_halves_the_batch_and_loses_nothing(tmp_path: Path):
    items = work(tmp_path, 12)
    model = OutOfMemoryAbove()
    got, _ = run_pipeline(model, items, batch_size=8)
    expected, _ = run_pipeline(BlobModel(detector.spec), items, batch_size=8)
    assert summary(got) == summary(expected)
    assert model.sizes[:3] == [8, 4, 2] and max(model.sizes[3:]) <= 2


@pytest.mark.slow
def test_a_worker_run_with_an_asynchronous_model_matches_the_synchronous_run(store: Store, tmp_path: Path):
    blob_dataset(store, tmp_path / "imgs", 24)
    plain = runs.wait_run(store, runs.create_run(store, request("plain", batch_size=4)).id, timeout=120)
    overlapped = runs.wait_run(
        store,
        runs.create_run(
            store, request("overlapped", batch_size=4, model="python:tests.support.blob_model:async_detector")
        ).id,
        timeout=120,
    )
    assert plain.status == overlapped.status == "in_review", overlapped.to_json()
    assert label_snapshot(store, overlapped.id) == label_snapshot(store, plain.id)
    assert overlapped.labels > 0 and "labels" in overlapped.timings


@pytest.mark.slow
def test_workers_sharing_a_cpu_split_its_cores_between_their_torch_thread_pools(store: Store, tmp_path: Path):
    import os

    blob_dataset(store, tmp_path / "imgs", 8)
    model = "python:tests.support.blob_model:thread_reporter"
    info = runs.create_run(store, request("t", task="classification", model=model, workers=2, device="cpu"))
    info = runs.wait_run(store, info.id, timeout=120)
    assert info.status == "in_review", info.to_json()
    with store.read() as session:
        seen = {row.attributes["torch_threads"] for row in session.query(RunLabelRow).filter_by(run_id=info.id)}
    assert seen == {max(1, (os.cpu_count() or 1) // 2)}
