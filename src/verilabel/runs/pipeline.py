"""The streaming, batched labelling pipeline of one worker.

    samples (pages from the store)
      -> decode pool (threads: read + decode + the model's optional ``prepare``), a bounded window ahead
      -> batches of ``batch_size`` -> model.predict -> contract checks -> class mapping + confidence floor
      -> writer thread (bounded queue): one transaction per batch, labels and sample states together

Memory is bounded by the prefetch window and the writer queue, never by the dataset size. Each stage adds
its seconds to a ``StageTimer`` (the model thread's waits are measured too: ``wait_decode``, ``wait_write``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from verilabel.datasets.images import decode
from verilabel.errors import SampleError
from verilabel.labels import Label
from verilabel.models.checks import check_predictions
from verilabel.models.interface import ImageItem, Model, PredictContext


@dataclass(frozen=True)
class WorkItem:
    sample_id: int
    path: str


@dataclass
class Outcome:
    """The result for one sample: its labels, or the reason it failed."""

    sample_id: int
    labels: list[Label]
    error: str | None = None


Sink = Callable[[list[Outcome]], None]


class StageTimer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}
        self.images = 0

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {k: round(v, 3) for k, v in self.seconds.items()} | {"images": self.images}


@dataclass(frozen=True)
class PipelineOptions:
    batch_size: int
    decode_threads: int
    max_pixels: int
    draft_size: int | None
    min_confidence: float
    to_dataset: Mapping[str, str]
    max_labels: int | None = None


class _Writer(threading.Thread):
    """Consumes outcome batches and hands them to the sink; a failure is re-raised in the model thread."""

    def __init__(self, sink: Sink, timer: StageTimer, on_written: Callable[[int], None]) -> None:
        super().__init__(name="verilabel-writer", daemon=True)
        self.queue: queue.Queue[list[Outcome] | None] = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self._sink, self._timer, self._on_written = sink, timer, on_written

    def run(self) -> None:
        while (batch := self.queue.get()) is not None:
            if self.error is not None:
                continue  # drain without writing after a failure
            start = time.perf_counter()
            try:
                self._sink(batch)
                self._on_written(len(batch))
            except BaseException as exc:
                self.error = exc
            self._timer.add("write", time.perf_counter() - start)

    def put(self, batch: list[Outcome], timer: StageTimer) -> None:
        if self.error is not None:
            raise self.error
        start = time.perf_counter()
        self.queue.put(batch)
        timer.add("wait_write", time.perf_counter() - start)

    def close(self) -> None:
        self.queue.put(None)
        self.join()
        if self.error is not None:
            raise self.error


def _is_out_of_memory(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


class Pipeline:
    def __init__(
        self,
        model: Model,
        context: PredictContext,
        options: PipelineOptions,
        timer: StageTimer,
        stop: threading.Event,
        on_written: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.model, self.context, self.options = model, context, options
        self.timer, self.stop = timer, stop
        self.on_written = on_written
        self.batch_size = options.batch_size
        self._prepare: Callable[[Any], Any] | None = getattr(model, "prepare", None)
        self._started = 0.0

    def _load(self, item: WorkItem) -> ImageItem | Outcome:
        start = time.perf_counter()
        try:
            array = decode(item.path, max_pixels=self.options.max_pixels, draft_size=self.options.draft_size)
            prepared = self._prepare(array) if self._prepare is not None else None
            return ImageItem(item.sample_id, item.path, array, prepared)
        except SampleError as exc:
            return Outcome(item.sample_id, [], str(exc))
        except Exception as exc:  # a decoder or prepare() bug on one file must not stop the run
            return Outcome(item.sample_id, [], f"cannot read {item.path}: {type(exc).__name__}: {exc}")
        finally:
            self.timer.add("decode", time.perf_counter() - start)

    def _decoded(self, items: Iterable[WorkItem], pool: ThreadPoolExecutor) -> Iterator[ImageItem | Outcome]:
        """Decoded images in input order, keeping a bounded window of decodes in flight ahead of the model."""
        window: deque[Future[ImageItem | Outcome]] = deque()
        source = iter(items)
        exhausted = False
        while True:
            ahead = self.batch_size * 2 + self.options.decode_threads
            while not exhausted and len(window) < ahead and not self.stop.is_set():
                nxt = next(source, None)
                if nxt is None:
                    exhausted = True
                else:
                    window.append(pool.submit(self._load, nxt))
            if not window:
                return
            start = time.perf_counter()
            result = window.popleft().result()
            self.timer.add("wait_decode", time.perf_counter() - start)
            yield result

    def _predict(self, batch: list[ImageItem]) -> list[list[Label]]:
        try:
            start = time.perf_counter()
            outputs = self.model.predict(batch, self.context)
            self.timer.add("model", time.perf_counter() - start)
        except Exception as exc:
            if not _is_out_of_memory(exc) or len(batch) == 1:
                raise
            # Out of device memory: halve the batch for the rest of the run and retry this one in halves.
            self.batch_size = max(1, len(batch) // 2)
            return self._predict(batch[: self.batch_size]) + self._predict(batch[self.batch_size :])
        start = time.perf_counter()
        checked = check_predictions(self.model.spec, self.context, batch, outputs)
        self.timer.add("check", time.perf_counter() - start)
        return checked

    def _finish(self, labels: list[Label]) -> list[Label]:
        """Keep labels above the confidence floor (the ``max_labels`` most confident), renamed to their dataset
        classes."""
        floor, names = self.options.min_confidence, self.options.to_dataset
        kept = [label for label in labels if label.label in names and (label.confidence or 0.0) >= floor]
        if self.options.max_labels is not None and len(kept) > self.options.max_labels:
            kept = sorted(kept, key=lambda label: -(label.confidence or 0.0))[: self.options.max_labels]
        return [replace(label, label=names[label.label]) for label in kept]

    def run(self, items: Iterable[WorkItem], sink: Sink) -> None:
        self._started = time.perf_counter()
        writer = _Writer(sink, self.timer, self.on_written)
        writer.start()
        try:
            with ThreadPoolExecutor(self.options.decode_threads, thread_name_prefix="verilabel-decode") as pool:
                batch: list[ImageItem] = []
                failed: list[Outcome] = []
                for result in self._decoded(items, pool):
                    if isinstance(result, Outcome):
                        failed.append(result)
                    else:
                        batch.append(result)
                    if len(batch) >= self.batch_size or len(failed) >= self.batch_size:
                        self._flush(batch, failed, writer)
                        batch, failed = [], []
                    if self.stop.is_set():
                        break
                self._flush(batch, failed, writer)
        finally:
            writer.close()

    def _flush(self, batch: list[ImageItem], failed: list[Outcome], writer: _Writer) -> None:
        outcomes = list(failed)
        if batch:
            predictions = self._predict(batch)
            outcomes += [
                Outcome(item.sample_id, self._finish(labels)) for item, labels in zip(batch, predictions, strict=True)
            ]
            if not self.timer.images:  # the first batch pays the warm-up (lazy init, kernel selection, caches)
                self.timer.add("first_batch", time.perf_counter() - self._started)
                self.timer.add("first_batch_images", len(batch))
            self.timer.images += len(batch)
        if outcomes:
            writer.put(outcomes, self.timer)
