"""Tiny random-weight generative vision-language models (Florence-2, Qwen2.5-VL, Qwen3-VL) saved the way
transformers saves them, offline, for tests: one layer, widths of 32, 64 px images (a save + load takes about a
second).

Their tokenizers are built locally with byte-level BPE vocabularies that spell any text (a few words whole):
Florence-2's is BART's layout (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2) with the ``<loc_0>`` .. ``<loc_999>`` location
tokens, the task tokens of its outputs and the ``<image>`` placeholder; Qwen's has the ChatML and vision special
tokens (``<|im_start|>``, ``<|image_pad|>``...) and a chat template of the Qwen-VL layout (no system prompt).
A random model writes nothing useful, so tests script what it generates (``ScriptedTokens``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.support.random_models_hf import _byte_symbols, _save, _seeded

FLORENCE_WORDS = ("Locate", "Ġin", "Ġthe", "Ġimage", "What", "Ġdoes", "Ġdescribe", "cat", "Ġcat", "dog", "Ġdog")
FLORENCE_TASK_TOKENS = ("<od>", "</od>", "<ocr>", "</ocr>", "<poly>", "</poly>", "<sep>", "<ground>", "<obj>")
QWEN_WORDS = ("bbox", "label", "cat", "dog", "Ġcat", "json")
QWEN_SPECIAL = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# What Florence2PostProcessor parses, per output type (the hub's processor_config.json holds the same keys).
FLORENCE_POST_PROCESSING = {
    "ocr": {},
    "phrase_grounding": {"banned_grounding_tokens": []},
    "pure_text": {},
    "description_with_bboxes": {},
    "description_with_polygons": {},
    "polygons": {},
    "bboxes": {},
    "description_with_bboxes_or_polygons": {},
}
TINY_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}


def _merges(words: Sequence[str]) -> list[tuple[str, str]]:
    """Byte-level BPE merges that build each word left to right (``Ġ c`` -> ``Ġc``, ``Ġc a`` -> ``Ġca``...)."""
    merges: dict[tuple[str, str], None] = {}
    for word in words:
        built = word[0]
        for symbol in word[1:]:
            merges[(built, symbol)] = None
            built += symbol
    return list(merges)


def _byte_vocab(first: Sequence[str], merges: list[tuple[str, str]]) -> dict[str, int]:
    tokens = [*first, *_byte_symbols(), *dict.fromkeys("".join(m) for m in merges)]
    return {token: i for i, token in enumerate(tokens)}


def florence_tokenizer() -> Any:
    """A BART tokenizer (byte-level BPE) with Florence-2's location, task and image tokens."""
    from transformers import BartTokenizer

    merges = _merges(FLORENCE_WORDS)
    vocab = _byte_vocab(["<s>", "<pad>", "</s>", "<unk>"], merges)
    tokenizer = BartTokenizer(vocab=vocab, merges=merges, extra_special_tokens={"image_token": "<image>"})
    tokenizer.add_tokens([f"<loc_{i}>" for i in range(1000)] + list(FLORENCE_TASK_TOKENS))
    return tokenizer


def save_florence2(folder: Path, *, seed: int = 0) -> Path:
    """A one-layer Florence-2 (DaViT vision tower, BART encoder-decoder) reading 64 px images as 5 tokens."""
    import transformers as T

    _seeded(seed)
    tokenizer = florence_tokenizer()
    text = {
        "model_type": "bart",
        "vocab_size": len(tokenizer),
        "d_model": 32,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64,
        "max_position_embeddings": 256,
        "bos_token_id": 0,
        "pad_token_id": 1,
        "eos_token_id": 2,
        "decoder_start_token_id": 2,
    }
    vision = {
        "depths": [1, 1, 1, 1],
        "embed_dim": [8, 16, 16, 32],
        "num_heads": [1, 1, 1, 2],
        "num_groups": [1, 1, 1, 2],
        "window_size": 2,
        "projection_dim": 32,
        "drop_path_rate": 0.0,
    }
    config = T.Florence2Config(text_config=text, vision_config=vision, image_token_id=tokenizer.image_token_id)
    image_processor = T.CLIPImageProcessor(
        size={"height": 64, "width": 64},
        do_center_crop=False,
        resample=3,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    image_processor.image_seq_length = 5  # (64 / 32)^2 spatial tokens + 1 temporal
    processor = T.Florence2Processor(
        image_processor=image_processor, tokenizer=tokenizer, post_processor_config=FLORENCE_POST_PROCESSING
    )
    return _save(folder, T.Florence2ForConditionalGeneration(config), processor)


def qwen_tokenizer() -> Any:
    """A Qwen2 tokenizer (byte-level BPE, digits one by one) with the ChatML and vision special tokens."""
    from transformers import Qwen2Tokenizer

    merges = _merges(QWEN_WORDS)
    tokenizer = Qwen2Tokenizer(
        vocab=_byte_vocab([], merges),
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL)})
    return tokenizer


def save_qwen_vl(folder: Path, version: str = "qwen2.5", *, seed: int = 0) -> Path:
    """A one-layer Qwen2.5-VL (patches of 14 px) or Qwen3-VL (``version="qwen3"``, 16 px), images of 4 to 16
    merged patches."""
    import transformers as T

    _seeded(seed)
    tokenizer = qwen_tokenizer()
    ids = dict(zip(QWEN_SPECIAL, tokenizer.convert_tokens_to_ids(list(QWEN_SPECIAL)), strict=True))
    special = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "tie_word_embeddings": True,
    }
    text = {
        **TINY_TEXT,
        "vocab_size": len(tokenizer),
        "num_key_value_heads": 1,
        "max_position_embeddings": 2048,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision = {"depth": 1, "hidden_size": 32, "intermediate_size": 32, "num_heads": 2, "out_hidden_size": 32}
    if version == "qwen3":
        patch = 16
        text |= {"head_dim": 16, "rope_scaling": {"rope_type": "default", "mrope_section": [2, 3, 3]}}
        vision |= {"num_position_embeddings": 64, "deepstack_visual_indexes": [0]}
        config: Any = T.Qwen3VLConfig(text_config=text, vision_config=vision, **special)
        net: Any = T.Qwen3VLForConditionalGeneration(config)
        processor_class, video = T.Qwen3VLProcessor, T.Qwen3VLVideoProcessor()
    else:
        patch = 14
        text |= {"rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}}
        vision |= {"fullatt_block_indexes": [0], "window_size": 56}
        config = T.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **special)
        net = T.Qwen2_5_VLForConditionalGeneration(config)
        processor_class, video = T.Qwen2_5_VLProcessor, T.Qwen2VLVideoProcessor()
    side = 2 * patch  # merged patches of side px: 4 to 16 of them
    image_processor = T.Qwen2VLImageProcessor(
        size={"shortest_edge": 4 * side * side, "longest_edge": 16 * side * side}, patch_size=patch
    )
    processor = processor_class(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video, chat_template=QWEN_TEMPLATE
    )
    return _save(folder, net, processor)


# --- scripted generation --------------------------------------------------------------------------------------
def scripted_pieces(tokenizer: Any, pieces: Sequence[tuple[str, float]]) -> tuple[list[int], list[float]]:
    """Token ids and per-token probabilities of an output written as (text, probability) pieces, each piece
    tokenized on its own (so its tokens are exactly the piece's)."""
    ids: list[int] = []
    probabilities: list[float] = []
    for text, probability in pieces:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        probabilities += [probability] * len(piece)
    return ids, probabilities


class ScriptedTokens:
    """A logits processor (pass it to ``generate`` in ``logits_processor``) that makes each row generate its
    scripted tokens, then ``end``: the step's scores become log p for the scripted token and log (1 - p) for one
    other, so greedy decoding picks it and its softmax probability is exactly p (> 0.5)."""

    def __init__(self, rows: Sequence[tuple[Sequence[int], Sequence[float]]], end: int) -> None:
        self.rows = [(list(ids), list(probabilities)) for ids, probabilities in rows]
        self.end = end
        self.start: int | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self.start is None:
            self.start = int(input_ids.shape[1])
        step = int(input_ids.shape[1]) - self.start
        out = torch.full_like(scores, -math.inf)
        for row, (ids, probabilities) in enumerate(self.rows):
            token, probability = (ids[step], probabilities[step]) if step < len(ids) else (self.end, 1.0)
            out[row, token] = math.log(probability)
            if probability < 1:
                out[row, (token + 1) % scores.shape[1]] = math.log(1 - probability)
        return out
