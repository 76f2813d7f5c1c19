"""A deterministic user model for tests: finds pure red / green / blue rectangles in images.

It is loaded the way users load their own models (``--model python:tests.support.blob_model:detector``), so
tests exercise the real plugin path, in real worker processes. ``BLOB_MODEL_DELAY`` (seconds per batch) slows
it down so a test can kill a worker mid-run.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ClassVar

import numpy as np

from verilabel import Box, Classification, Detection, ImageItem, LoadRequest, Mask, ModelSpec, PredictContext
from verilabel.labels import Keypoints, Label

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


def colour_mask(array: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    diff = np.abs(array.astype(np.int16) - np.array(rgb, dtype=np.int16)).max(axis=2)
    return diff < 40


def confidence_for(box: Box) -> float:
    """Deterministic and spread over (0.2, 1): bigger blobs are 'surer'."""
    return round(min(0.99, 0.2 + 4 * box.w * box.h), 4)


class BlobModel:
    def __init__(self, spec: ModelSpec, with_masks: bool = False) -> None:
        self.spec = spec
        self.with_masks = with_masks

    def _blobs(self, item: ImageItem, names: Sequence[str]) -> list[Detection]:
        found = []
        for name in names:
            if name not in COLOURS:
                continue
            mask = colour_mask(item.array, COLOURS[name])
            if mask.sum() < 16:
                continue
            ys, xs = np.nonzero(mask)
            box = Box.from_xyxy_pixels(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, item.width, item.height)
            detection = Detection(name, box, confidence_for(box))
            if self.with_masks:
                x, y, w, h = box.to_pixels(item.width, item.height)
                detection.mask = Mask(array=mask[y : y + h, x : x + w])
            found.append(detection)
        return found

    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        delay = float(os.environ.get("BLOB_MODEL_DELAY", "0"))
        if delay:
            time.sleep(delay)
        results: list[list[Label]] = []
        for item in images:
            blobs = self._blobs(item, context.classes)
            if context.task == "classification":
                best = max(blobs, key=lambda d: d.box.w * d.box.h, default=None)
                results.append([Classification(best.label, best.confidence)] if best else [])
            else:
                results.append(list(blobs))
        return results


class AsyncBlobModel(BlobModel):
    """The blob model on a simulated asynchronous device: ``infer`` queues the batch on a worker thread (like a
    CUDA launch) and ``to_labels`` waits for it, so the engine overlaps labelling with the next batch."""

    asynchronous = True

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.device = ThreadPoolExecutor(1, thread_name_prefix="blob-device")
        self.threads: set[str] = set()  # where to_labels ran (tests check it is not the model's thread)

    def infer(self, images: Sequence[ImageItem], context: PredictContext) -> Future[list[list[Label]]]:
        return self.device.submit(BlobModel.predict, self, images, context)

    def to_labels(
        self, raw: Future[list[list[Label]]], images: Sequence[ImageItem], context: PredictContext
    ) -> list[list[Label]]:
        self.threads.add(threading.current_thread().name)
        return raw.result()

    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        return self.to_labels(self.infer(images, context), images, context)


class BoxFiller:
    """A promptable segmenter for tests: the mask of each box prompt is the ellipse inscribed in it."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        raise RuntimeError("BoxFiller needs box prompts")

    def segment(self, images: Sequence[ImageItem], detections: Sequence[Sequence[Detection]]) -> list[list[Detection]]:
        results = []
        for item, found in zip(images, detections, strict=True):
            masked = []
            for detection in found:
                _, _, w, h = detection.box.to_pixels(item.width, item.height)
                yy, xx = np.mgrid[0:h, 0:w]
                ellipse = ((yy + 0.5 - h / 2) / (h / 2)) ** 2 + ((xx + 0.5 - w / 2) / (w / 2)) ** 2 <= 1
                masked.append(Detection(detection.label, detection.box, detection.confidence, mask=Mask(ellipse)))
            results.append(masked)
        return results


class ColourWords(BlobModel):
    """A zero-shot blob model that reads words, as text-prompted detectors do: a synonym (``crimson``) finds its
    colour's blobs a little less surely, a look-alike (``painted blue``) a little more surely."""

    WORDS: ClassVar[dict[str, tuple[str, float]]] = {
        "crimson": ("red", 0.9),
        "scarlet": ("red", 0.8),
        "painted blue": ("blue", 1.01),
    }

    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        results: list[list[Label]] = [[] for _ in images]
        for word in context.classes:
            colour, factor = self.WORDS.get(word, (word, 1.0))
            for found, item in zip(results, images, strict=True):
                for blob in self._blobs(item, [colour]):
                    confidence = min(1.0, (blob.confidence or 0.0) * factor)
                    found.append(dataclasses.replace(blob, label=word, confidence=confidence))
        return results


def colour_words(request: LoadRequest) -> ColourWords:
    return ColourWords(colour_words.spec)


def box_filler(request: LoadRequest) -> BoxFiller:
    return BoxFiller(box_filler.spec)


def _spec(name: str, tasks: tuple, zero_shot: bool) -> ModelSpec:
    return ModelSpec(
        name,
        tasks,
        zero_shot=zero_shot,
        vocabulary=() if zero_shot else tuple(COLOURS),
        default_confidence=0.1,
        batch_size=4,
        version="test",
    )


def detector(request: LoadRequest) -> BlobModel:
    return BlobModel(detector.spec)


def async_detector(request: LoadRequest) -> AsyncBlobModel:
    return AsyncBlobModel(async_detector.spec)


def zero_shot(request: LoadRequest) -> BlobModel:
    return BlobModel(zero_shot.spec)


def segmenter(request: LoadRequest) -> BlobModel:
    return BlobModel(segmenter.spec, with_masks=True)


def draft_segmenter(request: LoadRequest) -> BlobModel:
    """A segmenter whose input is small (100 px): JPEGs are decoded at reduced scale for it, and its masks come
    out in the reduced decode's pixels, as a user's model may return them."""
    return BlobModel(draft_segmenter.spec, with_masks=True)


def masked_detector(request: LoadRequest) -> BlobModel:
    """A detector that also returns masks (as a user's model may) even in a plain detection run."""
    return BlobModel(masked_detector.spec, with_masks=True)


CORNERS = ("top_left", "top_right", "bottom_right", "bottom_left")
CORNER_SCORES = (1.0, 0.9, 0.5, 0.2)


class PoseBlobModel(BlobModel):
    """Each blob with its four corners as named keypoints, scored 1, 0.9, 0.5 and 0.2 in that order."""

    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        results: list[list[Label]] = []
        for found in super().predict(images, context):
            posed: list[Label] = []
            for blob in found:
                assert isinstance(blob, Detection)
                b = blob.box
                corners = ((b.x, b.y), (b.x + b.w, b.y), (b.x + b.w, b.y + b.h), (b.x, b.y + b.h))
                blob.keypoints = Keypoints(corners, CORNERS, CORNER_SCORES)
                posed.append(blob)
            results.append(posed)
        return results


def pose(request: LoadRequest) -> BlobModel:
    return PoseBlobModel(pose.spec)


def broken(request: LoadRequest) -> BlobModel:
    raise RuntimeError("weights file /nowhere/blob.pth is missing")


class _Liar(BlobModel):
    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        return super().predict(images, context)[:-1]  # one result short: breaks the contract


def liar(request: LoadRequest) -> BlobModel:
    return _Liar(liar.spec)


detector.spec = _spec("blobs", ("classification", "detection"), zero_shot=False)  # type: ignore[attr-defined]
async_detector.spec = _spec("blobs-async", ("classification", "detection"), zero_shot=False)  # type: ignore[attr-defined]
zero_shot.spec = _spec("blobs-zero-shot", ("classification", "detection"), zero_shot=True)  # type: ignore[attr-defined]
colour_words.spec = _spec("colour-words", ("detection",), zero_shot=True)  # type: ignore[attr-defined]
segmenter.spec = _spec("blobs-seg", ("segmentation",), zero_shot=False)  # type: ignore[attr-defined]
draft_segmenter.spec = dataclasses.replace(_spec("blobs-draft", ("segmentation",), zero_shot=False), input_size=100)  # type: ignore[attr-defined]
masked_detector.spec = _spec("blobs-masked", ("detection", "segmentation"), zero_shot=False)  # type: ignore[attr-defined]
pose.spec = _spec("blobs-pose", ("detection", "keypoints"), zero_shot=False)  # type: ignore[attr-defined]
broken.spec = _spec("blobs-broken", ("detection",), zero_shot=False)  # type: ignore[attr-defined]
box_filler.spec = _spec("box-filler", ("segmentation",), zero_shot=True)  # type: ignore[attr-defined]
liar.spec = _spec("blobs-liar", ("detection",), zero_shot=False)  # type: ignore[attr-defined]


class ThreadReporter(BlobModel):
    """Classifies every image as red, noting how many intra-op threads torch runs with in this worker."""

    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        import torch

        threads = torch.get_num_threads()
        return [[Classification("red", 1.0, attributes={"torch_threads": threads})] for _ in images]


def thread_reporter(request: LoadRequest) -> ThreadReporter:
    import torch  # noqa: F401  (a torch model: the worker sees torch loaded)

    return ThreadReporter(thread_reporter.spec)


thread_reporter.spec = _spec("threads", ("classification",), zero_shot=False)  # type: ignore[attr-defined]
