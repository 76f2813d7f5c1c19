"""A model whose network runs on a simulated accelerator: the engine's host side measured without a GPU.

    verilabel run ... --model python:benchmarks.simulated_device:load --model-option rate=1020 ...

The simulated device behaves like one CUDA stream: ``infer`` queues the batch's forward and returns at once
(a kernel launch), the device works through queued batches one after the other at ``rate`` images/s, and
``to_labels`` first waits for its batch to finish (the ``.cpu()`` sync, which frees the GIL, as a sleep does),
then builds ``labels`` detections per image (or one classification with its top-5 scores) through the same
helpers the real adapters use. So a run's throughput against ``rate`` says how much of a GPU's forward
ceiling the engine's host work (decode, post-processing, checks, writes: Python under one GIL) leaves usable.

Model options: ``rate`` (forward images/s, the ceiling), ``labels`` (detections per image), ``batch_size``,
``input_size`` (the prepared square side). A classification run gets one classification per image.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np

from verilabel.labels import Classification, Label
from verilabel.models.interface import ImageItem, LoadRequest, ModelSpec, PredictContext, SplitPredict
from verilabel.models.postprocess import box_detection
from verilabel.models.preprocess import resize


class SimulatedDevice:
    """One in-order queue of work: each submission starts when the previous one ends."""

    def __init__(self) -> None:
        self._free_at = 0.0
        self._lock = threading.Lock()

    def submit(self, seconds: float) -> float:
        """Queue ``seconds`` of work; returns when it will be done (``time.perf_counter`` clock)."""
        with self._lock:
            self._free_at = max(self._free_at, time.perf_counter()) + seconds
            return self._free_at

    @staticmethod
    def wait(done_at: float) -> None:
        delay = done_at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


class SimulatedModel(SplitPredict):
    asynchronous = True  # infer returns before the device is done: host work can overlap it

    def __init__(self, request: LoadRequest) -> None:
        options = request.options
        self._rate = float(options.get("rate", 1000))
        self._labels = int(options.get("labels", 20))
        self._size = int(options.get("input_size", 64))
        self.spec = ModelSpec(
            name="simulated",
            tasks=("classification", "detection"),
            zero_shot=True,
            default_confidence=0.0,
            batch_size=int(options.get("batch_size", 32)),
        )
        self._device = SimulatedDevice()
        # A bank of model outputs drawn once (the simulated network's "results"): post-processing reads them.
        rng = np.random.default_rng(0)
        corners = np.sort(rng.random((64, self._labels, 2, 2)), axis=2).reshape(64, self._labels, 4)[..., [0, 2, 1, 3]]
        self._rows = np.concatenate(
            [corners, rng.random((64, self._labels, 1)), rng.integers(0, 1000, (64, self._labels, 1))], axis=2
        )
        self._scores = rng.dirichlet(np.ones(1000), 64)
        self._count = 0

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return resize(image, self._size, self._size)

    def infer(self, images: Sequence[ImageItem], context: PredictContext) -> float:
        return self._device.submit(len(images) / self._rate)

    def to_labels(self, done_at: float, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        self._device.wait(done_at)
        classes = context.classes
        if context.task == "classification":
            return [self._classification(classes) for _ in images]
        return [self._detections(item, classes) for item in images]

    def _classification(self, classes: tuple[str, ...]) -> list[Label]:
        """What a classifier's post-processing does per image once its scores are on the host."""
        scores = self._scores[self._next() % len(self._scores), : len(classes)]
        order = np.argsort(-scores, kind="stable")[:5]
        top = [[classes[i], round(float(scores[i]), 4)] for i in order]
        return [Classification(classes[order[0]], float(scores[order[0]]), attributes={"scores": top})]

    def _detections(self, item: ImageItem, classes: tuple[str, ...]) -> list[Label]:
        """What a detector's post-processing does per image once its top boxes are on the host: rows of
        (x1, y1, x2, y2, score, class) in pixels to clipped, validated detections."""
        rows = self._rows[self._next() % len(self._rows)]
        xyxy = rows[:, :4] * np.array([item.width, item.height, item.width, item.height])
        found: list[Label] = []
        for box, score, cls in zip(xyxy.tolist(), rows[:, 4].tolist(), rows[:, 5].astype(int).tolist(), strict=True):
            detection = box_detection(
                classes[cls % len(classes)], score, (box[0], box[1], box[2], box[3]), item.width, item.height
            )
            if detection is not None:
                found.append(detection)
        return found

    def _next(self) -> int:
        self._count += 1
        return self._count


def load(request: LoadRequest) -> SimulatedModel:
    return SimulatedModel(request)
