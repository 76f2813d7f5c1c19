"""A detection's shape in the forms formats hold: one ring of points (formats with a single polygon per object),
or a mask over the whole image (COCO, Label Studio brushes) and back to verilabel's mask over the box."""

from __future__ import annotations

import numpy as np

from verilabel.errors import ConfigError
from verilabel.labels import Box, Detection, Mask, rle_encode


def outline(detection: Detection) -> list[tuple[float, float]]:
    """Relative ``(x, y)`` points: the polygon's longest ring (its outer one), or the mask's largest outer
    contour; empty for a plain box."""
    if detection.polygon is not None:
        rings = detection.polygon.rings
        return list(rings[max(range(len(rings)), key=lambda i: len(rings[i]))])
    if detection.mask is not None:
        return _mask_contour(detection)
    return []


def _mask_contour(detection: Detection) -> list[tuple[float, float]]:
    try:
        import cv2
    except ImportError:
        raise ConfigError(
            "format", "exporting masks as polygons needs OpenCV: pip install 'verilabel[offline]'"
        ) from None
    assert detection.mask is not None
    crop = detection.mask.load().astype("uint8")
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    contour = max(contours, key=cv2.contourArea).reshape(-1, 2)
    height, width = crop.shape
    box = detection.box
    return [(box.x + (px + 0.5) / width * box.w, box.y + (py + 0.5) / height * box.h) for px, py in contour]


def full_image_mask(detection: Detection, width: int, height: int) -> np.ndarray:
    """The box-sized mask pasted into an image-sized canvas (scaled to the box's pixels if it is not)."""
    assert detection.mask is not None
    crop = detection.mask.load()
    canvas = np.zeros((height, width), dtype=bool)
    x, y, w, h = detection.box.to_pixels(width, height)
    if crop.shape != (h, w):
        from PIL import Image

        crop = np.asarray(Image.fromarray(crop.astype(np.uint8) * 255).resize((w, h), Image.Resampling.NEAREST)) > 0
    canvas[y : y + h, x : x + w] = crop
    return canvas


def mask_in_box(full: np.ndarray, box: Box, width: int, height: int) -> Mask:
    """The part of an image-sized mask under ``box``: verilabel's mask of a detection."""
    x, y, w, h = box.to_pixels(width, height)
    return Mask(rle=rle_encode(full[y : y + h, x : x + w]))


def box_around(full: np.ndarray) -> Box | None:
    """The relative box around an image-sized mask's pixels; None for an empty mask."""
    rows, cols = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
    if not len(rows):
        return None
    height, width = full.shape
    return Box.from_xyxy_pixels(cols[0], rows[0], cols[-1] + 1, rows[-1] + 1, width, height)
