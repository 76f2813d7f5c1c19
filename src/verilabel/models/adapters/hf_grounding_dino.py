"""Grounding DINO zero-shot detection (transformers): the classes asked for become one prompt, ``cat. dog. hot dog.``

MM-Grounding-DINO and LLMDet checkpoints (``MMGroundingDinoForObjectDetection``) take the same inputs and give the
same outputs, so this adapter runs them too.

The model scores every query box against every prompt token. transformers' post-processing decodes the tokens
above a threshold back into text, which can be a fragment (``hot``), two classes run together, or a separator.
Here each token is mapped to the class it was tokenized from (the prompt is built from each class's own token
ids, exactly as the tokenizer splits the joined text), so a box's class is the one holding its most probable
token and its score that probability: transformers' box score, over class tokens only. Prompts longer than the
model's text window (256 tokens, about 80 COCO classes) are split into several, each run on the batch.

Images keep their aspect (shorter side 800, longer at most 1333); a batch is padded at the bottom and right to
its largest image with a ``pixel_mask``, and the boxes come out relative to each image's own (unpadded) extent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from verilabel.errors import ModelLoadError
from verilabel.labels import Label
from verilabel.models.adapters.hf_common import (
    MAX_DETECTIONS,
    ImageConfig,
    ZeroShotDetector,
    corners,
    load_transformers,
    nms_option,
    option,
    pad_batch,
    prepare_image,
    prompt_name,
)
from verilabel.models.catalogue import CatalogueEntry
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext
from verilabel.models.preprocess import to_batch
from verilabel.models.torch_support import full_precision, inference

DEFAULT_BATCH = 4
SEPARATORS = ".?"  # phrase separators for the model: a class name must not contain them


@dataclass(frozen=True)
class Prompt:
    """One text window: its token ids and, per token, the index of its class in the classes asked for (-1 for
    ``[CLS]``, ``.`` and ``[SEP]``)."""

    input_ids: tuple[int, ...]
    token_class: tuple[int, ...]


def phrase(name: str) -> str:
    """A class name as a prompt phrase: lower case, no separator inside (``St. Bernard`` -> ``st bernard``)."""
    for separator in SEPARATORS:
        name = name.replace(separator, " ")
    return prompt_name(name).lower()


def build_prompts(tokenizer: Any, classes: Sequence[str], max_tokens: int) -> list[Prompt]:
    """``classes`` as ``[CLS] a . b . c . [SEP]`` windows of at most ``max_tokens`` tokens: what the tokenizer
    makes of ``"a. b. c."`` (BERT splits at punctuation), packed greedily in order."""
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    dot_id = tokenizer.convert_tokens_to_ids(".")
    prompts: list[Prompt] = []
    ids: list[int] = [cls_id]
    owners: list[int] = [-1]
    for index, name in enumerate(classes):
        tokens = tokenizer(phrase(name), add_special_tokens=False)["input_ids"][: max_tokens - 3]
        if not tokens:
            continue  # nothing the model can read (an empty or all-punctuation name)
        if len(ids) + len(tokens) + 2 > max_tokens and len(ids) > 1:
            prompts.append(Prompt((*ids, sep_id), (*owners, -1)))
            ids, owners = [cls_id], [-1]
        ids += [*tokens, dot_id]
        owners += [index] * len(tokens) + [-1]
    if len(ids) > 1:
        prompts.append(Prompt((*ids, sep_id), (*owners, -1)))
    return prompts


class GroundingDinoDetector(ZeroShotDetector):
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
        self._image = ImageConfig.from_processor(processor.image_processor)
        self.spec = entry.spec(batch_size=batch_size, input_size=self._image.input_size)
        self._max_tokens = int(net.config.max_text_len)
        self._prompts: dict[tuple[str, ...], list[Prompt]] = {}

    def prompts(self, classes: tuple[str, ...]) -> list[Prompt]:
        """The prompt windows of ``classes``, built once per class tuple."""
        if classes not in self._prompts:
            self._prompts[classes] = build_prompts(self._tokenizer, classes, self._max_tokens)
        return self._prompts[classes]

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Runs in the decode pool: resize keeping the aspect, still uint8."""
        return prepare_image(image, self._image)

    def forward(
        self, prepared: list[np.ndarray], classes: tuple[str, ...] | None = None
    ) -> list[tuple[Prompt, Any, Any]]:
        """Per prompt window: (window, logits (images, queries, text window), boxes (images, queries, 4) relative
        cx, cy, w, h)."""
        import torch

        classes = classes or self._classes
        if not classes:
            raise ValueError("forward() needs classes: pass them, or load the model with LoadRequest(classes=...)")
        padded, mask = pad_batch(prepared)
        outputs = []
        with inference(self._device):
            pixel_mask = torch.from_numpy(mask).to(self._device)
            pixels = to_batch(padded, self._device, mean=self._image.mean, std=self._image.std)
            pixels = pixels * pixel_mask.unsqueeze(1)  # transformers pads after normalising: zeros
            for prompt in self.prompts(classes):
                ids = torch.tensor(prompt.input_ids, device=self._device).expand(len(prepared), -1)
                out = self._net(
                    pixel_values=pixels,
                    pixel_mask=pixel_mask.long(),
                    input_ids=ids,
                    token_type_ids=torch.zeros_like(ids),
                    attention_mask=torch.ones_like(ids),
                )
                outputs.append((prompt, out.logits, out.pred_boxes))
        return outputs

    def postprocess(
        self, raw: list[tuple[Prompt, Any, Any]], images: Sequence[ImageItem], context: PredictContext
    ) -> list[list[Label]]:
        import torch

        if not raw:  # no class the model can read
            return [[] for _ in images]
        scores, labels, boxes = [], [], []
        for prompt, logits, pred_boxes in raw:
            best, label = class_scores(prompt, logits.float())
            scores.append(best)
            labels.append(label)
            boxes.append(corners(pred_boxes.float()))
        all_scores, all_labels, all_boxes = torch.cat(scores, 1), torch.cat(labels, 1), torch.cat(boxes, 1)
        results: list[list[Label]] = []
        for i, item in enumerate(images):
            pixels = all_boxes[i] * all_boxes.new_tensor((item.width, item.height) * 2)
            results.append(self.detections(pixels, all_scores[i], all_labels[i], item, context))
        return results


def class_scores(prompt: Prompt, logits: Any) -> tuple[Any, Any]:
    """(score, class index) per query: the most probable class token and the class it belongs to."""
    import torch

    owners = torch.tensor(prompt.token_class, device=logits.device)
    positions = torch.nonzero(owners >= 0).squeeze(1)
    probs = logits[..., : len(prompt.token_class)].sigmoid()[..., positions]
    best, token = probs.max(dim=-1)
    return best, owners[positions][token]


def load(request: LoadRequest, entry: CatalogueEntry) -> GroundingDinoDetector:
    net, processor, device = load_transformers(entry, request, "AutoModelForZeroShotObjectDetection")
    if not hasattr(net.config, "max_text_len"):
        raise ModelLoadError(f"{entry.name!r}: the weights hold a {type(net).__name__}, not Grounding DINO")
    # the decoder refines its boxes with the same (shared) heads, layer after layer
    full_precision(*net.bbox_embed, net.model.encoder_output_bbox_embed)
    return GroundingDinoDetector(
        entry,
        net,
        processor,
        device,
        batch_size=int(option(entry, request, "batch_size", DEFAULT_BATCH)),
        nms_iou=nms_option(entry, request, None),
        max_detections=request.detection_limit(int(option(entry, request, "max_detections", MAX_DETECTIONS))),
        classes=request.classes,
    )
