"""Florence-2 (transformers): zero-shot detection by grounding each class asked for, and captions.

Prompt: ``<OPEN_VOCABULARY_DETECTION>`` once per class (``Locate cat in the image.``), not one
``<CAPTION_TO_PHRASE_GROUNDING>`` holding every class. Phrase grounding was trained to box the phrases of a caption
that describes the image: it boxes each phrase whether or not it is there, usually once, and its phrases come back
as text to be matched. Open-vocabulary detection was trained to list every instance of one category, so each
prompt's boxes belong to its class (a phrase the model writes that is not that class is dropped). It costs one
generated sequence per image and class instead of one per image, which is kept small: the vision tower runs once
per image and its features are shared by all of the image's prompts, the prompts of a batch generate together
(``prompt_batch`` at a time), and each stops at its end token (about seven tokens a box).

Output: ``cat<loc_x1><loc_y1><loc_x2><loc_y2>...``, parsed as ``Florence2Processor.post_process_generation``
parses it (the same decoding of tokens to text, the same patterns): a phrase, then boxes of four location tokens,
each a bin of 1/1000 of the image's width or height, the box corner at the bin's centre. transformers then
truncates the pixel coordinates to integers; here they stay exact. The processor stretches the image to a square,
so the bins are relative to the image itself. Polygons (``<poly>``) are not read.

Score policy (Florence-2 gives no per-box confidence): a box's confidence is a proxy, the geometric mean of the
probabilities the model gave, greedy decoding, to the tokens that spell it: its phrase and its four location
tokens (boxes listed after one phrase share its tokens). A token's probability is the softmax, at that token, of
the step's scores greedy decoding picked it from (what ``output_scores`` returns: the logits after the model's
logits processors, so a token a processor forces counts as certain). The proxy is in [0, 1] and higher when the
model was sure, but it is not calibrated: a location token often shares its probability with the neighbouring
bins, so a good box can score well under 1 (the catalogue's ``default_confidence`` is low for that reason).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from verilabel.errors import ConfigError, ModelLoadError
from verilabel.labels import Detection, Label
from verilabel.models.adapters.hf_common import (
    MAX_DETECTIONS,
    ImageConfig,
    load_transformers,
    option,
    prepare_image,
    prompt_name,
)
from verilabel.models.catalogue import CatalogueEntry
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext, SplitPredict
from verilabel.models.postprocess import box_detection
from verilabel.models.preprocess import to_batch
from verilabel.models.torch_support import inference

DEFAULT_BATCH = 4
DEFAULT_MAX_NEW_TOKENS = 1024
DEFAULT_PROMPT_BATCH = 32  # (image, class) prompts per generate call: each holds the image's encoder states
DETECTION_TASK = "<OPEN_VOCABULARY_DETECTION>"
CAPTION_TASKS = {"caption": "<CAPTION>", "detailed": "<DETAILED_CAPTION>", "more_detailed": "<MORE_DETAILED_CAPTION>"}
BINS = 1000

# Florence2PostProcessor's patterns for a phrase followed by boxes (``description_with_bboxes``).
_PHRASE = re.compile(r"([^<]+(?:<loc_\d+>){4,})")
_PHRASE_TEXT = re.compile(r"^\s*(.*?)(?=<od>|</od>|<box>|</box>|<bbox>|</bbox>|<loc_)")
_BOX = re.compile(r"<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>")
_DROPPED = frozenset({"<s>", "</s>", "<pad>"})  # what the post-processor removes from the text


# --- greedy generation and the token-probability proxy (shared with hf_qwen_vl) -------------------------------
@dataclass(frozen=True)
class Generated:
    """Greedy outputs, one row per prompt: the new tokens up to (not including) the end of the sequence, and the
    log probability the model gave each."""

    tokens: list[list[int]]
    logprobs: list[list[float]]

    def __add__(self, other: Generated) -> Generated:
        return Generated(self.tokens + other.tokens, self.logprobs + other.logprobs)


def greedy_config(net: Any, max_new_tokens: int) -> Any:
    """The model's generation config made greedy, whatever sampling or beams it ships with (its other logits
    processors stay: a repetition penalty, a forced end token)."""
    config = copy.deepcopy(net.generation_config)
    config.do_sample, config.num_beams = False, 1
    config.temperature = config.top_p = config.top_k = None
    config.max_new_tokens = max_new_tokens
    config.output_scores = config.return_dict_in_generate = False  # ChosenLogProbs reads what they would keep
    return config


class ChosenLogProbs:
    """A logits processor, last in line: at each step, the log softmax of the final scores at the token greedy
    decoding then picks (their argmax), one number per row. ``output_scores`` would give the same numbers but keep
    every step's (rows x vocabulary) scores until the end: gigabytes for a batch that loops to max_new_tokens."""

    def __init__(self) -> None:
        self.steps: list[Any] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.steps.append(scores.float().log_softmax(-1).amax(-1))
        return scores


def _end_tokens(config: Any) -> set[int]:
    ends = config.eos_token_id
    return set(ends if isinstance(ends, list | tuple) else [] if ends is None else [ends])


def greedy(net: Any, config: Any, **inputs: Any) -> Generated:
    """``net.generate`` with ``config`` (see ``greedy_config``): each row's new tokens, up to its end token, and
    the log probability of each (the log softmax of the step's scores at the chosen token)."""
    import torch
    from transformers import LogitsProcessorList

    recorder = ChosenLogProbs()
    sequences = net.generate(**inputs, generation_config=config, logits_processor=LogitsProcessorList([recorder]))
    steps = len(recorder.steps)
    chosen = sequences[:, sequences.shape[1] - steps :].tolist()
    logprobs = torch.stack(recorder.steps, dim=1).tolist() if steps else [[] for _ in chosen]
    ends = _end_tokens(config)
    tokens: list[list[int]] = []
    for n, row in enumerate(chosen):
        stop = next((k for k, token in enumerate(row) if token in ends), len(row))
        tokens.append(row[:stop])
        logprobs[n] = logprobs[n][:stop]
    return Generated(tokens, logprobs)


def geometric_mean(logprobs: Sequence[float], indices: Sequence[int]) -> float:
    """The geometric mean of the probabilities at ``indices`` (0 when there are none)."""
    if not indices:
        return 0.0
    return math.exp(sum(logprobs[i] for i in indices) / len(indices))


def overlapping(spans: Sequence[tuple[int, int]], start: int, end: int) -> list[int]:
    """The indices of the token spans that overlap the characters [start, end)."""
    return [i for i, (a, b) in enumerate(spans) if a < end and b > start]


# --- Florence-2's output --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Located:
    """One box of a Florence-2 output: its phrase, its four bins (x1, y1, x2, y2) and the indices of the tokens
    that spell it (the phrase's and the box's)."""

    phrase: str
    bins: tuple[int, int, int, int]
    tokens: tuple[int, ...]

    def relative(self) -> tuple[float, float, float, float]:
        """Corners relative to the image: each bin's centre."""
        x1, y1, x2, y2 = ((b + 0.5) / BINS for b in self.bins)
        return x1, y1, x2, y2


def decode_with_spans(tokenizer: Any, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """The text of ``ids`` and each token's character span, as ``Florence2PostProcessor.decode_with_spans``
    decodes them (special tokens as written, others one by one), less the ``<s>``, ``</s>`` and ``<pad>`` it
    then removes from the text."""
    special = set(tokenizer.all_special_tokens)
    text, spans = "", []
    for token in tokenizer.convert_ids_to_tokens(list(ids)):
        written = token if token in special else tokenizer.convert_tokens_to_string([token])
        piece = "" if token in _DROPPED else written
        spans.append((len(text), len(text) + len(piece)))
        text += piece
    return text, spans


def parse_locations(tokenizer: Any, ids: Sequence[int]) -> list[Located]:
    """The boxes of a generated ``phrase<loc_..>x4...`` sequence, as the post-processor finds them: a phrase
    needs four location tokens after it, then every four make a box (left-over ones are ignored)."""
    text, spans = decode_with_spans(tokenizer, ids)
    found: list[Located] = []
    for match in _PHRASE.finditer(text):
        chunk, base = match.group(1), match.start(1)
        head = _PHRASE_TEXT.search(chunk)
        if head is None:
            continue
        written = head.group()
        phrase = written.strip()
        start = base + head.start() + len(written) - len(written.lstrip())
        phrase_tokens = overlapping(spans, start, start + len(phrase)) if phrase else []
        name = phrase.encode("ascii", "ignore").decode("ascii")
        for box in _BOX.finditer(chunk):
            box_tokens = overlapping(spans, base + box.start(), base + box.end())
            bins = (int(box.group(1)), int(box.group(2)), int(box.group(3)), int(box.group(4)))
            found.append(Located(name, bins, tuple(phrase_tokens + box_tokens)))
    return found


def class_boxes(
    located: Sequence[Located], logprobs: Sequence[float], name: str, item: ImageItem, floor: float
) -> list[Detection]:
    """The detections of one prompt's boxes whose phrase is the class ``name`` asked for (as asked or as
    prompted, any case), scored by the token-probability proxy, at least ``floor``."""
    accepted = {name.casefold(), prompt_name(name).casefold()}
    found = []
    for box in located:
        if box.phrase.casefold() not in accepted:
            continue
        score = geometric_mean(logprobs, box.tokens)
        x1, y1, x2, y2 = box.relative()
        pixels = (x1 * item.width, y1 * item.height, x2 * item.width, y2 * item.height)
        detection = box_detection(name, score, pixels, item.width, item.height) if score >= floor else None
        if detection is not None:
            found.append(detection)
    return found


def best_first(detections: Sequence[Detection], limit: int) -> list[Label]:
    """The detections without exact repeats (a greedy decoder can loop on a box), most confident first."""
    unique: dict[tuple[str, tuple[float, ...]], Detection] = {}
    for detection in detections:
        unique.setdefault((detection.label, detection.box.as_tuple()), detection)
    ranked: list[Label] = list(sorted(unique.values(), key=lambda d: -(d.confidence or 0.0))[:limit])
    return ranked


@dataclass(frozen=True)
class Raw:
    """What ``infer`` hands ``to_labels``: per generated row, its (image index, class index)."""

    rows: list[tuple[int, int]]
    generated: Generated


class Florence2(SplitPredict):
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
        prompt_batch: int,
        max_detections: int,
    ) -> None:
        self._net, self._processor, self._device = net, processor, device
        self._tokenizer = processor.tokenizer
        self._image = ImageConfig.from_processor(processor.image_processor)
        self.spec = entry.spec(batch_size=batch_size, input_size=self._image.input_size)
        self._image_token_id = int(net.config.image_token_id)
        self._image_tokens = processor.image_token * int(processor.num_image_tokens)
        self._config = greedy_config(net, max_new_tokens)
        self._prompt_batch, self._max_detections = prompt_batch, max_detections
        self._ids: dict[str, list[int]] = {}

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Runs in the decode pool: the processor's resize (a square, not keeping the aspect), still uint8."""
        return prepare_image(image, self._image)

    def prompt_ids(self, task: str, text: str = "") -> list[int]:
        """The encoder's input for a task prompt: the image's placeholder tokens, then ``<s>``, the task's
        sentence and ``</s>`` (what ``Florence2Processor`` builds)."""
        if text:
            sentence = self._processor.task_prompts_with_input[task].format(input=text)
        else:
            sentence = self._processor.task_prompts_without_inputs[task]
        if sentence not in self._ids:
            tokenizer = self._tokenizer
            full = self._image_tokens + tokenizer.bos_token + sentence + tokenizer.eos_token
            self._ids[sentence] = tokenizer(full, add_special_tokens=False)["input_ids"]
        return self._ids[sentence]

    def infer(self, images: Sequence[ImageItem], context: PredictContext) -> Raw | None:
        if not context.classes or not images:
            return None
        prompts = [self.prompt_ids(DETECTION_TASK, prompt_name(name)) for name in context.classes]
        rows = [(i, c) for i in range(len(images)) for c in range(len(prompts))]
        generated = self.generate(self.prepared(images), [(i, prompts[c]) for i, c in rows])
        return Raw(rows, generated)

    def to_labels(self, raw: Raw | None, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        found: list[list[Detection]] = [[] for _ in images]
        if raw is not None:
            generated = raw.generated
            for (i, c), ids, logprobs in zip(raw.rows, generated.tokens, generated.logprobs, strict=True):
                located = parse_locations(self._tokenizer, ids)
                found[i] += class_boxes(located, logprobs, context.classes[c], images[i], context.min_confidence)
        return [best_first(detections, self._max_detections) for detections in found]

    def caption(self, images: Sequence[ImageItem], detail: str = "caption") -> list[str]:
        """One caption per image: ``detail`` caption, detailed or more_detailed (``<CAPTION>``,
        ``<DETAILED_CAPTION>``, ``<MORE_DETAILED_CAPTION>``), greedy decoding."""
        if detail not in CAPTION_TASKS:
            raise ConfigError("detail", f"caption detail must be one of {sorted(CAPTION_TASKS)}, got {detail!r}")
        if not images:
            return []
        prompt = self.prompt_ids(CAPTION_TASKS[detail])
        generated = self.generate(self.prepared(images), [(i, prompt) for i in range(len(images))])
        return [decode_with_spans(self._tokenizer, ids)[0].strip() for ids in generated.tokens]

    def generate(self, prepared: list[np.ndarray], rows: Sequence[tuple[int, list[int]]]) -> Generated:
        """Greedy outputs of ``rows`` (image index, prompt ids), ``prompt_batch`` at a time; the vision tower
        runs once per image."""
        out = Generated([], [])
        with inference(self._device):
            pixels = to_batch(prepared, self._device, mean=self._image.mean, std=self._image.std)
            features = self._net.model.get_image_features(pixel_values=pixels.to(self._net.dtype)).pooler_output
            for start in range(0, len(rows), self._prompt_batch):
                out += self._generate_rows(features, rows[start : start + self._prompt_batch])
        return out

    def _generate_rows(self, features: Any, rows: Sequence[tuple[int, list[int]]]) -> Generated:
        import torch

        width = max(len(ids) for _, ids in rows)
        pad = self._tokenizer.pad_token_id
        ids = torch.tensor([p + [pad] * (width - len(p)) for _, p in rows], device=self._device)
        mask = torch.tensor([[1] * len(p) + [0] * (width - len(p)) for _, p in rows], device=self._device)
        embeds = self._net.get_input_embeddings()(ids)
        image = features[torch.tensor([i for i, _ in rows], device=self._device)].to(embeds.dtype)
        embeds = embeds.masked_scatter((ids == self._image_token_id).unsqueeze(-1), image)
        encoded = self._net.get_encoder()(inputs_embeds=embeds, attention_mask=mask)
        return greedy(self._net, self._config, encoder_outputs=encoded, attention_mask=mask)


def load(request: LoadRequest, entry: CatalogueEntry) -> Florence2:
    net, processor, device = load_transformers(entry, request, "AutoModelForImageTextToText", half=True)
    if net.config.model_type != "florence2" or not hasattr(processor, "post_processor"):
        raise ModelLoadError(f"{entry.name!r}: the weights hold a {type(net).__name__}, not Florence-2")
    return Florence2(
        entry,
        net,
        processor,
        device,
        batch_size=int(option(entry, request, "batch_size", DEFAULT_BATCH)),
        max_new_tokens=int(option(entry, request, "max_new_tokens", DEFAULT_MAX_NEW_TOKENS)),
        prompt_batch=int(option(entry, request, "prompt_batch", DEFAULT_PROMPT_BATCH)),
        max_detections=request.detection_limit(int(option(entry, request, "max_detections", MAX_DETECTIONS))),
    )
