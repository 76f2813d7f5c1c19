"""OWL-ViT and OWLv2 zero-shot detection (transformers): the class names are the text queries.

Every image patch predicts one box and a logit per query; as in transformers' ``post_process_object_detection``
a box's score is the sigmoid of its best query's logit and its class that query. OWLv2 pads an image at the
bottom and right to a square before resizing it (OWL-ViT stretches it to a square), so its boxes are relative to
that square: they map back to pixels through the longer side. On top of that post-processing, overlapping boxes
of a class are merged by NMS (``nms_iou``, 0.5; 1 turns it off), since every patch predicts a box and an object
otherwise comes out several times.
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
    TextEmbeddings,
    ZeroShotDetector,
    corners,
    load_transformers,
    nms_option,
    option,
    pooled,
    prepare_image,
    templates_option,
)
from verilabel.models.catalogue import CatalogueEntry
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext
from verilabel.models.preprocess import to_batch
from verilabel.models.torch_support import full_precision, inference

OWL_TEMPLATES = ("a photo of a {}",)  # the query form of the OWL papers' and transformers' examples
DEFAULT_BATCH = 8


# --- box post-processing shared by the detectors ------------------------------------------------------------


def pad_bottom_right_square(image: np.ndarray) -> np.ndarray:
    """OWLv2's padding: the image at the top-left of a black square as large as its longer side."""
    height, width = image.shape[:2]
    side = max(height, width)
    if height == width:
        return image
    square = np.zeros((side, side, 3), dtype=np.uint8)
    square[:height, :width] = image
    return square


# --- the detector ----------------------------------------------------------------------------------------------
class OwlDetector(ZeroShotDetector):
    def __init__(
        self,
        entry: CatalogueEntry,
        net: Any,
        processor: Any,
        device: Any,
        *,
        templates: Sequence[str],
        batch_size: int,
        nms_iou: float | None,
        max_detections: int,
        classes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(net, processor, device, nms_iou=nms_iou, max_detections=max_detections, classes=classes)
        self._square = net.config.model_type == "owlv2"
        self._image = dataclasses.replace(ImageConfig.from_processor(processor.image_processor), gaussian=self._square)
        self.spec = entry.spec(batch_size=batch_size, input_size=self._image.input_size)
        self._max_length = int(net.config.text_config.max_position_embeddings)
        self._texts = TextEmbeddings(self._encode_text, templates)
        if classes:
            self._texts(classes)

    def _encode_text(self, prompts: list[str]) -> Any:
        tokens = self._tokenizer(
            prompts, padding="max_length", truncation=True, max_length=self._max_length, return_tensors="pt"
        )
        with inference(self._device):
            return pooled(
                self._net.base_model.get_text_features(
                    input_ids=tokens["input_ids"].to(self._device),
                    attention_mask=tokens["attention_mask"].to(self._device),
                )
            )

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Runs in the decode pool: (OWLv2) pad to a square, then resize to the model's input, still uint8."""
        return prepare_image(pad_bottom_right_square(image) if self._square else image, self._image)

    def forward(self, prepared: list[np.ndarray], classes: tuple[str, ...] | None = None) -> tuple[Any, Any]:
        """(logits (images, patches, classes), boxes (images, patches, 4) relative cx, cy, w, h): the image tower
        and heads of ``OwlViTForObjectDetection.forward`` with the cached query embeddings."""
        classes = classes or self._classes
        if not classes:
            raise ValueError("forward() needs classes: pass them, or load the model with LoadRequest(classes=...)")
        queries = self._texts(classes)
        with inference(self._device):
            pixels = to_batch(prepared, self._device, mean=self._image.mean, std=self._image.std)
            feature_map = self._net.image_embedder(pixel_values=pixels)[0]
            batch, rows, cols, dim = feature_map.shape
            features = feature_map.reshape(batch, rows * cols, dim)
            query_embeds = queries.to(features.dtype).unsqueeze(0).expand(batch, -1, -1)
            logits = self._net.class_predictor(features, query_embeds)[0]
            boxes = self._net.box_predictor(features, feature_map)
            return logits, boxes

    def postprocess(
        self, raw: tuple[Any, Any], images: Sequence[ImageItem], context: PredictContext
    ) -> list[list[Label]]:
        logits, boxes = raw
        best, labels = logits.float().max(dim=-1)
        scores, xyxy = best.sigmoid(), corners(boxes.float())
        results: list[list[Label]] = []
        for i, item in enumerate(images):
            # OWLv2's boxes are relative to the padded square, OWL-ViT's to the (stretched) image
            side = max(item.width, item.height)
            scale = xyxy.new_tensor((side, side) * 2 if self._square else (item.width, item.height) * 2)
            pixels = xyxy[i] * scale
            results.append(self.detections(pixels, scores[i], labels[i], item, context))
        return results


def load(request: LoadRequest, entry: CatalogueEntry) -> OwlDetector:
    net, processor, device = load_transformers(entry, request, "AutoModelForZeroShotObjectDetection")
    if net.config.model_type not in ("owlvit", "owlv2"):
        raise ModelLoadError(f"{entry.name!r}: the weights hold a {type(net).__name__}, not OWL-ViT or OWLv2")
    full_precision(net.box_head)
    return OwlDetector(
        entry,
        net,
        processor,
        device,
        templates=templates_option(entry, request, OWL_TEMPLATES),
        batch_size=int(option(entry, request, "batch_size", DEFAULT_BATCH)),
        nms_iou=nms_option(entry, request, DEFAULT_NMS_IOU),
        max_detections=request.detection_limit(int(option(entry, request, "max_detections", MAX_DETECTIONS))),
        classes=request.classes,
    )
