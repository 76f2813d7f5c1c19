"""Turning raw model outputs into verilabel labels, shared by the adapters (numpy only, no torch)."""

from __future__ import annotations

import numpy as np

from verilabel.labels import Box, Detection, Keypoints, Mask


def box_detection(
    label: str, score: float, xyxy: tuple[float, float, float, float], width: int, height: int
) -> Detection | None:
    """A detection from a pixel-space corner box (clipped to the image); None when the clipped box is empty."""
    box = Box.from_xyxy_pixels(*xyxy, width, height)
    if box.w <= 0 or box.h <= 0:
        return None
    return Detection(label, box, min(max(float(score), 0.0), 1.0))


def mask_detection(
    label: str,
    score: float,
    full_mask: np.ndarray,
    xyxy: tuple[float, float, float, float] | None = None,
) -> Detection | None:
    """A detection with an instance mask, from a mask over the whole image (H x W, bool).

    The box is ``xyxy`` when the model gives one, else the mask's extent; the stored mask is the crop under the
    box's pixel rectangle (the convention ``Box.to_pixels`` defines). None when the mask is empty."""
    height, width = full_mask.shape
    if not full_mask.any():
        return None
    if xyxy is None:
        rows, cols = np.flatnonzero(full_mask.any(axis=1)), np.flatnonzero(full_mask.any(axis=0))
        xyxy = (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))
    detection = box_detection(label, score, xyxy, width, height)
    if detection is None:
        return None
    x, y, w, h = detection.box.to_pixels(width, height)
    crop = full_mask[y : y + h, x : x + w]
    if not crop.any():
        return None
    return Detection(label, detection.box, detection.confidence, mask=Mask(crop))


def keypoints_detection(
    label: str,
    score: float,
    xyxy: tuple[float, float, float, float],
    points: np.ndarray,
    names: tuple[str, ...],
    width: int,
    height: int,
) -> Detection | None:
    """A detection with named keypoints from pixel ``(x, y, visibility-score)`` rows (one per name)."""
    detection = box_detection(label, score, xyxy, width, height)
    if detection is None:
        return None
    xs = np.clip(points[:, 0] / width, 0.0, 1.0)
    ys = np.clip(points[:, 1] / height, 0.0, 1.0)
    visible = points[:, 2] if points.shape[1] > 2 else np.ones(len(points))
    keypoints = Keypoints(
        points=tuple((float(x), float(y)) for x, y in zip(xs, ys, strict=True)),
        names=names,
        visibility=tuple(float(min(max(v, 0.0), 1.0)) for v in visible),
    )
    return Detection(label, detection.box, detection.confidence, keypoints=keypoints)
