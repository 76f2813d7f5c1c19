"""CVAT's automatic annotation with verilabel's models: a cvat-sdk auto-annotation function module.

    cvat-cli --server-host URL --auth USER task auto-annotate TASK --function-module verilabel.integrations.cvat \
        -p model=str:yolo11m-seg-coco [-p classes=str:person,car] [-p weights=str:PATH] [-p task=str:segmentation] \
        [-p device=str:cuda] [--conf-threshold 0.4] [--conv-mask-to-poly] [--allow-unmatched-labels]

``create(**params)`` loads the model once; the function's spec has one label per class (``classes``, else the
model's vocabulary; a zero-shot model needs ``classes``), typed by the task (default: the model's first):
detection -> rectangles, segmentation -> masks (polygons with ``--conv-mask-to-poly``), classification -> tags,
keypoints -> skeletons whose points are the model's keypoints (a model that does several: the first it lists,
classification last). cvat-sdk maps them to the task's labels by name.

``CvatModel`` is the part without cvat-sdk: the nuclio function (``verilabel.integrations.nuclio``) uses it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from verilabel.errors import ConfigError
from verilabel.formats.shapes import full_image_mask, outline
from verilabel.labels import Classification, Detection, Label
from verilabel.models.interface import TASKS, ImageItem, Model, PredictContext, Task

SHAPES: dict[Task, str] = {"detection": "rectangle", "segmentation": "mask", "classification": "tag"}


@dataclass(frozen=True)
class CvatLabel:
    id: int
    name: str
    type: str  # rectangle, mask, tag or skeleton
    keypoints: tuple[str, ...] = ()  # a skeleton's points, in order


@dataclass(frozen=True)
class Plan:
    """What a model answers CVAT with, known without loading it: its task, classes and CVAT labels."""

    model: str
    task: Task
    classes: tuple[str, ...]
    keypoint_names: tuple[str, ...]
    labels: tuple[CvatLabel, ...]
    floor: float
    extra: str  # the pip extra its adapter needs

    @classmethod
    def of(
        cls,
        model: str,
        *,
        classes: str | list[str] | tuple[str, ...] = (),
        weights: str | None = None,
        task: str | None = None,
        min_confidence: float | None = None,
        keypoints: str | list[str] | tuple[str, ...] = (),
    ) -> Plan:
        from verilabel.models import registry

        ref = registry.resolve(model, weights)
        # default: the model's first task, a whole-image class last (a detector that also classifies draws boxes)
        chosen = task or sorted(ref.tasks, key=lambda t: t == "classification")[0]
        if chosen not in TASKS or chosen not in ref.tasks:
            raise ConfigError("task", f"{model!r} does {', '.join(ref.tasks)}; pass one of them as the task")
        names = _names(classes)
        if not names and ref.zero_shot:
            raise ConfigError("classes", f"{model!r} is zero-shot: say what to find (classes a,b)")
        unknown = [c for c in names if not ref.zero_shot and c not in ref.vocabulary]
        if unknown:
            raise ConfigError("classes", f"{model!r} does not know {', '.join(unknown)}; see `verilabel models --json`")
        names = names or tuple(ref.vocabulary)
        points = _names(keypoints) or (ref.entry.keypoint_names if ref.entry else ())
        if chosen == "keypoints" and not points:
            raise ConfigError("keypoints", f"name {model!r}'s keypoints, in order (keypoints a,b,...)")
        labels = tuple(
            CvatLabel(i, name, "skeleton", points) if chosen == "keypoints" else CvatLabel(i, name, SHAPES[chosen])  # type: ignore[index]
            for i, name in enumerate(names)
        )
        floor = min_confidence if min_confidence is not None else ref.default_confidence or 0.0
        return cls(model, chosen, names, points, labels, floor, ref.entry.extra if ref.entry else "")  # type: ignore[arg-type]


def _names(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip())


class CvatModel:
    """A verilabel model and the CVAT labels it answers with."""

    def __init__(self, model: str, *, weights: str | None = None, device: str = "auto", **plan: Any) -> None:
        from verilabel.models import registry
        from verilabel.models.interface import LoadRequest

        self.plan = Plan.of(model, weights=weights, **plan)
        self.task, self.classes, self.floor = self.plan.task, self.plan.classes, self.plan.floor
        self.keypoint_names, self.labels = self.plan.keypoint_names, self.plan.labels
        ref = registry.resolve(model, weights)
        self.model: Model = registry.load(
            ref, LoadRequest(weights=weights, device=device, classes=self.classes, min_confidence=self.floor)
        )

    def predict(self, image: Any, threshold: float | None = None) -> tuple[list[Label], int, int]:
        """The labels of one image (a PIL image), at or above ``threshold`` (default: the model's floor); and the
        image's width and height."""
        array = np.asarray(image.convert("RGB"))
        height, width = array.shape[:2]
        floor = self.floor if threshold is None else threshold
        context = PredictContext(self.task, self.classes, floor)
        (labels,) = self.model.predict([ImageItem(0, "cvat", array)], context)
        kept = [x for x in labels if x.label in self.classes and (x.confidence is None or x.confidence >= floor)]
        return kept, width, height

    def label_id(self, label: Label) -> int:
        return self.classes.index(label.label)

    def skeleton(self, detection: Detection, width: int, height: int) -> list[tuple[str, list[float] | None, bool]]:
        """Every point of the skeleton (CVAT wants them all), by name, in order: its pixel position (None where
        the model did not give it: CVAT marks it outside), and whether it is occluded (its score under 0.5)."""
        keypoints = detection.keypoints
        assert keypoints is not None
        by_name = {name: i for i, name in enumerate(keypoints.names)}
        points: list[tuple[str, list[float] | None, bool]] = []
        for j, name in enumerate(self.keypoint_names):
            index = by_name.get(name) if keypoints.names else (j if j < len(keypoints.points) else None)
            if index is None:
                points.append((name, None, False))
                continue
            x, y = keypoints.points[index]
            seen = keypoints.visibility[index] if keypoints.visibility else 1.0
            points.append((name, [float(x * width), float(y * height)], bool(seen < 0.5)))
        return points


def pixel_box(detection: Detection, width: int, height: int) -> list[float]:
    """A detection's box as CVAT's points: ``[x1, y1, x2, y2]`` in pixels."""
    box = detection.box
    return [float(v) for v in (box.x * width, box.y * height, (box.x + box.w) * width, (box.y + box.h) * height)]


def pixel_polygon(detection: Detection, width: int, height: int) -> list[float]:
    """A detection's outline as CVAT's points: ``[x1, y1, x2, y2, ...]`` in pixels (empty when it has none)."""
    return [float(v) for x, y in outline(detection) for v in (x * width, y * height)]


class VerilabelFunction:
    """A cvat-sdk ``DetectionFunction``: ``spec`` and ``detect(context, image)``."""

    def __init__(self, model: CvatModel) -> None:
        import cvat_sdk.auto_annotation as cvataa

        self.model = model
        self.spec = cvataa.DetectionFunctionSpec(
            labels=[
                cvataa.skeleton_label_spec(
                    label.name, label.id, [cvataa.keypoint_spec(k, j) for j, k in enumerate(label.keypoints)]
                )
                if label.type == "skeleton"
                else cvataa.label_spec(label.name, label.id, type=label.type)
                for label in model.labels
            ]
        )

    def detect(self, context: Any, image: Any) -> list[Any]:
        import cvat_sdk.auto_annotation as cvataa
        from cvat_sdk.masks import encode_mask

        labels, width, height = self.model.predict(image, context.conf_threshold)
        out: list[Any] = []
        for label in labels:
            label_id = self.model.label_id(label)
            if isinstance(label, Classification):
                out.append(cvataa.tag(label_id))
            elif self.model.task == "keypoints":
                if label.keypoints is not None:
                    out.append(self._skeleton(label, label_id, width, height))
            elif self.model.task == "segmentation":
                if context.conv_mask_to_poly:
                    points = pixel_polygon(label, width, height)
                    if len(points) >= 6:
                        out.append(cvataa.polygon(label_id, points))
                elif label.mask is not None:
                    mask = full_image_mask(label, width, height)
                    if mask.any():
                        x, y, w, h = label.box.to_pixels(width, height)
                        out.append(cvataa.mask(label_id, encode_mask(mask, [x, y, x + w, y + h])))
            else:
                out.append(cvataa.rectangle(label_id, pixel_box(label, width, height)))
        return out

    def _skeleton(self, detection: Detection, label_id: int, width: int, height: int) -> Any:
        import cvat_sdk.auto_annotation as cvataa

        elements = [
            cvataa.keypoint(j, [0.0, 0.0], outside=True) if xy is None else cvataa.keypoint(j, xy, occluded=hidden)
            for j, (_, xy, hidden) in enumerate(self.model.skeleton(detection, width, height))
        ]
        return cvataa.skeleton(label_id, elements)


def create(**params: Any) -> VerilabelFunction:
    """The function cvat-cli's ``--function-module verilabel.integrations.cvat`` builds: ``-p NAME=TYPE:VALUE``
    parameters are ``model`` (required), ``classes``, ``weights``, ``task``, ``device``, ``min_confidence`` and
    ``keypoints`` (a keypoint model's point names, where the catalogue does not know them)."""
    try:
        import cvat_sdk.auto_annotation  # noqa: F401
    except ImportError:
        raise ConfigError("cvat", "the CVAT function needs cvat-sdk: pip install 'verilabel[cvat]'") from None
    if "model" not in params:
        raise ConfigError("model", "pass the model: -p model=str:NAME (a catalogue name, see `verilabel models`)")
    unknown = set(params) - {"model", "classes", "weights", "task", "device", "min_confidence", "keypoints"}
    if unknown:
        raise ConfigError("parameters", f"unknown -p {', '.join(sorted(unknown))}; see verilabel.integrations.cvat")
    return VerilabelFunction(CvatModel(**params))
