"""SAM, SAM 2 / 2.1 and SAM 3's tracker (transformers) as promptable segmenters: a mask for each box a detector or
a label field gives (``--model DETECTOR+SAM``, ``--model field:FIELD+SAM``; see ``verilabel.models.two_stage``).

Geometry, as the reference predictors do it: SAM resizes the longest side to the model's input size and pads
the bottom and right (with zeros after normalisation); SAM 2 and 3 stretch the image to the square input. Box prompts
go into that input frame; the low-resolution mask logits cover the whole (padded) input, and each detection's mask
is sampled from them at the centres of the original image's pixels under its box."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np

from verilabel.errors import ConfigError, ModelLoadError
from verilabel.labels import Detection, Label, Mask
from verilabel.models.catalogue import CatalogueEntry
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext
from verilabel.models.preprocess import (
    RGB_MEAN_IMAGENET,
    RGB_STD_IMAGENET,
    resize_bilinear_antialiased,
    to_batch,
    zero_padding,
)
from verilabel.models.torch_support import inference, resolve_device
from verilabel.models.weights import hf_repo, hf_snapshot


class ModelType(NamedTuple):
    model_class: str  # in transformers
    batch_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


HALF = (0.5, 0.5, 0.5)
# config.model_type -> how to run it. A SAM 3 checkpoint (``sam3``) holds the concept segmenter and the tracker:
# its tracker segments boxes.
MODEL_TYPES: dict[str, ModelType] = {
    "sam": ModelType("SamModel", 4, RGB_MEAN_IMAGENET, RGB_STD_IMAGENET),
    "sam2": ModelType("Sam2Model", 8, RGB_MEAN_IMAGENET, RGB_STD_IMAGENET),
    "sam3": ModelType("Sam3TrackerModel", 4, HALF, HALF),
    "sam3_tracker": ModelType("Sam3TrackerModel", 4, HALF, HALF),
}
MASK_THRESHOLD = 0.0  # on logits
SAMPLES_PER_CHUNK = 1 << 25  # logits sampled at once when masking: 128 MiB of float32


class SamInput(NamedTuple):
    """An image ready for the model: ``pixels`` is the square input (uint8 HWC), the image resized into its
    top-left ``height`` x ``width`` (SAM pads the rest; SAM 2 fills it)."""

    pixels: np.ndarray
    height: int
    width: int


class SamSegmenter:
    def __init__(
        self, entry: CatalogueEntry, net: Any, device: Any, *, model_type: str, input_size: int, multimask: bool
    ) -> None:
        self.spec = entry.spec(batch_size=MODEL_TYPES[model_type].batch_size)
        self._mean, self._std = MODEL_TYPES[model_type].mean, MODEL_TYPES[model_type].std
        self._net = net
        self._device = device
        self._size = input_size
        self._letterbox = model_type == "sam"  # SAM keeps the aspect ratio and pads; SAM 2 and 3 stretch
        self._multimask = multimask

    def prepare(self, image: np.ndarray) -> SamInput:
        """Runs in the decode pool: the resize (and pad) to the model's input, still uint8."""
        # Antialiased as transformers' SAM / SAM 2 processors resize (a plain bilinear resize aliases fine detail).
        if not self._letterbox:
            return SamInput(resize_bilinear_antialiased(image, self._size, self._size), self._size, self._size)
        height, width = image.shape[:2]
        scale = self._size / max(height, width)
        # transformers' SamImageProcessor rounds half up; the box prompts must use the same sizes
        resized = resize_bilinear_antialiased(image, int(width * scale + 0.5), int(height * scale + 0.5))
        pixels = np.zeros((self._size, self._size, 3), np.uint8)
        pixels[: resized.shape[0], : resized.shape[1]] = resized
        return SamInput(pixels, resized.shape[0], resized.shape[1])

    def forward(self, prepared: list[SamInput], boxes: list[np.ndarray] | None = None) -> tuple[Any, Any]:
        """Low-resolution mask logits (N x boxes x masks x L x L) and their predicted IoUs (N x boxes x masks)
        for box prompts in input pixels (one ``k x 4`` xyxy array per image; default: the whole image)."""
        import torch

        if boxes is None:
            boxes = [np.array([[0, 0, p.width, p.height]], np.float32) for p in prepared]
        most = max(len(b) for b in boxes)
        # Images with fewer boxes repeat their last one; those extra masks are ignored.
        padded = np.stack([np.concatenate([b, np.repeat(b[-1:], most - len(b), axis=0)]) for b in boxes])
        with inference(self._device):
            pixels = to_batch([p.pixels for p in prepared], self._device, mean=self._mean, std=self._std)
            if self._letterbox:  # SAM pads with zeros after normalising
                pixels = zero_padding(pixels, [(p.height, p.width) for p in prepared])
            prompts = torch.from_numpy(padded.astype(np.float32)).to(self._device)
            out = self._net(pixel_values=pixels, input_boxes=prompts, multimask_output=self._multimask)
            return out.pred_masks, out.iou_scores

    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        name = self.spec.name
        raise ConfigError(
            "model",
            f"{name!r} segments boxes, it does not find objects: chain it after a detector "
            f"(`--model DETECTOR+{name}`) or after a label field's boxes (`--model field:FIELD+{name}`)",
        )

    def segment(self, images: Sequence[ImageItem], detections: Sequence[Sequence[Detection]]) -> list[list[Detection]]:
        """Each image's detections with a mask (same label, box, confidence, id and attributes, plus the
        attribute ``mask_score``: the model's predicted IoU); a detection whose mask is empty is dropped."""
        results: list[list[Detection]] = [[] for _ in images]
        todo = [i for i, found in enumerate(detections) if found]  # no boxes: no forward
        if not todo:
            return results
        prepared = [self._prepared(images[i]) for i in todo]
        boxes = [_input_boxes(detections[i], p.width, p.height) for i, p in zip(todo, prepared, strict=True)]
        masks, scores = self.forward(prepared, boxes)
        for k, i in enumerate(todo):
            found = detections[i]
            logits, iou = _best(masks[k, : len(found)], scores[k, : len(found)])
            crops = self._crops(logits, found, images[i], prepared[k])
            for detection, crop, score in zip(found, crops, iou.tolist(), strict=True):
                if crop.any():
                    # SAM's IoU head is a plain regression (SAM 2's a sigmoid): clip it to [0, 1]
                    attributes = {**detection.attributes, "mask_score": round(min(max(score, 0.0), 1.0), 4)}
                    results[i].append(replace(detection, mask=Mask(crop), attributes=attributes))
        return results

    def _prepared(self, item: ImageItem) -> SamInput:
        return item.prepared if item.prepared is not None else self.prepare(item.array)

    def _crops(
        self, logits: Any, detections: Sequence[Detection], item: ImageItem, prepared: SamInput
    ) -> list[np.ndarray]:
        """Each detection's mask over its box's pixel rectangle in the full image: its logits sampled (bilinear)
        at the centres of those pixels, mapped full image -> resized input -> low-resolution logits."""
        rects = [d.box.to_pixels(item.full_width, item.full_height) for d in detections]
        scale = (prepared.width / item.full_width, prepared.height / item.full_height)
        crops: list[np.ndarray] = [np.empty(0)] * len(rects)
        for group in _chunks(rects):
            masks = _sample(logits[group], [rects[k] for k in group], scale, self._size) > MASK_THRESHOLD
            for k, mask in zip(group, masks.cpu().numpy(), strict=True):
                crops[k] = mask[: rects[k][3], : rects[k][2]].copy()
        return crops


def _chunks(rects: Sequence[tuple[int, int, int, int]]) -> list[list[int]]:
    """Indices of pixel rectangles (x, y, w, h) in groups sampled together: similar sizes (largest first), each
    group's count x its largest width x height within ``SAMPLES_PER_CHUNK`` (or a single rectangle)."""
    order = sorted(range(len(rects)), key=lambda k: rects[k][2] * rects[k][3], reverse=True)
    groups: list[list[int]] = []
    width = height = 0
    for k in order:
        w, h = max(width, rects[k][2]), max(height, rects[k][3])
        if groups and (len(groups[-1]) + 1) * w * h <= SAMPLES_PER_CHUNK:
            groups[-1].append(k)
            width, height = w, h
        else:
            groups.append([k])
            width, height = rects[k][2], rects[k][3]
    return groups


def _input_boxes(detections: Sequence[Detection], width: int, height: int) -> np.ndarray:
    """Relative boxes -> xyxy corners in the pixels of the resized (unpadded) input."""
    boxes = np.array([d.box.as_tuple() for d in detections], dtype=np.float32)
    corners = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
    return corners * np.array([width, height, width, height], dtype=np.float32)


def _best(masks: Any, scores: Any) -> tuple[Any, Any]:
    """Per box, the mask with the highest predicted IoU (the only one without multimask output)."""
    import torch

    best = scores.argmax(dim=-1)
    rows = torch.arange(len(best), device=best.device)
    return masks[rows, best].float(), scores[rows, best].float().cpu().numpy()


def _sample(
    logits: Any, rects: Sequence[tuple[int, int, int, int]], scale: tuple[float, float], input_size: int
) -> Any:
    """Bilinear samples of k x L x L logit maps (spanning the ``input_size`` square input) at the centres of k
    pixel rectangles (x, y, w, h) of the original image, ``scale`` = input pixels per original pixel:
    k x max(h) x max(w), each rectangle's samples at the top-left. The edges clamp, like ``interpolate``."""
    import torch
    import torch.nn.functional as F

    width, height = max(r[2] for r in rects), max(r[3] for r in rects)
    corners = torch.tensor([r[:2] for r in rects], dtype=torch.float32, device=logits.device)
    xs = (corners[:, :1] + torch.arange(width, device=logits.device) + 0.5) * scale[0]  # k x width
    ys = (corners[:, 1:] + torch.arange(height, device=logits.device) + 0.5) * scale[1]  # k x height
    # grid_sample's align_corners=False frame: -1 and 1 are the outer edges of the map, i.e. 0 and input_size.
    gx = (xs / input_size * 2 - 1)[:, None, :].expand(-1, height, -1)
    gy = (ys / input_size * 2 - 1)[:, :, None].expand(-1, -1, width)
    grid = torch.stack([gx, gy], dim=-1)
    sampled = F.grid_sample(logits[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled[:, 0]


def load(request: LoadRequest, entry: CatalogueEntry) -> SamSegmenter:
    import transformers

    repo = hf_repo(entry.weights, request.weights, name=entry.name)
    folder = hf_snapshot(repo, name=entry.name, files=("*.json", "*.safetensors"))
    if not (folder / "config.json").is_file():
        raise ModelLoadError(
            f"{folder} has no config.json: {entry.name!r} loads transformers checkpoints (saved with "
            "save_pretrained), not the original SAM / SAM 2 / SAM 3 .pt files"
        )
    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    if config.model_type not in MODEL_TYPES:
        raise ModelLoadError(
            f"{folder} holds a {config.model_type!r} model; {entry.name!r} needs SAM, SAM 2 or SAM 3 weights "
            f"({', '.join(MODEL_TYPES)})"
        )
    model_class = getattr(transformers, MODEL_TYPES[config.model_type].model_class)
    net = model_class.from_pretrained(folder, local_files_only=True)
    config = net.config  # a SAM 3 checkpoint's tracker reads its own config out of it
    device = resolve_device(request.device)
    net.eval().to(device)
    options = entry.options | request.options
    return SamSegmenter(
        entry,
        net,
        device,
        model_type=config.model_type,
        input_size=int(config.prompt_encoder_config.image_size),
        multimask=bool(options.get("multimask", False)),
    )
