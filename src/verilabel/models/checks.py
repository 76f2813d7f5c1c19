"""The engine's check of what a model returns: every rule of the ``Model`` contract, one precise error."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from verilabel.errors import ModelOutputError
from verilabel.labels import Classification, Detection, Label, Mask
from verilabel.models.interface import ImageItem, ModelSpec, PredictContext

MASK_TOLERANCE_PX = 2


def check_predictions(
    spec: ModelSpec, context: PredictContext, images: Sequence[ImageItem], outputs: object
) -> list[list[Label]]:
    """Return the outputs if they honour the contract; raise ModelOutputError naming the first breach."""
    where = f"model {spec.name!r}"
    if not isinstance(outputs, list) or len(outputs) != len(images):
        got = f"{len(outputs)} results" if isinstance(outputs, list) else type(outputs).__name__
        raise ModelOutputError(
            f"{where} must return a list with one label list per image: {len(images)} images in, {got} out"
        )
    allowed = set(context.classes) | (set() if spec.zero_shot else set(spec.vocabulary))
    for item, labels in zip(images, outputs, strict=True):
        at = f"{where} on sample {item.sample_id} ({item.path})"
        if not isinstance(labels, list):
            raise ModelOutputError(f"{at}: expected a list of labels, got {type(labels).__name__}")
        if context.task == "classification":
            if len(labels) > 1 or any(not isinstance(label, Classification) for label in labels):
                raise ModelOutputError(
                    f"{at}: a classification model returns at most one Classification per "
                    f"image, got {[type(label).__name__ for label in labels]}"
                )
        elif any(not isinstance(label, Detection) for label in labels):
            raise ModelOutputError(
                f"{at}: a {context.task} model returns Detection labels, got "
                f"{sorted({type(label).__name__ for label in labels})}"
            )
        for label in labels:
            _check_label(label, item, context, allowed, at)
    return outputs


def _check_label(label: Label, item: ImageItem, context: PredictContext, allowed: set[str], at: str) -> None:
    if label.label not in allowed:
        raise ModelOutputError(
            f"{at}: class {label.label!r} is neither in the model's vocabulary nor among "
            f"the classes asked for ({', '.join(sorted(context.classes)[:10])})"
        )
    if label.confidence is None:
        raise ModelOutputError(f"{at}: label {label.label!r} has no confidence; generated labels need one in [0, 1]")
    if not isinstance(label, Detection):
        return
    if context.task == "segmentation" and label.mask is None and label.polygon is None:
        raise ModelOutputError(
            f"{at}: segmentation needs a mask or polygon on every detection ({label.label!r} has neither)"
        )
    if label.mask is not None and label.mask.array is not None:
        mask_h, mask_w = label.mask.array.shape
        sizes = {(item.full_width, item.full_height), (item.width, item.height)}
        if not any(_fits(label, mask_w, mask_h, width, height) for width, height in sizes):
            _, _, box_w, box_h = label.box.to_pixels(item.full_width, item.full_height)
            raise ModelOutputError(
                f"{at}: mask of {label.label!r} is {mask_w}x{mask_h} px, but its box covers "
                f"{box_w}x{box_h} px of the {item.full_width}x{item.full_height} image (a mask covers "
                "its box, not the whole image)"
            )


def _fits(label: Detection, mask_w: int, mask_h: int, width: int, height: int) -> bool:
    _, _, box_w, box_h = label.box.to_pixels(width, height)
    return abs(mask_w - box_w) <= MASK_TOLERANCE_PX and abs(mask_h - box_h) <= MASK_TOLERANCE_PX


def full_resolution_masks(item: ImageItem, labels: list[Label]) -> list[Label]:
    """The labels with each mask array exactly the size of its box in the full image: a model that made it in the
    pixels of a smaller decode gets it scaled up (nearest), a pixel or two of rounding is trimmed or padded."""
    out: list[Label] = []
    for label in labels:
        if isinstance(label, Detection) and label.mask is not None and label.mask.array is not None:
            _, _, box_w, box_h = label.box.to_pixels(item.full_width, item.full_height)
            array = label.mask.array
            if array.shape != (box_h, box_w):
                label = dataclasses.replace(label, mask=Mask(_resized(array, box_w, box_h)))
        out.append(label)
    return out


def _resized(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    scaled = Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.Resampling.NEAREST)
    return np.asarray(scaled) > 127
