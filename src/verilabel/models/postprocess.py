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


def paste_mask_crop(
    probabilities: np.ndarray,
    xyxy: tuple[float, float, float, float],
    rect: tuple[int, int, int, int],
    pixel_scale: tuple[float, float] = (1.0, 1.0),
    threshold: float = 0.5,
) -> np.ndarray:
    """An R-CNN's M x M mask of a box, pasted as torchvision's ``paste_masks_in_image`` pastes it (one pixel of
    padding, the box widened to match and rounded down, bilinear resize) but only over the pixel rectangle
    ``rect`` = (x, y, w, h), and sampled at the pixel centres of an image ``1 / pixel_scale`` times the size of
    the one ``xyxy`` is in: box-sized masks at full resolution, never an image-sized canvas per detection."""
    import cv2

    size = probabilities.shape[-1]
    padded = np.pad(probabilities.astype(np.float32, copy=False), 1)
    scale = (size + 2) / size
    x_c, y_c = (xyxy[0] + xyxy[2]) / 2, (xyxy[1] + xyxy[3]) / 2
    half_w, half_h = (xyxy[2] - xyxy[0]) / 2 * scale, (xyxy[3] - xyxy[1]) / 2 * scale
    x0, y0 = int(x_c - half_w), int(y_c - half_h)  # torchvision truncates the widened box to integers
    box_w, box_h = max(int(int(x_c + half_w) - x0 + 1), 1), max(int(int(y_c + half_h) - y0 + 1), 1)
    # rect pixel centre -> box image coordinate c -> padded-mask coordinate (c - x0) * (M + 2) / w - 0.5
    kx, ky = (size + 2) / box_w, (size + 2) / box_h
    x, y, w, h = rect
    warp = np.array(
        [
            [pixel_scale[0] * kx, 0.0, ((x + 0.5) * pixel_scale[0] - x0) * kx - 0.5],
            [0.0, pixel_scale[1] * ky, ((y + 0.5) * pixel_scale[1] - y0) * ky - 0.5],
        ]
    )
    sampled = cv2.warpAffine(
        padded, warp, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )
    # Outside the widened box torchvision's canvas is 0, whatever the padded mask's edge says.
    cols = (np.arange(w) + x + 0.5) * pixel_scale[0]
    rows = (np.arange(h) + y + 0.5) * pixel_scale[1]
    inside = ((rows >= y0) & (rows < y0 + box_h))[:, None] & ((cols >= x0) & (cols < x0 + box_w))[None, :]
    return np.asarray((sampled > threshold) & inside)
