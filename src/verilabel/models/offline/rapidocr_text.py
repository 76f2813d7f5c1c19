"""PP-OCR via RapidOCR (ONNX models bundled in the package): text boxes with the text read in them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from verilabel.labels import Box, Detection, Label, Polygon
from verilabel.models.catalogue import CatalogueEntry
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext
from verilabel.models.runtimes import RuntimeChoice


class RapidOcrText:
    def __init__(self, entry: CatalogueEntry) -> None:
        from rapidocr import RapidOCR

        self.spec = entry.spec(batch_size=4)
        self.runtime = RuntimeChoice("onnx", device="cpu")  # RapidOCR runs its own ONNX Runtime sessions
        self._engine: Any = RapidOCR(params={"Global.log_level": "error"})

    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        results: list[list[Label]] = []
        for item in images:
            output = self._engine(item.array[:, :, ::-1])  # RapidOCR reads arrays as OpenCV BGR
            labels: list[Label] = []
            if output.boxes is not None:
                for quad, text, score in zip(output.boxes, output.txts, output.scores, strict=True):
                    xs = [min(max(float(x) / item.width, 0.0), 1.0) for x, _ in quad]
                    ys = [min(max(float(y) / item.height, 0.0), 1.0) for _, y in quad]
                    box = Box.from_xyxy_pixels(min(xs), min(ys), max(xs), max(ys), 1, 1)
                    polygon = Polygon((tuple(zip(xs, ys, strict=True)),))
                    labels.append(Detection("text", box, float(score), polygon=polygon, attributes={"text": str(text)}))
            results.append(labels)
        return results


def load(request: LoadRequest, entry: CatalogueEntry) -> RapidOcrText:
    return RapidOcrText(entry)
