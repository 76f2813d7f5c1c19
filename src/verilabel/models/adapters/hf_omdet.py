"""OmDet-Turbo zero-shot detection (transformers): each class is its own text query, and a task prompt
(``Detect cat, dog.``) conditions the decoder.

The class and task embeddings are computed once per class tuple and reused for every batch (transformers'
forward looks them up in its own cache by token ids, one GPU sync per image and class). Post-processing is
transformers' ``post_process_grounded_object_detection``: a sigmoid per (query, class), the best ``num_queries``
pairs, the score floor, class-wise NMS (``nms_iou``, 0.5) and a clip to the image. Images are stretched to the
model's square input, so relative boxes map straight back to the original.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from verilabel.errors import ModelLoadError
from verilabel.labels import Label
from verilabel.models.adapters.hf_common import (
    DEFAULT_NMS_IOU,
    MAX_DETECTIONS,
    ImageConfig,
    ZeroShotDetector,
    corners,
    load_transformers,
    nms_option,
    option,
    prepare_image,
    prompt_name,
)
from verilabel.models.catalogue import CatalogueEntry
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext
from verilabel.models.preprocess import to_batch
from verilabel.models.torch_support import full_precision, inference

DEFAULT_BATCH = 8
TEXT_LENGTH = 77  # OmDetTurboProcessor pads and truncates class names and the task prompt to CLIP's 77 tokens


def task_prompt(classes: Sequence[str]) -> str:
    """The processor's default task: ``Detect cat, dog.``"""
    return f"Detect {', '.join(classes)}."


class OmDetDetector(ZeroShotDetector):
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
        classes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(net, processor, device, nms_iou=nms_iou, max_detections=max_detections, classes=classes)
        image = ImageConfig.from_processor(processor.image_processor)
        if image.size is None:  # the Swin backbone is built for one input size: stretch to it
            side = net.config.image_size
            height, width = (side, side) if isinstance(side, int) else side
            image = dataclasses.replace(image, size=(height, width), shortest_edge=None, longest_edge=None)
        self._image = image
        self.spec = entry.spec(batch_size=batch_size, input_size=image.input_size)
        self._language: dict[tuple[str, ...], tuple[Any, Any, Any]] = {}
        if classes:
            self.language(classes)

    def language(self, classes: tuple[str, ...]) -> tuple[Any, Any, Any]:
        """(class embeddings (classes, 1, dim), task embeddings (tokens, 1, dim), task mask (1, tokens)) for
        one image, computed once per class tuple."""
        if classes not in self._language:
            import torch

            names = [prompt_name(name) for name in classes]
            kwargs: dict[str, Any] = {
                "padding": "max_length",
                "truncation": True,
                "max_length": TEXT_LENGTH,
                "return_tensors": "pt",
            }
            class_tokens = self._tokenizer(names, **kwargs).to(self._device)
            task_tokens = self._tokenizer([task_prompt(names)], **kwargs).to(self._device)
            with inference(self._device):
                self._language[classes] = self._net.get_language_embedding(
                    class_tokens["input_ids"],
                    class_tokens["attention_mask"],
                    task_tokens["input_ids"],
                    task_tokens["attention_mask"],
                    torch.tensor([len(classes)], device=self._device),
                )
        return self._language[classes]

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Runs in the decode pool: stretch to the model's input, still uint8."""
        return prepare_image(image, self._image)

    def forward(self, prepared: list[np.ndarray], classes: tuple[str, ...] | None = None) -> tuple[Any, Any]:
        """(boxes (images, queries, 4) relative cx, cy, w, h, logits (images, queries, classes)): the vision
        backbone, encoder and decoder of ``OmDetTurboForObjectDetection.forward`` with the cached text."""
        classes = classes or self._classes
        if not classes:
            raise ValueError("forward() needs classes: pass them, or load the model with LoadRequest(classes=...)")
        class_features, task_features, task_mask = self.language(classes)
        batch = len(prepared)
        with inference(self._device):
            pixels = to_batch(prepared, self._device, mean=self._image.mean, std=self._image.std)
            encoded = self._net.encoder(self._net.vision_backbone(pixels), return_dict=True)
            decoded = self._net.decoder(
                encoded.extracted_states,
                class_features.expand(-1, batch, -1),
                task_features.expand(-1, batch, -1),
                task_mask.expand(batch, -1),
                return_dict=True,
            )
            return decoded.decoder_coords[-1], decoded.decoder_classes[-1]

    def postprocess(
        self, raw: tuple[Any, Any], images: Sequence[ImageItem], context: PredictContext
    ) -> list[list[Label]]:
        coords, logits = raw
        queries, num_classes = logits.shape[1], logits.shape[2]
        probs = logits.float().sigmoid().flatten(1)  # (images, queries * classes), query-major
        xyxy = corners(coords.float())
        results: list[list[Label]] = []
        for i, item in enumerate(images):
            top, index = probs[i].topk(min(queries, probs.shape[1]))
            labels = index % num_classes
            pixels = xyxy[i][index // num_classes] * xyxy.new_tensor((item.width, item.height) * 2)
            results.append(self.detections(pixels, top, labels, item, context))
        return results


def load(request: LoadRequest, entry: CatalogueEntry) -> OmDetDetector:
    net, processor, device = load_transformers(entry, request, "AutoModelForZeroShotObjectDetection")
    if not hasattr(net, "get_language_embedding"):
        raise ModelLoadError(f"{entry.name!r}: the weights hold a {type(net).__name__}, not OmDet-Turbo")
    full_precision(net.decoder.encoder_bbox_head, *net.decoder.decoder_bbox_head)
    return OmDetDetector(
        entry,
        net,
        processor,
        device,
        batch_size=int(option(entry, request, "batch_size", DEFAULT_BATCH)),
        nms_iou=nms_option(entry, request, DEFAULT_NMS_IOU),
        max_detections=request.detection_limit(int(option(entry, request, "max_detections", MAX_DETECTIONS))),
        classes=request.classes,
    )
