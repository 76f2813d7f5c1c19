"""Qwen2.5-VL and Qwen3-VL grounding (transformers): one answer per image listing every instance of the classes
asked for as JSON, ``[{"bbox_2d": [x1, y1, x2, y2], "label": "cat"}, ...]``, the models' native format.

The prompt is the one the Qwen cookbooks ground with (``Locate every instance that belongs to the following
categories: "cat, dog". Report bbox coordinates in JSON format.``), in the processor's chat template. Coordinates:
Qwen2.5-VL writes absolute pixels of the image as its processor resized it (``smart_resize``: both sides multiples
of 28 px, the area within ``min_pixels`` .. ``max_pixels``), read back from ``image_grid_thw`` (patches of
``patch_size`` px); Qwen3-VL writes 0..1000 of the image's width and height. ``coordinates`` (auto, pixels or
thousandths) says which; auto goes by the model's type. ``max_pixels`` caps the image tokens (Qwen's own default,
about 12.8 megapixels, would turn a photo into 16,000 of them).

The answer is parsed leniently: every ``{...}`` that decodes as a JSON object with a label and four numbers counts
(so a ``json`` fence, text around it or an answer cut off at ``max_new_tokens`` lose nothing but the broken
object), anything else is skipped, labels not asked for (as asked or as prompted, any case) are dropped, and
boxes are clipped to the image (an inverted one is skipped).

Score policy (Qwen-VL gives no per-box confidence): a box's confidence is a proxy, the geometric mean of the
probabilities the model gave, greedy decoding, to the tokens that spell that object: its label's text and its four
numbers (not the JSON around them, which the model writes with near certainty). A token's probability is the
softmax, at that token, of the step's scores greedy decoding picked it from (what ``output_scores`` returns: the
logits after the model's logits processors, its repetition penalty included). The proxy is in [0, 1] and higher
when the model was sure, but not calibrated: the last digit of a coordinate is often a toss-up between neighbours.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from verilabel.errors import ConfigError, ModelLoadError
from verilabel.labels import Detection, Label
from verilabel.models.adapters.hf_common import MAX_DETECTIONS, load_transformers, option, prompt_name
from verilabel.models.adapters.hf_florence2 import (
    Generated,
    best_first,
    geometric_mean,
    greedy,
    greedy_config,
    overlapping,
)
from verilabel.models.catalogue import CatalogueEntry
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext, SplitPredict
from verilabel.models.postprocess import box_detection
from verilabel.models.torch_support import inference

DEFAULT_BATCH = 4
DEFAULT_MAX_NEW_TOKENS = 1024
PROMPT = 'Locate every instance that belongs to the following categories: "{}". Report bbox coordinates in JSON format.'
COORDINATES = ("auto", "pixels", "thousandths")
THOUSANDTHS_MODELS = frozenset({"qwen3_vl", "qwen3_vl_moe"})  # 0..1000 relative coordinates
PIXELS_MODELS = frozenset({"qwen2_vl", "qwen2_5_vl"})  # pixels of the resized image
# The chat layout the Qwen-VL templates produce, for a processor saved without its template.
CHATML = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{}<|im_end|>\n<|im_start|>assistant\n"

_LABEL = re.compile(r'"label"\s*:\s*"((?:[^"\\]|\\.)*)"')
_BOX = re.compile(r'"bbox(?:_2d)?"\s*:\s*\[([^\]]*)\]')
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


# --- the answer -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grounded:
    """One object of an answer: its label, its box as written (x1, y1, x2, y2) and the character spans that spell
    it (the label's text and the four numbers; the whole object when they cannot be told apart)."""

    label: str
    box: tuple[float, float, float, float]
    spans: tuple[tuple[int, int], ...]


def parse_answer(text: str) -> list[Grounded]:
    """Every JSON object in ``text`` with a string ``label`` and a ``bbox_2d`` (or ``bbox``) of four finite
    numbers, in order; whatever else the text holds (fences, prose, a truncated last object) is skipped."""
    decoder = json.JSONDecoder()
    found: list[Grounded] = []
    start = text.find("{")
    while start >= 0:
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        grounded = _grounded(value, text, start, end)
        if grounded is not None:
            found.append(grounded)
        start = text.find("{", end)
    return found


def _grounded(value: Any, text: str, start: int, end: int) -> Grounded | None:
    if not isinstance(value, dict):
        return None
    label, box = value.get("label"), value.get("bbox_2d", value.get("bbox"))
    if not isinstance(label, str) or not isinstance(box, list) or len(box) != 4:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in box):
        return None
    return Grounded(label, (float(box[0]), float(box[1]), float(box[2]), float(box[3])), _spans(text, start, end))


def _spans(text: str, start: int, end: int) -> tuple[tuple[int, int], ...]:
    """The spans of the label's text and the box's numbers in the object at [start, end)."""
    written = text[start:end]
    label, box = _LABEL.search(written), _BOX.search(written)
    numbers = list(_NUMBER.finditer(box.group(1))) if box else []
    if label is None or box is None or len(numbers) != 4:
        return ((start, end),)
    offset = start + box.start(1)
    return ((start + label.start(1), start + label.end(1)), *((offset + n.start(), offset + n.end()) for n in numbers))


def decode_with_spans(tokenizer: Any, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """The text of ``ids`` and each token's character span. A byte-level tokenizer may split a character
    between tokens: those tokens are decoded together and share its span."""
    text, spans, first = "", [], 0
    for stop in range(1, len(ids) + 1):
        piece = tokenizer.decode(ids[first:stop], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if piece.endswith("\ufffd") and stop < len(ids):
            continue  # an unfinished character: wait for the rest of its bytes
        spans += [(len(text), len(text) + len(piece))] * (stop - first)
        text += piece
        first = stop
    return text, spans


def class_lookup(classes: Sequence[str]) -> dict[str, str]:
    """Each class asked for, by its name as asked and as prompted, in any case."""
    lookup: dict[str, str] = {}
    for name in classes:
        for key in (name, prompt_name(name)):
            lookup.setdefault(key.strip().casefold(), name)
    return lookup


def answer_detections(
    tokenizer: Any,
    ids: Sequence[int],
    logprobs: Sequence[float],
    classes: Sequence[str],
    scale: tuple[float, float],
    item: ImageItem,
    floor: float,
) -> list[Detection]:
    """The detections of one answer: its objects whose label is a class asked for, their boxes divided by
    ``scale`` (the width and height the coordinates are out of), scored by the token-probability proxy."""
    text, spans = decode_with_spans(tokenizer, ids)
    lookup = class_lookup(classes)
    found = []
    for grounded in parse_answer(text):
        name = lookup.get(grounded.label.strip().casefold())
        x1, y1, x2, y2 = grounded.box
        if name is None or x2 <= x1 or y2 <= y1:
            continue
        tokens = sorted({t for start, end in grounded.spans for t in overlapping(spans, start, end)})
        score = geometric_mean(logprobs, tokens)
        if score < floor:
            continue
        sx, sy = item.width / scale[0], item.height / scale[1]
        detection = box_detection(name, score, (x1 * sx, y1 * sy, x2 * sx, y2 * sy), item.width, item.height)
        if detection is not None:
            found.append(detection)
    return found


# --- the model ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Raw:
    """What ``infer`` hands ``to_labels``: the answers, and per image the (width, height) its coordinates are
    out of."""

    generated: Generated
    scales: list[tuple[float, float]]


class QwenGrounding(SplitPredict):
    asynchronous = False  # generation runs on the host, token by token

    def __init__(
        self,
        entry: CatalogueEntry,
        net: Any,
        processor: Any,
        device: Any,
        *,
        batch_size: int,
        max_new_tokens: int,
        max_detections: int,
        thousandths: bool,
        pixels: tuple[int | None, int | None] = (None, None),
        prompt: str = PROMPT,
    ) -> None:
        self._net, self._processor, self._device = net, processor, device
        self._tokenizer = processor.tokenizer
        self.spec = entry.spec(batch_size=batch_size)
        self._config = greedy_config(net, max_new_tokens)
        self._max_detections, self._thousandths, self._prompt = max_detections, thousandths, prompt
        min_pixels, max_pixels = pixels
        size = processor.image_processor.size
        self._size = (
            {
                "shortest_edge": min_pixels or _size_of(size, "shortest_edge"),
                "longest_edge": max_pixels or _size_of(size, "longest_edge"),
            }
            if min_pixels or max_pixels
            else None
        )
        self._texts: dict[tuple[str, ...], str] = {}

    def text(self, classes: tuple[str, ...]) -> str:
        """The chat prompt asking for ``classes`` (with the image's placeholder), built once per class tuple."""
        if classes not in self._texts:
            request = self._prompt.replace("{}", ", ".join(prompt_name(name) for name in classes))
            if getattr(self._processor, "chat_template", None):
                content = [{"type": "image"}, {"type": "text", "text": request}]
                messages = [{"role": "user", "content": content}]
                text = self._processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            else:
                text = CHATML.format(request)
            self._texts[classes] = text
        return self._texts[classes]

    def infer(self, images: Sequence[ImageItem], context: PredictContext) -> Raw | None:
        if not context.classes or not images:
            return None
        kwargs = {"size": self._size} if self._size else {}
        inputs = self._processor(
            text=[self.text(context.classes)] * len(images),
            images=[item.array for item in images],
            padding=True,
            padding_side="left",
            return_tensors="pt",
            **kwargs,
        )
        patch = int(self._processor.image_processor.patch_size)
        grids = inputs["image_grid_thw"].tolist()
        scales = [(1000.0, 1000.0) if self._thousandths else (w * patch, h * patch) for _, h, w in grids]
        with inference(self._device):
            generated = greedy(self._net, self._config, **inputs.to(self._device))
        return Raw(generated, scales)

    def to_labels(self, raw: Raw | None, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        if raw is None:
            return [[] for _ in images]
        rows = zip(raw.generated.tokens, raw.generated.logprobs, raw.scales, images, strict=True)
        return [
            best_first(
                answer_detections(self._tokenizer, ids, logprobs, context.classes, scale, item, context.min_confidence),
                self._max_detections,
            )
            for ids, logprobs, scale, item in rows
        ]


def _size_of(size: Any, key: str) -> int | None:
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return int(value) if value else None


def _thousandths(entry: CatalogueEntry, request: LoadRequest, model_type: str) -> bool:
    """Whether the model writes 0..1000 coordinates (Qwen3-VL) rather than pixels of the resized image."""
    coordinates = option(entry, request, "coordinates", "auto")
    if coordinates not in COORDINATES:
        raise ConfigError("coordinates", f"must be one of {COORDINATES}, got {coordinates!r}")
    if coordinates == "auto":
        return model_type in THOUSANDTHS_MODELS
    return bool(coordinates == "thousandths")


def load(request: LoadRequest, entry: CatalogueEntry) -> QwenGrounding:
    net, processor, device = load_transformers(entry, request, "AutoModelForImageTextToText", half=True)
    model_type = net.config.model_type
    if model_type not in THOUSANDTHS_MODELS | PIXELS_MODELS:
        raise ModelLoadError(f"{entry.name!r}: the weights hold a {type(net).__name__}, not Qwen2.5-VL or Qwen3-VL")
    prompt = option(entry, request, "prompt", PROMPT)
    if not isinstance(prompt, str) or "{}" not in prompt:
        raise ConfigError("prompt", f"the prompt must be a string holding {{}} (the classes), got {prompt!r}")
    min_pixels, max_pixels = option(entry, request, "min_pixels", None), option(entry, request, "max_pixels", None)
    return QwenGrounding(
        entry,
        net,
        processor,
        device,
        batch_size=int(option(entry, request, "batch_size", DEFAULT_BATCH)),
        max_new_tokens=int(option(entry, request, "max_new_tokens", DEFAULT_MAX_NEW_TOKENS)),
        max_detections=request.detection_limit(int(option(entry, request, "max_detections", MAX_DETECTIONS))),
        thousandths=_thousandths(entry, request, model_type),
        pixels=(int(min_pixels) if min_pixels else None, int(max_pixels) if max_pixels else None),
        prompt=prompt,
    )
