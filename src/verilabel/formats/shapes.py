"""A detection's shape as one ring of points, for formats that hold a single polygon per object."""

from __future__ import annotations

from verilabel.errors import ConfigError
from verilabel.labels import Detection


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
