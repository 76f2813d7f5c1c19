"""RF-DETR detection and instance segmentation (transformers' ``RfDetrForObjectDetection`` /
``RfDetrForInstanceSegmentation``): a fixed vocabulary, read from the weights' ``id2label`` (COCO for Roboflow's
checkpoints, the user's classes for a fine-tuned one).

The image processor's resize (a fixed square for Roboflow's checkpoints, or shorter side / longer side) is redone
in the decode threads; a batch of unequal sizes is padded at the bottom and right with a ``pixel_mask``, and the
boxes come out relative to each image's own extent. Read-out as transformers' ``post_process_object_detection``:
sigmoid scores over every (query, class) pair, the best ``max_detections`` pairs above the floor. No NMS: DETR's
one-to-one matching already gives one query per object. Masks (``pred_masks``, a quarter of the input's
resolution) are cut to the image's own extent, resized bilinearly to the decoded image and thresholded at 0
(a logit), as transformers' ``post_process_instance_segmentation`` does with ``return_binary_maps``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from verilabel.errors import ModelLoadError
from verilabel.labels import Label
from verilabel.models.adapters.hf_common import (
    ImageConfig,
    corners,
    load_transformers,
    option,
    pad_batch,
    prepare_image,
)
from verilabel.models.catalogue import CatalogueEntry
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext, SplitPredict
from verilabel.models.postprocess import box_detection, mask_detection
from verilabel.models.preprocess import to_batch
from verilabel.models.torch_support import full_precision, inference, is_asynchronous

DEFAULT_BATCH = 8
PLACEHOLDERS = frozenset({"N/A", "__background__", "background", "no object"})


def vocabulary_of(config: Any) -> tuple[str, ...]:
    """The class names of a transformers config's ``id2label``, in id order, placeholders left out."""
    id2label = {int(k): str(v) for k, v in (config.id2label or {}).items()}
    return tuple(name for _, name in sorted(id2label.items()) if name not in PLACEHOLDERS)


def read_vocabulary(weights: str, entry: CatalogueEntry, options: dict[str, Any]) -> tuple[str, ...] | None:
    """The classes of ``--weights`` (a fine-tuned model's own), from its config.json; None if it has none."""
    config_file = Path(weights).expanduser() / "config.json"
    if not config_file.is_file():
        return None  # a hub name: the loader reads it once downloaded
    from transformers import AutoConfig

    return vocabulary_of(AutoConfig.from_pretrained(config_file.parent, local_files_only=True)) or None


class RfDetr(SplitPredict):
    def __init__(self, entry: CatalogueEntry, net: Any, processor: Any, device: Any, *, batch: int, limit: int) -> None:
        self._net, self._device = net, device
        self.asynchronous = is_asynchronous(device)
        self._image = ImageConfig.from_processor(processor)
        self._limit = limit
        id2label = {int(k): str(v) for k, v in net.config.id2label.items()}
        self._names = [id2label.get(i, "N/A") for i in range(max(id2label, default=-1) + 1)]
        spec = entry.spec(batch_size=batch, input_size=self._image.input_size)
        vocabulary = vocabulary_of(net.config)
        if vocabulary != spec.vocabulary:  # fine-tuned weights: their own classes
            spec = replace(spec, vocabulary=vocabulary)
        self.spec = spec
        self._masks = "segmentation" in entry.tasks

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Runs in the decode pool: the processor's resize, still uint8."""
        return prepare_image(image, self._image)

    def infer(self, images: Sequence[ImageItem], context: PredictContext) -> tuple[list[tuple[int, int]], Any]:
        """Each input's (height, width) in the padded batch, and the network's outputs (queued on CUDA)."""
        import torch

        prepared = self.prepared(images)
        padded, mask = pad_batch(prepared)
        with inference(self._device):
            pixel_mask = torch.from_numpy(mask).to(self._device)
            pixels = to_batch(padded, self._device, mean=self._image.mean, std=self._image.std)
            outputs = self._net(pixel_values=pixels * pixel_mask.unsqueeze(1), pixel_mask=pixel_mask.long())
        return [image.shape[:2] for image in prepared], outputs

    def to_labels(
        self, raw: tuple[list[tuple[int, int]], Any], images: Sequence[ImageItem], context: PredictContext
    ) -> list[list[Label]]:
        sizes, outputs = raw
        probabilities = outputs.logits.float().sigmoid()
        batch, queries, classes = probabilities.shape
        scores, pairs = probabilities.view(batch, -1).topk(min(self._limit, queries * classes), dim=1)
        query_of, class_of = pairs // classes, pairs % classes
        # boxes are relative to the padded batch: scaled to each image's own extent, then to its pixels
        padded_h, padded_w = max(h for h, _ in sizes), max(w for _, w in sizes)
        boxes = corners(outputs.pred_boxes.float())
        segment = self._masks and context.task == "segmentation"
        wanted = set(context.classes)
        results: list[list[Label]] = []
        for i, item in enumerate(images):
            height, width = sizes[i]
            keep = scores[i] >= context.min_confidence
            picked = query_of[i][keep]
            scale = (padded_w / width * item.width, padded_h / height * item.height) * 2
            xyxy = (boxes[i][picked] * boxes.new_tensor(scale)).cpu().numpy()
            masks = (
                self._image_masks(outputs.pred_masks[i][picked], sizes[i], (padded_h, padded_w), item)
                if segment
                else None
            )
            found: list[Label] = []
            for n, (score, label) in enumerate(zip(scores[i][keep].tolist(), class_of[i][keep].tolist(), strict=True)):
                name = self._names[label] if label < len(self._names) else ""
                if name not in wanted:
                    continue
                box = (float(xyxy[n][0]), float(xyxy[n][1]), float(xyxy[n][2]), float(xyxy[n][3]))
                detection = (
                    mask_detection(name, score, masks[n], box)
                    if masks is not None
                    else box_detection(name, score, box, item.width, item.height)
                )
                if detection is not None:
                    found.append(detection)
            results.append(found)
        return results

    @staticmethod
    def _image_masks(logits: Any, size: tuple[int, int], padded: tuple[int, int], item: ImageItem) -> np.ndarray | None:
        """The kept queries' masks over the decoded image (bool, N x H x W): the mask logits under the image's own
        extent of the padded input, resized bilinearly, above 0."""
        if logits.numel() == 0:
            return None
        from torch.nn.functional import interpolate

        rows = round(logits.shape[-2] * size[0] / padded[0])
        cols = round(logits.shape[-1] * size[1] / padded[1])
        own = logits[:, :rows, :cols].float().unsqueeze(1)
        resized = interpolate(own, size=(item.height, item.width), mode="bilinear", align_corners=False)
        return np.asarray((resized[:, 0] > 0).cpu().numpy())


def load(request: LoadRequest, entry: CatalogueEntry) -> RfDetr:
    segmentation = "segmentation" in entry.tasks
    auto_class = "RfDetrForInstanceSegmentation" if segmentation else "AutoModelForObjectDetection"
    net, processor, device = load_transformers(entry, request, auto_class, text=False)
    if not type(net).__name__.startswith(("RfDetr", "LwDetr")):
        raise ModelLoadError(f"{entry.name!r}: the weights hold a {type(net).__name__}, not RF-DETR")
    # transformers would build a segmentation model on a detector's weights, its mask head left random
    if segmentation and not any("Segmentation" in a for a in net.config.architectures or ()):
        raise ModelLoadError(
            f"{entry.name!r}: the weights are an RF-DETR detector, not its segmentation model (use rf-detr-nano..."
            "rf-detr-large with them)"
        )
    if hasattr(net, "bbox_embed"):
        full_precision(net.bbox_embed)  # box coordinates stay in fp32 under autocast
    # as transformers reads it out: the best (query, class) pairs, as many as there are queries
    queries = int(option(entry, request, "max_detections", net.config.num_queries))
    limit = request.detection_limit(queries, entry.vocabulary)
    return RfDetr(
        entry,
        net,
        processor,
        device,
        batch=int(option(entry, request, "batch_size", DEFAULT_BATCH)),
        limit=limit,
    )
