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
from dataclasses import dataclass
from typing import Any

from verilabel.datasets.images import decode_sized
from verilabel.errors import SampleError
from verilabel.labels import Label
from verilabel.models.checks import check_predictions, full_resolution_masks
from verilabel.models.interface import ImageItem, Model, PredictContext
from verilabel.models.mapping import ClassMapping, to_dataset_labels


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
    negatives: tuple[str, ...] = ()  # model classes asked for to suppress look-alikes, never stored


class _Stage(threading.Thread):
    """A thread draining a bounded queue. Its first failure is re-raised in the producer (on ``put`` or
    ``close``); after a failure it drains without working, so the producer never blocks on a full queue."""

    def __init__(self, name: str, size: int, timer: StageTimer, wait_name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=size)
        self.error: BaseException | None = None
        self._timer, self._wait_name = timer, wait_name

    def handle(self, item: Any) -> None:
        raise NotImplementedError

    def take(self, first: Any) -> tuple[Any, bool]:
        """The work for one ``handle`` call starting from ``first``, and whether the queue was closed."""
        return first, False

    def run(self) -> None:
        closing = False
        while not closing and (item := self.queue.get()) is not None:
            item, closing = self.take(item)
            if self.error is None:
                try:
                    self.handle(item)
                except BaseException as exc:
                    self.error = exc

    def put(self, item: Any) -> None:
        if self.error is not None:
            raise self.error
        start = time.perf_counter()
        self.queue.put(item)
        self._timer.add(self._wait_name, time.perf_counter() - start)

    def close(self) -> None:
        self.queue.put(None)
        self.join()
        if self.error is not None:
            raise self.error


class _Writer(_Stage):
    """Hands outcome batches to the sink (one transaction each).

    Group commit: when batches queue up (the model outpaces the database), the writer hands all of them to the
    sink at once, so one transaction carries several batches and the cost of each commit (index pages written
    to the WAL) is shared: a fast model is then limited by rows written, not by commits."""

    def __init__(self, sink: Sink, timer: StageTimer, on_written: Callable[[int], None]) -> None:
        super().__init__("verilabel-writer", 8, timer, "wait_write")
        self._sink, self._on_written = sink, on_written

    def take(self, first: list[Outcome]) -> tuple[list[Outcome], bool]:
        batch = first
        while True:
            try:
                more = self.queue.get_nowait()
            except queue.Empty:
                return batch, False
            if more is None:
                return batch, True
            batch = batch + more

    def handle(self, batch: list[Outcome]) -> None:
        start = time.perf_counter()
        try:
            self._sink(batch)
            self._on_written(len(batch))
        finally:
            self._timer.add("write", time.perf_counter() - start)


class _Labeller(_Stage):
    """Turns raw model outputs into checked labels beside the model thread, for asynchronous models: while it
    post-processes batch N on the CPU, the accelerator already runs batch N+1."""

    def __init__(self, pipeline: Pipeline, writer: _Writer) -> None:
        super().__init__("verilabel-labeller", 2, pipeline.timer, "wait_labels")
        self._pipeline, self._writer = pipeline, writer

    def handle(self, work: tuple[list[Outcome], list[tuple[list[ImageItem], Any]]]) -> None:
        self._pipeline.label(*work, self._writer)


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
        model_classes = (*options.to_dataset, *options.negatives)
        self._mapping = ClassMapping(model_classes, options.to_dataset, options.negatives)
        self.timer, self.stop = timer, stop
        self.on_written = on_written
        self.batch_size = options.batch_size
        self._prepare: Callable[[Any], Any] | None = getattr(model, "prepare", None)
        self._started = 0.0
        # An asynchronous model splits predict into infer (queue the device work) and to_labels (wait, read out).
        self.overlap = bool(getattr(model, "asynchronous", False)) and all(
            callable(getattr(model, name, None)) for name in ("infer", "to_labels")
        )

    def _load(self, item: WorkItem) -> ImageItem | Outcome:
        start = time.perf_counter()
        try:
            array, full = decode_sized(
                item.path, max_pixels=self.options.max_pixels, draft_size=self.options.draft_size
            )
            prepared = self._prepare(array) if self._prepare is not None else None
            return ImageItem(item.sample_id, item.path, array, prepared, full)
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

    def _infer(self, batch: list[ImageItem]) -> list[tuple[list[ImageItem], Any]]:
        """The model's raw outputs for the batch: ``infer``'s (asynchronous models) or ``predict``'s labels.
        Out of device memory, the batch is halved for the rest of the run and this one retried in halves."""
        try:
            start = time.perf_counter()
            call = self.model.infer if self.overlap else self.model.predict  # type: ignore[attr-defined]
            raw = call(batch, self.context)
            self.timer.add("model", time.perf_counter() - start)
            return [(batch, raw)]
        except Exception as exc:
            if not _is_out_of_memory(exc) or len(batch) == 1:
                raise
            self.batch_size = min(self.batch_size, max(1, len(batch) // 2))
            parts: list[tuple[list[ImageItem], Any]] = []
            while batch:  # at the size that fits, which each retry may lower further
                size = self.batch_size
                parts += self._infer(batch[:size])
                batch = batch[size:]
            return parts

    def label(self, failed: list[Outcome], parts: list[tuple[list[ImageItem], Any]], writer: _Writer) -> None:
        """Check and finish the labels of inferred batches, then hand them with ``failed`` to the writer."""
        outcomes = list(failed)
        for batch, raw in parts:
            start = time.perf_counter()
            outputs = self.model.to_labels(raw, batch, self.context) if self.overlap else raw  # type: ignore[attr-defined]
            checked = [
                full_resolution_masks(item, labels)
                for item, labels in zip(
                    batch, check_predictions(self.model.spec, self.context, batch, outputs), strict=True
                )
            ]
            self.timer.add("labels", time.perf_counter() - start)
            outcomes += [
                Outcome(item.sample_id, self._finish(labels)) for item, labels in zip(batch, checked, strict=True)
            ]
            if not self.timer.images:  # the first batch pays the warm-up (lazy init, kernel selection, caches)
                self.timer.add("first_batch", time.perf_counter() - self._started)
                self.timer.add("first_batch_images", len(batch))
            self.timer.images += len(batch)
        if outcomes:
            writer.put(outcomes)

    def _finish(self, labels: list[Label]) -> list[Label]:
        """Keep labels above the confidence floor (the ``max_labels`` most confident), as the dataset stores them
        (``verilabel.models.mapping.to_dataset_labels``: dataset classes, synonyms merged, negatives applied)."""
        floor = self.options.min_confidence
        kept = to_dataset_labels([label for label in labels if (label.confidence or 0.0) >= floor], self._mapping)
        if self.options.max_labels is not None and len(kept) > self.options.max_labels:
            kept = sorted(kept, key=lambda label: -(label.confidence or 0.0))[: self.options.max_labels]
        return kept

    def run(self, items: Iterable[WorkItem], sink: Sink) -> None:
        self._started = time.perf_counter()
        writer = _Writer(sink, self.timer, self.on_written)
        writer.start()
        labeller = _Labeller(self, writer) if self.overlap else None
        if labeller is not None:
            labeller.start()
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
                        self._flush(batch, failed, writer, labeller)
                        batch, failed = [], []
                    if self.stop.is_set():
                        break
                self._flush(batch, failed, writer, labeller)
        finally:
            try:
                if labeller is not None:
                    labeller.close()
            finally:
                writer.close()

    def _flush(
        self, batch: list[ImageItem], failed: list[Outcome], writer: _Writer, labeller: _Labeller | None
    ) -> None:
        parts = self._infer(batch) if batch else []
        if labeller is not None:
            labeller.put((failed, parts))
        else:
            self.label(failed, parts, writer)
