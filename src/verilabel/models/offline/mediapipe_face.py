"""BlazeFace (MediaPipe legacy solution, bundled TFLite): faces with six keypoints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from verilabel.labels import Box, Detection, Keypoints, Label
from verilabel.models.catalogue import CatalogueEntry
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext
from verilabel.models.runtimes import RuntimeChoice


class MediapipeFace:
    def __init__(self, entry: CatalogueEntry, min_confidence: float) -> None:
        import mediapipe as mp

        self.spec = entry.spec(batch_size=8)
        self.keypoint_names = entry.keypoint_names
        self.runtime = RuntimeChoice("mediapipe", device="cpu")
        # model_selection=1 is the full-range model (faces up to ~5 m), better for photos than selfies' 0
        self._detector: Any = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_confidence
        )

    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        results: list[list[Label]] = []
        for item in images:
            found = self._detector.process(item.array).detections or []
            labels: list[Label] = []
            for det in found:
                rel = det.location_data.relative_bounding_box
                box = Box.from_xyxy_pixels(rel.xmin, rel.ymin, rel.xmin + rel.width, rel.ymin + rel.height, 1, 1)
                if box.w <= 0 or box.h <= 0:
                    continue
                points = tuple(
                    (min(max(k.x, 0.0), 1.0), min(max(k.y, 0.0), 1.0)) for k in det.location_data.relative_keypoints
                )
                keypoints = Keypoints(points, self.keypoint_names[: len(points)]) if points else None
                labels.append(Detection("face", box, float(det.score[0]), keypoints=keypoints))
            results.append(labels)
        return results


def load(request: LoadRequest, entry: CatalogueEntry) -> MediapipeFace:
    floor = request.min_confidence if request.min_confidence is not None else entry.default_confidence
    return MediapipeFace(entry, floor)
