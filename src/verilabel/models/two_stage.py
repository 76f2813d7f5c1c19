"""Two-stage segmentation: boxes from a detector, masks from a promptable segmenter (SAM, SAM 2).

``--model DETECTOR+SEGMENTER`` (e.g. ``owlv2-base-patch16-ensemble+sam2.1-hiera-small``) chains any detector
with any segmenter; ``--model field:FIELD+SEGMENTER`` takes the boxes of an existing label field instead, which
adds masks to detections a dataset already has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from sqlalchemy import select

from verilabel.errors import ModelLoadError
from verilabel.labels import Detection, Label
from verilabel.models.interface import ImageItem, Model, ModelSpec, PredictContext, PromptedSegmenter
from verilabel.models.registry import FIELD_PREFIX
from verilabel.models.runtimes import runtime_of


class TwoStage:
    def __init__(self, detector: Model, segmenter: PromptedSegmenter) -> None:
        first, second = detector.spec, segmenter.spec
        self.detector, self.segmenter = detector, segmenter
        self.spec = ModelSpec(
            f"{first.name}+{second.name}",
            ("segmentation", "detection"),
            zero_shot=first.zero_shot,
            vocabulary=first.vocabulary,
            default_confidence=first.default_confidence,
            batch_size=min(first.batch_size, second.batch_size),
            input_size=None,  # the segmenter wants detail the detector's input size would drop
            version=f"{first.version}+{second.version}",
            weights=f"{first.weights}+{second.weights}",
        )
        self._prepares = (getattr(detector, "prepare", None), getattr(segmenter, "prepare", None))
        self.runtime = runtime_of(detector, catalogued=True)  # the segmenter (SAM) runs on torch

    def prepare(self, image: np.ndarray) -> tuple[Any, Any]:
        """Both stages' decode-pool work, done once per image ahead of the model thread."""
        return tuple(p(image) if p is not None else None for p in self._prepares)  # type: ignore[return-value]

    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        staged = [item.prepared if item.prepared is not None else self.prepare(item.array) for item in images]
        detected = self.detector.predict(
            [replace(item, prepared=p[0]) for item, p in zip(images, staged, strict=True)],
            replace(context, task="detection"),
        )
        if context.task == "detection":
            return detected
        boxes = [[label for label in labels if isinstance(label, Detection)] for labels in detected]
        masked = self.segmenter.segment(
            [replace(item, prepared=p[1]) for item, p in zip(images, staged, strict=True)], boxes
        )
        return [list(labels) for labels in masked]


class FieldBoxes:
    """A "detector" that returns the detections an existing label field holds for each sample."""

    def __init__(self, field: str, vocabulary: tuple[str, ...]) -> None:
        from verilabel.store import Store

        self.field = field
        self._store = Store.open()
        self.spec = ModelSpec(
            f"{FIELD_PREFIX}{field}",
            ("detection",),
            zero_shot=not vocabulary,
            vocabulary=vocabulary,
            default_confidence=0.0,
            batch_size=32,
            version="field",
            weights="",
        )

    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        from verilabel.store.convert import row_label
        from verilabel.store.schema import LabelFieldRow, LabelRow, SampleRow

        wanted = set(context.classes)
        ids = [item.sample_id for item in images]
        by_sample: dict[int, list[Label]] = {i: [] for i in ids}
        with self._store.read() as session:
            rows = session.scalars(
                select(LabelRow)
                .join(LabelFieldRow, LabelFieldRow.id == LabelRow.field_id)
                .join(SampleRow, SampleRow.id == LabelRow.sample_id)
                .where(
                    LabelRow.sample_id.in_(ids),
                    LabelFieldRow.name == self.field,
                    LabelFieldRow.dataset_id == SampleRow.dataset_id,
                )
                .order_by(LabelRow.sample_id, LabelRow.id)
            ).all()
            for row in rows:
                label = row_label(row)
                if isinstance(label, Detection) and label.label in wanted:
                    # A box without a score (a human's) counts as certain; attributes and tags travel on.
                    confidence = 1.0 if label.confidence is None else label.confidence
                    by_sample[row.sample_id].append(
                        Detection(label.label, label.box, confidence, attributes=dict(label.attributes))
                    )
        return [by_sample[i] for i in ids]


def build(detector: Model, segmenter: Model) -> TwoStage:
    if not isinstance(segmenter, PromptedSegmenter) or not callable(getattr(segmenter, "segment", None)):
        raise ModelLoadError(
            f"{segmenter.spec.name!r} does not take box prompts: after `+` name a segmenter such as sam-vit-base "
            "or sam2.1-hiera-small (`verilabel models --task segmentation` marks them prompted)"
        )
    return TwoStage(detector, segmenter)
