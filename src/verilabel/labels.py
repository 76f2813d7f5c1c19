"""The core label types: one representation per kind, validated on construction.

Geometry is always relative to the (EXIF-oriented) image: boxes are ``(x, y, w, h)`` in [0, 1] from the
top-left corner; polygon and keypoint coordinates are ``(x, y)`` pairs in [0, 1]. Conversions to pixel or
vendor conventions (COCO xywh pixels, YOLO centre format, Label Studio percent) happen only at the edges.

An instance mask covers its bounding box (the FiftyOne convention): a boolean array whose shape is the box
size in pixels. It is stored either as a PNG file under the run's mask location (``mask_path``) or inline as
COCO-style uncompressed run-length encoding (``mask_rle``).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

LabelKind = Literal["classification", "detection"]
_EPS = 1e-6


# Label ids need uniqueness, not secrecy: a generator of our own (seeded from the OS, reseeded in forked
# children, untouched by a library's random.seed) instead of a system call per label for `secrets`, which cost a
# fast worker a quarter of its labelling time.
_id_bits = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_id_bits.seed)


def new_label_id() -> str:
    """A 24-hex-digit id that sorts by creation time (good index locality for bulk inserts): milliseconds, then
    48 random bits."""
    return f"{time.time_ns() // 1_000_000:012x}{_id_bits.getrandbits(48):012x}"


def _check_unit(name: str, value: float) -> float:
    value = float(value)
    if not (-_EPS <= value <= 1 + _EPS) or value != value:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return min(max(value, 0.0), 1.0)


@dataclass(frozen=True, slots=True)
class Box:
    """Relative bounding box: top-left ``(x, y)``, size ``(w, h)``, all in [0, 1]."""

    x: float
    y: float
    w: float
    h: float

    def __post_init__(self) -> None:
        for name in ("x", "y", "w", "h"):
            object.__setattr__(self, name, _check_unit(f"box.{name}", getattr(self, name)))
        if self.x + self.w > 1 + 1e-4 or self.y + self.h > 1 + 1e-4:
            raise ValueError(f"box {self.as_tuple()} extends past the image (x + w and y + h must be <= 1)")

    @classmethod
    def from_xyxy_pixels(cls, x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> Box:
        """Clip a pixel-space corner box to the image and make it relative."""
        x1, x2 = sorted((min(max(x1, 0.0), width), min(max(x2, 0.0), width)))
        y1, y2 = sorted((min(max(y1, 0.0), height), min(max(y2, 0.0), height)))
        return cls(x1 / width, y1 / height, (x2 - x1) / width, (y2 - y1) / height)

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.w, self.h)

    def to_pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """Integer pixel ``(x, y, w, h)`` covering the box, at least one pixel in each dimension."""
        x0, y0 = round(self.x * width), round(self.y * height)
        w = max(1, round(self.w * width))
        h = max(1, round(self.h * height))
        return x0, y0, min(w, width - x0) or 1, min(h, height - y0) or 1


BoolArray: TypeAlias = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Mask:
    """An instance mask over the label's bounding box, or a reference to one already stored."""

    array: BoolArray | None = None
    path: str | None = None
    rle: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if sum(v is not None for v in (self.array, self.path, self.rle)) != 1:
            raise ValueError("a Mask holds exactly one of: array, path, rle")
        if self.array is not None:
            arr = np.asarray(self.array)
            if arr.ndim != 2 or 0 in arr.shape:
                raise ValueError(f"mask array must be 2-D and non-empty, got shape {arr.shape}")
            object.__setattr__(self, "array", arr.astype(bool, copy=False))

    def load(self) -> BoolArray:
        if self.array is not None:
            return self.array
        if self.rle is not None:
            return rle_decode(self.rle)
        from PIL import Image

        assert self.path is not None
        with Image.open(self.path) as img:
            return np.asarray(img.convert("L")) > 127


def rle_encode(mask: BoolArray) -> dict[str, Any]:
    """COCO-style uncompressed RLE: column-major run lengths, starting with a run of zeros."""
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    boundaries = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate(([0], boundaries, [flat.size]))).tolist() if flat.size else []
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def rle_decode(rle: dict[str, Any]) -> BoolArray:
    height, width = (int(v) for v in rle["size"])
    counts = [int(c) for c in rle["counts"]]
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    if flat.size != height * width:
        raise ValueError(f"RLE counts cover {flat.size} pixels, size {height}x{width} needs {height * width}")
    return flat.reshape((height, width), order="F")


def _points(name: str, points: Sequence[Sequence[float]]) -> tuple[tuple[float, float], ...]:
    out = []
    for p in points:
        if len(p) != 2:
            raise ValueError(f"{name} points are (x, y) pairs, got {tuple(p)!r}")
        out.append((_check_unit(f"{name}.x", p[0]), _check_unit(f"{name}.y", p[1])))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Keypoints:
    """Named or indexed points in relative coordinates; ``visibility`` holds per-point scores in [0, 1]."""

    points: tuple[tuple[float, float], ...]
    names: tuple[str, ...] = ()
    visibility: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", _points("keypoints", self.points))
        if self.names and len(self.names) != len(self.points):
            raise ValueError(f"{len(self.names)} keypoint names for {len(self.points)} points")
        if self.visibility and len(self.visibility) != len(self.points):
            raise ValueError(f"{len(self.visibility)} visibility values for {len(self.points)} points")

    def to_json(self) -> dict[str, Any]:
        return {
            "points": [list(p) for p in self.points],
            "names": list(self.names),
            "visibility": list(self.visibility),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Keypoints:
        return cls(
            tuple(tuple(p) for p in data["points"]),
            tuple(data.get("names", ())),  # type: ignore[misc]
            tuple(data.get("visibility", ())),
        )


@dataclass(frozen=True, slots=True)
class Polygon:
    """One or more closed rings of relative ``(x, y)`` points (several rings: a shape with parts)."""

    rings: tuple[tuple[tuple[float, float], ...], ...]

    def __post_init__(self) -> None:
        rings = tuple(_points("polygon", ring) for ring in self.rings)
        if not rings or any(len(r) < 3 for r in rings):
            raise ValueError("a polygon needs at least one ring of at least 3 points")
        object.__setattr__(self, "rings", rings)

    def to_json(self) -> list[list[list[float]]]:
        return [[list(p) for p in ring] for ring in self.rings]

    @classmethod
    def from_json(cls, data: list[list[list[float]]]) -> Polygon:
        return cls(tuple(tuple((float(p[0]), float(p[1])) for p in ring) for ring in data))


def _check_confidence(confidence: float | None) -> float | None:
    return None if confidence is None else _check_unit("confidence", confidence)


def _check_label(label: str) -> str:
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"a label's class must be a non-empty string, got {label!r}")
    return label


@dataclass(slots=True)
class Classification:
    label: str
    confidence: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    id: str = field(default_factory=new_label_id)

    kind: LabelKind = field(default="classification", init=False)

    def __post_init__(self) -> None:
        self.label = _check_label(self.label)
        self.confidence = _check_confidence(self.confidence)


@dataclass(slots=True)
class Detection:
    label: str
    box: Box
    confidence: float | None = None
    mask: Mask | None = None
    polygon: Polygon | None = None
    keypoints: Keypoints | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    id: str = field(default_factory=new_label_id)

    kind: LabelKind = field(default="detection", init=False)

    def __post_init__(self) -> None:
        self.label = _check_label(self.label)
        self.confidence = _check_confidence(self.confidence)
        if not isinstance(self.box, Box):
            raise ValueError(f"box must be a verilabel.Box, got {type(self.box).__name__}")


Label: TypeAlias = Classification | Detection


def mask_file_path(mask_root: str | os.PathLike[str], run_id: str, label_id: str) -> str:
    """Where a run writes one label's mask: ``<root>/<run id>/<label id>.png``."""
    return os.path.join(os.fspath(mask_root), run_id, f"{label_id}.png")
