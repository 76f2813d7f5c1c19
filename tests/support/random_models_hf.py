"""Random-weight transformers and OpenCLIP models saved the way their libraries save them, offline, for tests and
GPU benchmarks.

Each ``save_*(folder, ..., size)`` writes a directory (model + processor, tokenizer included) and returns what to
pass as ``--weights``. ``tiny``: one or two layers and small widths, for tests (a save + load takes about a
second). ``full``: the real architecture at its real input size (CLIP ViT-B/32, SigLIP base/16-224, OWL-ViT
base/32, OWLv2 base/16 at 960, Grounding DINO Swin-T, OmDet-Turbo Swin-T, OpenCLIP ViT-B-32), for speed
measurements. Tokenizers are built locally with the ``tokenizers`` library: byte-level (CLIP, SigLIP) or
character WordPiece (BERT) vocabularies that encode any text, with special tokens where the models expect them;
``full`` CLIP tokenizers use CLIP's real BPE vocabulary when ``open_clip`` (which ships it) is installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

SIZES = ("tiny", "full")


def natural_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A photo-like RGB image to compare preprocessing on: smooth colour waves, a flat rectangle, and a band of
    fine stripes where a resize without antialiasing aliases (pure noise would make any two resizes differ)."""
    y, x = np.mgrid[0:height, 0:width]
    waves = (np.sin(x / 13 + y / 29 + seed * 0.7), np.cos(x / 17 - y / 11), np.sin((x + y) / 23))
    image = np.stack([128 + 100 * wave for wave in waves], axis=-1)
    image[height // 4 : height // 2, width // 3 : width // 2] = (250, 20, 30)
    stripes = (x // 3 + y // 4) % 2 * 255
    image[height // 2 :, : width // 3] = stripes[height // 2 :, : width // 3, None]
    return image.clip(0, 255).astype(np.uint8)


def _seeded(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _save(folder: Path, net: Any, processor: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    net.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _check_size(size: str) -> None:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")


# --- tokenizers ----------------------------------------------------------------------------------------------
def _byte_symbols() -> list[str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return list(bytes_to_unicode().values())


def _clip_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's real vocabulary and merges, from the BPE file OpenCLIP ships (what OpenAI's tokenizer builds)."""
    import gzip

    from open_clip.tokenizer import default_bpe

    with gzip.open(default_bpe()) as file:
        lines = file.read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [(a, b) for a, b in (line.split() for line in lines)]
    symbols = _byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in merges)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}, merges


# Whole words for the tiny tokenizers, so that test prompts stay within OWL's 16 tokens (other words are spelt).
WORDS = ("a", "an", "photo", "of", "the", "cat", "dog", "hot", "car", "person", "traffic", "light", "detect")


def _word_merges(words: tuple[str, ...]) -> list[tuple[str, str]]:
    """BPE merges that build each word left to right (``p h`` -> ``ph``, ``ph o`` -> ``pho``...)."""
    merges: dict[tuple[str, str], None] = {}
    for word in words:
        symbols = [*word[:-1], word[-1] + "</w>"]
        built = symbols[0]
        for symbol in symbols[1:]:
            merges[(built, symbol)] = None
            built += symbol
    return list(merges)


def clip_tokenizer(size: str = "tiny", max_length: int = 77) -> Any:
    """A ``CLIPTokenizer``: byte-level plus a few whole words (tiny), or CLIP's own BPE (full, 49,408 tokens).
    The start / end tokens come last, as in CLIP: OWL-ViT and OmDet pool the text at ``argmax(ids)``."""
    from transformers import CLIPTokenizer

    vocab: dict[str, int]
    try:
        if size != "full":
            raise ImportError
        vocab, merges = _clip_bpe()
    except ImportError:  # tiny, or no open_clip: bytes and a few words, padded to CLIP's size for full
        symbols = _byte_symbols()
        merges = _word_merges(WORDS)
        tokens = [*symbols, *(s + "</w>" for s in symbols), *dict.fromkeys("".join(m) for m in merges)]
        tokens += [f"<unused{i}>" for i in range((49406 - len(tokens)) if size == "full" else 0)]
        vocab = {token: i for i, token in enumerate([*tokens, "<|startoftext|>", "<|endoftext|>"])}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def byte_tokenizer(vocab_size: int | None = None, max_length: int = 64) -> Any:
    """A byte-level tokenizer ending each text with ``</s>``, padded with ``<pad>`` (id 0): SigLIP's layout.
    ``vocab_size`` pads the vocabulary with unused tokens to a real model's size."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    tokens = ["<pad>", "</s>", "<unk>", *_byte_symbols()]
    tokens += [f"<unused{i}>" for i in range(max(0, (vocab_size or 0) - len(tokens)))]
    backend = Tokenizer(BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=max_length
    )


# Grounding DINO reads these BERT ids as phrase separators ([CLS], [SEP], ".", "?"), so they must stay put.
BERT_SPECIAL = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1012: ".", 1029: "?"}


def bert_tokenizer(vocab_size: int = 1030) -> Any:
    """An uncased WordPiece ``BertTokenizer`` with BERT's special-token ids; letters and digits (whole and
    ``##`` continuations) spell any lowercase word, a few are whole. ``vocab_size`` 30,522 is bert-base-uncased's."""
    import string

    from transformers import BertTokenizer

    pieces = [*WORDS, *string.ascii_lowercase, *string.digits, "-", "'", ",", "/"]
    pieces = list(dict.fromkeys(pieces)) + ["##" + c for c in string.ascii_lowercase + string.digits]
    free = (i for i in range(vocab_size) if i not in BERT_SPECIAL)
    tokens = {i: f"[unused{i}]" for i in range(vocab_size)} | BERT_SPECIAL
    tokens.update(zip(free, pieces, strict=False))
    return BertTokenizer(vocab={token: i for i, token in tokens.items()}, do_lower_case=True)


def _clip_text(tokenizer: Any, **sizes: Any) -> dict[str, Any]:
    """A CLIP-style text config whose special ids match ``tokenizer`` (start / end tokens last)."""
    n = len(tokenizer)
    return {"vocab_size": n, "bos_token_id": n - 2, "eos_token_id": n - 1, "pad_token_id": n - 1, **sizes}


TINY_TOWER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}


# --- classification: CLIP, SigLIP ---------------------------------------------------------------------------
def save_clip(folder: Path, size: str = "tiny", *, seed: int = 0) -> Path:
    """CLIP ViT-B/32 (full) or a 32 px, one-layer CLIP (tiny)."""
    _check_size(size)
    import transformers as T

    _seeded(seed)
    tokenizer = clip_tokenizer(size)
    if size == "full":
        config = T.CLIPConfig(text_config=_clip_text(tokenizer))
        image_processor = T.CLIPImageProcessor()
    else:
        config = T.CLIPConfig(
            text_config=_clip_text(tokenizer, max_position_embeddings=77, **TINY_TOWER),
            vision_config={"image_size": 32, "patch_size": 8, **TINY_TOWER},
            projection_dim=16,
        )
        image_processor = T.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = T.CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return _save(folder, T.CLIPModel(config), processor)


def save_siglip(folder: Path, size: str = "tiny", *, seed: int = 0) -> Path:
    """SigLIP base/16 at 224 px (full; SigLIP 2 base/16-224 has the same architecture) or a tiny one."""
    _check_size(size)
    import transformers as T

    _seeded(seed)
    if size == "full":
        tokenizer = byte_tokenizer(vocab_size=32000, max_length=64)
        config = T.SiglipConfig(
            text_config={"vocab_size": 32000, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": None}
        )
        image_processor = T.SiglipImageProcessor()
    else:
        tokenizer = byte_tokenizer(max_length=64)
        text = {"vocab_size": len(tokenizer), "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": None}
        config = T.SiglipConfig(
            text_config={**text, **TINY_TOWER}, vision_config={"image_size": 32, "patch_size": 8, **TINY_TOWER}
        )
        image_processor = T.SiglipImageProcessor(size={"height": 32, "width": 32})
    processor = T.SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return _save(folder, T.SiglipModel(config), processor)


# --- detection: OWL-ViT, OWLv2, Grounding DINO, OmDet-Turbo ---------------------------------------------------
def save_owl(folder: Path, version: str = "owlv2", size: str = "tiny", *, seed: int = 0) -> Path:
    """OWLv2 base/16 at 960 px or OWL-ViT base/32 at 768 px (full), or a 64 px, one-layer one (tiny)."""
    _check_size(size)
    import transformers as T

    v2 = version == "owlv2"
    config_class = T.Owlv2Config if v2 else T.OwlViTConfig
    model_class = T.Owlv2ForObjectDetection if v2 else T.OwlViTForObjectDetection
    image_class = T.Owlv2ImageProcessor if v2 else T.OwlViTImageProcessor
    processor_class = T.Owlv2Processor if v2 else T.OwlViTProcessor
    _seeded(seed)
    tokenizer = clip_tokenizer(size, max_length=16)
    if size == "full":
        side = 960 if v2 else 768
        vision = {"image_size": side, "patch_size": 16} if v2 else {"image_size": side}
        config = config_class(text_config=_clip_text(tokenizer), vision_config=vision)
    else:
        side = 64
        config = config_class(
            text_config=_clip_text(tokenizer, max_position_embeddings=16, **TINY_TOWER),
            vision_config={"image_size": side, "patch_size": 16, **TINY_TOWER},
            projection_dim=32,  # OWL's class head needs projection_dim == the text hidden size
        )
    square = {"height": side, "width": side}
    processor = processor_class(image_processor=image_class(size=square, crop_size=square), tokenizer=tokenizer)
    return _save(folder, model_class(config), processor)


def save_grounding_dino(folder: Path, size: str = "tiny", *, seed: int = 0, mm: bool = False) -> Path:
    """Grounding DINO with a Swin-T backbone and BERT-base text encoder (full, the grounding-dino-tiny
    architecture) or a one-layer one (tiny); ``mm``: MM-Grounding-DINO (the architecture of MM-Grounding-DINO and
    LLMDet checkpoints: the same inputs and outputs). The box heads are not shared across decoder layers (the
    released checkpoints share them): shared ones failed to build in some transformers 5.x releases."""
    _check_size(size)
    import transformers as T

    config_class = T.MMGroundingDinoConfig if mm else T.GroundingDinoConfig
    model_class = T.MMGroundingDinoForObjectDetection if mm else T.GroundingDinoForObjectDetection
    unshared = {"decoder_bbox_embed_share": False} | ({"decoder_cls_embed_share": False} if mm else {})
    _seeded(seed)
    if size == "full":
        tokenizer = bert_tokenizer(30522)
        config = config_class(**unshared)
        image_processor = T.GroundingDinoImageProcessor()
    else:
        tokenizer = bert_tokenizer()
        swin = {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1], "out_indices": [2, 3, 4]}
        text = {"model_type": "bert", "vocab_size": len(tokenizer), "max_position_embeddings": 64, **TINY_TOWER}
        config = config_class(
            **unshared,
            backbone_config={"model_type": "swin", "window_size": 7, **swin},
            text_config=text,
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_n_points=2,
            decoder_n_points=2,
            num_queries=20,
            max_text_len=32,
        )
        image_processor = T.GroundingDinoImageProcessor(size={"shortest_edge": 96, "longest_edge": 160})
    processor = T.GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return _save(folder, model_class(config), processor)


def save_omdet(folder: Path, size: str = "tiny", *, seed: int = 0) -> Path:
    """OmDet-Turbo with timm's Swin-T at 640 px and CLIP's text tower (full, as omdet-turbo-swin-tiny-hf), or a
    tiny one on a transformers Swin (channels-first, so without the NHWC layer norms timm's Swin needs)."""
    _check_size(size)
    import transformers as T

    _seeded(seed)
    tokenizer = clip_tokenizer(size, max_length=77)
    if size == "full":
        # model_type spelt out: transformers 5.17 does not default it for OmDet's text config
        config = T.OmDetTurboConfig(text_config=_clip_text(tokenizer, model_type="clip_text_model"))
        side = 640
    else:
        side = 64
        swin = {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1], "out_indices": [2, 3, 4]}
        # the text width must equal class_embed_dim, which must differ from decoder_hidden_dim (a transformers bug)
        text = _clip_text(tokenizer, model_type="clip_text_model", max_position_embeddings=77, **TINY_TOWER)
        text["hidden_size"] = 48
        config = T.OmDetTurboConfig(
            backbone_config={"model_type": "swin", "image_size": side, "window_size": 7, **swin},
            apply_layernorm_after_vision_backbone=False,
            text_config=text,
            image_size=side,
            text_projection_in_dim=48,
            text_projection_out_dim=48,
            class_embed_dim=48,
            task_encoder_hidden_dim=32,
            num_queries=20,
            encoder_hidden_dim=32,
            vision_features_channels=[32, 32, 32],
            encoder_in_channels=[32, 64, 128],
            encoder_attention_heads=2,
            encoder_dim_feedforward=64,
            decoder_hidden_dim=32,
            decoder_num_heads=2,
            decoder_num_layers=1,
            decoder_dim_feedforward=64,
            decoder_num_points=2,
        )
    image_processor = T.DetrImageProcessor(size={"height": side, "width": side}, do_pad=False)
    processor = T.OmDetTurboProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return _save(folder, T.OmDetTurboForObjectDetection(config), processor)


# --- OpenCLIP -------------------------------------------------------------------------------------------------
TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def save_open_clip(
    folder: Path,
    size: str = "tiny",
    *,
    seed: int = 0,
    preprocess: dict[str, Any] | None = None,
    logit_bias: float | None = None,
) -> Path:
    """An OpenCLIP model directory (``open_clip_config.json`` + ``open_clip_model.safetensors``, the layout of
    the laion/* hub repositories): ViT-B-32 (full) or a one-layer 32 px CLIP (tiny). ``preprocess`` overrides
    the preprocessing config (resize mode, mean, std...); ``logit_bias`` makes it a SigLIP-style model."""
    _check_size(size)
    import open_clip
    from safetensors.torch import save_file

    _seeded(seed)
    model_cfg = open_clip.get_model_config("ViT-B-32") if size == "full" else dict(TINY_OPEN_CLIP)
    if logit_bias is not None:
        model_cfg["init_logit_bias"] = logit_bias
    model = open_clip.CLIP(**model_cfg)
    side = model_cfg["vision_cfg"]["image_size"]
    preprocess_cfg = {
        "size": side,
        "mean": list(open_clip.OPENAI_DATASET_MEAN),
        "std": list(open_clip.OPENAI_DATASET_STD),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
        **(preprocess or {}),
    }
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


# --- RF-DETR --------------------------------------------------------------------------------------------------
def save_rf_detr(
    folder: Path,
    *,
    segmentation: bool = False,
    names: tuple[str, ...] | None = None,
    square: bool = True,
    seed: int = 0,
) -> Path:
    """A tiny RF-DETR (two-layer DINOv2 backbone, one decoder layer, 10 queries) at 64 px, with the COCO-91 ids
    of Roboflow's checkpoints or ``names``; ``square``: a fixed 64 x 64 resize as Roboflow's processors have,
    else shorter side 64 / longer 96 (batches then pad)."""
    import transformers as T

    from verilabel.models.catalogue import vocabulary_file

    _seeded(seed)
    labels = names or vocabulary_file("coco-91")
    config = T.RfDetrConfig(
        backbone_config={
            "model_type": "rf_detr_dinov2",
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 8,
            "out_indices": [1, 2],
            "num_windows": 1,
        },
        d_model=32,
        decoder_ffn_dim=64,
        decoder_layers=1,
        decoder_self_attention_heads=2,
        decoder_cross_attention_heads=2,
        decoder_n_points=2,
        num_queries=10,
        group_detr=1,
        intermediate_size=32,
        c2f_num_blocks=1,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    model_class = T.RfDetrForInstanceSegmentation if segmentation else T.RfDetrForObjectDetection
    size = {"height": 64, "width": 64} if square else {"shortest_edge": 64, "longest_edge": 96}
    return _save(folder, model_class(config), T.RfDetrImageProcessor(size=size))
