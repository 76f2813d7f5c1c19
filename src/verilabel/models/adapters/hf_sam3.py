"""SAM 3 (transformers' ``Sam3Model``): promptable concept segmentation. Each class asked for is a text prompt;
SAM 3 finds every instance of it, with a box, a mask and its own score.

Per batch the image encoder runs once (``get_vision_features``); then each class's prompt goes through the
DETR-style encoder / decoder on those features, batched over the images, its text embedding computed once per
run. A query's score is SAM 3's: ``sigmoid(pred_logits) * sigmoid(presence_logits)`` (the presence token says
whether the concept is in the image at all), as transformers' ``post_process_instance_segmentation`` computes it.
Boxes come out relative to the (stretched, square) input, so relative to the image; the mask logits (a quarter of
the input's side) are resized bilinearly to the decoded image and kept above 0, i.e. probability above 0.5.

Only the queries above the floor leave the device, class by class: a batch never holds every class's masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from verilabel.errors import ModelLoadError
from verilabel.labels import Label
from verilabel.models.adapters.hf_common import (
    ImageConfig,
    box_labels,
    load_transformers,
    nms_option,
    option,
    prepare_image,
    prompt_name,
    select,
)
from verilabel.models.catalogue import CatalogueEntry
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext
from verilabel.models.postprocess import mask_detection
from verilabel.models.preprocess import to_batch
from verilabel.models.torch_support import inference

DEFAULT_BATCH = 2
MAX_DETECTIONS = 100  # per class and image (SAM 3 has 200 queries)


class Sam3ConceptSegmenter:
    def __init__(
        self,
        entry: CatalogueEntry,
        net: Any,
        processor: Any,
        device: Any,
        *,
        batch_size: int,
        nms_iou: float | None,
        max_detections: int,
    ) -> None:
        self._net, self._processor, self._device = net, processor, device
        self._image = ImageConfig.from_processor(processor.image_processor)
        self.spec = entry.spec(batch_size=batch_size, input_size=self._image.input_size)
        self._nms_iou, self._max_detections = nms_iou, max_detections
        self._texts: dict[str, tuple[Any, Any]] = {}

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Runs in the decode pool: the resize to the square input, still uint8."""
        return prepare_image(image, self._image)

    def text(self, name: str) -> tuple[Any, Any]:
        """(text features (1 x tokens x dim), attention mask (1 x tokens)) of a class's prompt, computed once."""
        if name not in self._texts:
            tokens = self._processor.tokenizer(
                prompt_name(name), padding="max_length", truncation=True, return_tensors="pt"
            ).to(self._device)
            with inference(self._device):
                features = self._net.get_text_features(**tokens).pooler_output
            self._texts[name] = (features, tokens["attention_mask"])
        return self._texts[name]

    def vision(self, images: Sequence[ImageItem]) -> Any:
        """The image encoder's features of a batch (run once, shared by every class)."""
        prepared = [item.prepared if item.prepared is not None else self.prepare(item.array) for item in images]
        with inference(self._device):
            pixels = to_batch(prepared, self._device, mean=self._image.mean, std=self._image.std)
            return self._net.get_vision_features(pixel_values=pixels)

    def find(self, vision: Any, name: str, count: int) -> Any:
        """SAM 3's outputs for one class on a batch of ``count`` images' features."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        features, attention = self.text(name)
        with inference(self._device):
            return self._net(
                vision_embeds=vision,
                text_embeds=BaseModelOutputWithPooling(pooler_output=features.expand(count, -1, -1)),
                attention_mask=attention.expand(count, -1),
            )

    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        results: list[list[Label]] = [[] for _ in images]
        if not context.classes:
            return results
        vision = self.vision(images)
        for index in range(len(context.classes)):
            found = self.read_out(self.find(vision, context.classes[index], len(images)), index, images, context)
            for labels, more in zip(results, found, strict=True):
                labels += more
        return results

    def read_out(self, out: Any, index: int, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        """The labels of class ``context.classes[index]`` in each image: queries above the floor (best first, at
        most ``max_detections``), with masks for a segmentation run."""
        import torch

        name = context.classes[index]
        scores = out.pred_logits.float().sigmoid()
        if out.presence_logits is not None:
            scores = scores * out.presence_logits.float().sigmoid()
        results: list[list[Label]] = []
        for i, item in enumerate(images):
            xyxy = out.pred_boxes[i].float() * scores.new_tensor((item.width, item.height) * 2)
            labels = torch.full_like(scores[i], index, dtype=torch.long)
            keep = select(
                xyxy, scores[i], labels, floor=context.min_confidence, nms_iou=self._nms_iou, limit=self._max_detections
            )
            if context.task == "segmentation":
                results.append(self._masked(out.pred_masks[i][keep], xyxy[keep], scores[i][keep], name, item))
            else:
                results.append(
                    box_labels(
                        xyxy[keep].cpu().numpy(),
                        scores[i][keep].cpu().numpy(),
                        labels[keep].cpu().numpy(),
                        context.classes,
                        item.width,
                        item.height,
                    )
                )
        return results

    @staticmethod
    def _masked(logits: Any, xyxy: Any, scores: Any, name: str, item: ImageItem) -> list[Label]:
        """Detections with masks: each query's mask logits resized to the decoded image, above 0."""
        if not len(scores):
            return []
        from torch.nn.functional import interpolate

        resized = interpolate(
            logits.float()[None], size=(item.height, item.width), mode="bilinear", align_corners=False
        )
        found: list[Label] = []
        for mask, box, score in zip((resized[0] > 0).cpu().numpy(), xyxy.cpu().numpy(), scores.tolist(), strict=True):
            detection = mask_detection(name, score, mask, (float(box[0]), float(box[1]), float(box[2]), float(box[3])))
            if detection is not None:
                found.append(detection)
        return found


def load(request: LoadRequest, entry: CatalogueEntry) -> Sam3ConceptSegmenter:
    net, processor, device = load_transformers(entry, request, "Sam3Model")
    if type(net).__name__ != "Sam3Model":
        raise ModelLoadError(f"{entry.name!r}: the weights hold a {type(net).__name__}, not SAM 3")
    return Sam3ConceptSegmenter(
        entry,
        net,
        processor,
        device,
        batch_size=int(option(entry, request, "batch_size", DEFAULT_BATCH)),
        nms_iou=nms_option(entry, request, None),
        max_detections=request.detection_limit(int(option(entry, request, "max_detections", MAX_DETECTIONS))),
    )
