"""OpenCV's classical detectors (weights inside opencv < 5): HOG people and Haar frontal faces.

Their raw scores are SVM margins / cascade stage weights, mapped to [0, 1] with a logistic function: 0.5 is
the detector's own decision boundary. Images are scaled to at most ``MAX_SIDE`` pixels first (speed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from verilabel.labels import Box, Detection, Label
from verilabel.models.catalogue import CatalogueEntry
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext
from verilabel.models.runtimes import RuntimeChoice

MAX_SIDE = 640
Detector = Callable[[Any], tuple[Any, Any]]


def _logistic(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


class OpenCvDetector:
    def __init__(self, entry: CatalogueEntry, detect: Detector, grayscale: bool, min_size: tuple[int, int]) -> None:
        self.spec = entry.spec(batch_size=8, input_size=MAX_SIDE)
        self.runtime = RuntimeChoice("opencv", device="cpu")
        self._detect = detect
        self._grayscale = grayscale
        self._label = entry.vocabulary[0]
        self._min_width, self._min_height = min_size

    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        import cv2

        results: list[list[Label]] = []
        for item in images:
            scale = min(1.0, MAX_SIDE / max(item.width, item.height))
            image: Any = item.array
            if scale < 1.0:
                image = cv2.resize(
                    image, (round(item.width * scale), round(item.height * scale)), interpolation=cv2.INTER_AREA
                )
            if image.shape[1] < self._min_width or image.shape[0] < self._min_height:
                results.append([])  # smaller than the detector window: nothing to find (and HOG crashes)
                continue
            if self._grayscale:
                image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            rects, scores = self._detect(image)
            height, width = image.shape[:2]
            labels: list[Label] = []
            for (x, y, w, h), score in zip(
                np.asarray(rects).reshape(-1, 4), np.asarray(scores).reshape(-1), strict=True
            ):
                box = Box.from_xyxy_pixels(float(x), float(y), float(x + w), float(y + h), width, height)
                labels.append(Detection(self._label, box, _logistic(float(score))))
            results.append(labels)
        return results


def load_hog_person(request: LoadRequest, entry: CatalogueEntry) -> OpenCvDetector:
    import cv2

    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())  # type: ignore[attr-defined]

    def detect(image: Any) -> tuple[Any, Any]:
        rects, weights = hog.detectMultiScale(image, winStride=(8, 8), padding=(8, 8), scale=1.05)
        return rects, weights

    return OpenCvDetector(entry, detect, grayscale=False, min_size=(64 + 16, 128 + 16))


def load_haar_face(request: LoadRequest, entry: CatalogueEntry) -> OpenCvDetector:
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")  # type: ignore[attr-defined]
    if cascade.empty():
        from verilabel.errors import ModelLoadError

        raise ModelLoadError(
            "OpenCV's Haar cascade file is missing: install `opencv-contrib-python<5` (OpenCV 5 no longer ships it)"
        )

    def detect(image: Any) -> tuple[Any, Any]:
        rects, _levels, weights = cascade.detectMultiScale3(
            image, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24), outputRejectLevels=True
        )
        return rects, weights

    return OpenCvDetector(entry, detect, grayscale=True, min_size=(24, 24))
