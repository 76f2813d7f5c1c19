"""COCO detection JSON: reading images, boxes, polygons, RLE masks, keypoints and scores."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from verilabel.errors import DatasetImportError
from verilabel.formats.shapes import full_image_mask, mask_in_box
from verilabel.labels import Box, Detection, Keypoints, Label, Polygon, rle_decode, rle_encode


@dataclass
class CocoImage:
    file_name: str
    width: int
    height: int
    labels: list[Label] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)  # sample tags (a verilabel extension of the image record)


def decode_compressed_counts(counts: str) -> list[int]:
    """Decode the LEB128-like string form of COCO RLE counts (as written by pycocotools)."""
    values: list[int] = []
    pos = 0
    while pos < len(counts):
        value, shift, more = 0, 0, True
        while more:
            chunk = ord(counts[pos]) - 48
            value |= (chunk & 0x1F) << (5 * shift)
            more = bool(chunk & 0x20)
            pos += 1
            shift += 1
            if not more and chunk & 0x10:
                value |= -1 << (5 * shift)
        if len(values) > 2:
            value += values[-2]
        values.append(value)
    return values


def annotation_to_detection(ann: dict[str, Any], width: int, height: int, names: dict[int, str]) -> Detection:
    x, y, w, h = (float(v) for v in ann["bbox"])
    box = Box.from_xyxy_pixels(x, y, x + w, y + h, width, height)
    polygon = mask = None
    segmentation = ann.get("segmentation")
    if isinstance(segmentation, list) and segmentation:
        rings = [
            [(px / width, py / height) for px, py in zip(ring[::2], ring[1::2], strict=True)]
            for ring in segmentation
            if len(ring) >= 6
        ]
        rings = [[(min(max(px, 0.0), 1.0), min(max(py, 0.0), 1.0)) for px, py in ring] for ring in rings]
        polygon = Polygon(tuple(tuple(r) for r in rings)) if rings else None
    elif isinstance(segmentation, dict):
        counts = segmentation["counts"]
        rle = {
            "size": segmentation["size"],
            "counts": decode_compressed_counts(counts) if isinstance(counts, str) else counts,
        }
        mask = mask_in_box(rle_decode(rle), box, width, height)
    keypoints = None
    if ann.get("keypoints"):
        flat = ann["keypoints"]
        pts = [
            (min(max(flat[i] / width, 0.0), 1.0), min(max(flat[i + 1] / height, 0.0), 1.0))
            for i in range(0, len(flat), 3)
        ]
        keypoints = Keypoints(tuple(pts), visibility=tuple(min(float(v), 2.0) / 2.0 for v in flat[2::3]))
    score = ann.get("score")
    attributes = dict(ann.get("attributes", {}))
    if ann.get("iscrowd"):
        attributes["iscrowd"] = 1
    detection = Detection(
        names[int(ann["category_id"])],
        box,
        None if score is None else float(score),
        mask=mask,
        polygon=polygon,
        keypoints=keypoints,
        attributes=attributes,
        tags=[str(t) for t in ann.get("tags", [])],
    )
    return detection


def read_coco(path: Path) -> list[CocoImage]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DatasetImportError(f"COCO file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise DatasetImportError(f"COCO file is not valid JSON: {path} ({exc})") from None
    if not isinstance(data, dict) or "images" not in data:
        raise DatasetImportError(f"{path} is not a COCO detection file: it has no 'images' list")
    names = {int(c["id"]): str(c["name"]) for c in data.get("categories", [])}
    images: dict[Any, CocoImage] = {}
    for img in data["images"]:
        images[img["id"]] = CocoImage(
            str(img["file_name"]), int(img["width"]), int(img["height"]), tags=[str(t) for t in img.get("tags", [])]
        )
    for ann in data.get("annotations", []):
        image = images.get(ann.get("image_id"))
        if image is None:
            raise DatasetImportError(
                f"{path}: annotation {ann.get('id')} refers to unknown image {ann.get('image_id')!r}"
            )
        if int(ann["category_id"]) not in names:
            raise DatasetImportError(
                f"{path}: annotation {ann.get('id')} has category_id {ann['category_id']} that is not in 'categories'"
            )
        try:
            image.labels.append(annotation_to_detection(ann, image.width, image.height, names))
        except (KeyError, ValueError, TypeError) as exc:
            raise DatasetImportError(f"{path}: annotation {ann.get('id')} is malformed ({exc})") from None
    return list(images.values())


def _shoelace(points: list[tuple[float, float]]) -> float:
    """The area enclosed by a ring of pixel points."""
    xs, ys = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    return float(abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))) / 2)


def detection_to_annotation(
    detection: Detection, *, annotation_id: int, image_id: int, category_id: int, width: int, height: int
) -> dict[str, Any]:
    x, y, w, h = detection.box.as_tuple()
    ann: dict[str, Any] = {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [round(x * width, 3), round(y * height, 3), round(w * width, 3), round(h * height, 3)],
        "area": round(w * width * h * height, 3),  # a box's; a polygon's or a mask's own below
        "iscrowd": int(detection.attributes.get("iscrowd", 0)),
    }
    if detection.confidence is not None:
        ann["score"] = detection.confidence
    if detection.polygon is not None:
        rings = [[(px * width, py * height) for px, py in ring] for ring in detection.polygon.rings]
        ann["segmentation"] = [[round(v, 3) for point in ring for v in point] for ring in rings]
        ann["area"] = round(sum(_shoelace(ring) for ring in rings), 3)
    elif detection.mask is not None:
        full = full_image_mask(detection, width, height)
        ann["segmentation"] = rle_encode(full)
        ann["area"] = int(full.sum())
    if detection.keypoints is not None:
        points = detection.keypoints
        visibility = points.visibility or tuple(1.0 for _ in points.points)
        ann["keypoints"] = [
            v
            for (px, py), vis in zip(points.points, visibility, strict=True)
            for v in (round(px * width, 3), round(py * height, 3), round(vis * 2))
        ]
        ann["num_keypoints"] = len(points.points)
    attributes = {k: v for k, v in detection.attributes.items() if k != "iscrowd"}
    if attributes:
        ann["attributes"] = attributes
    if detection.tags:
        ann["tags"] = list(detection.tags)
    return ann


def image_record(image_id: int, file_name: str, width: int, height: int, tags: list[str]) -> dict[str, Any]:
    """A COCO ``images`` entry (``tags``: sample tags, a verilabel extension)."""
    record: dict[str, Any] = {"id": image_id, "file_name": file_name, "width": width, "height": height}
    if tags:
        record["tags"] = list(tags)
    return record
