"""SAM, SAM 2 and SAM 3 with random weights, saved with ``save_pretrained`` (offline): pass the directory as the
segmenter's weights (``--model-option segmenter_weights=DIR`` after a detector, or ``--weights DIR`` alone).

- ``tiny``: 64 px input, 16 px patches, one or two layers: milliseconds per image, for tests.
- ``full``: the real architectures, SAM ViT-B and SAM 2.1 Hiera-S (1024 px input), for GPU benchmarks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

Size = Literal["tiny", "full"]
Kind = Literal["sam", "sam2", "sam3"]

# kind -> size -> the catalogue entry the weights stand in for
MODELS: dict[str, dict[str, str]] = {
    "sam": {"tiny": "sam-vit-base", "full": "sam-vit-base"},
    "sam2": {"tiny": "sam2.1-hiera-tiny", "full": "sam2.1-hiera-small"},
    "sam3": {"tiny": "sam3-tracker", "full": "sam3-tracker"},
}
SAM3_INPUT = 112  # px: 14 px patches, an 8 x 8 embedding, 32 x 32 mask logits
TINY_INPUT = 64  # px; tiny models see a 4 x 4 embedding and give 16 x 16 mask logits


def sam_config(size: Size) -> Any:
    from transformers import SamConfig

    if size == "full":
        return SamConfig()  # the defaults are SAM ViT-B
    return SamConfig(
        vision_config={
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "mlp_dim": 64,
            "image_size": TINY_INPUT,
            "patch_size": 16,
            "output_channels": 16,
            "window_size": 0,
            "global_attn_indexes": [0],
            "num_pos_feats": 8,  # half the prompt encoder's hidden size
        },
        prompt_encoder_config={
            "hidden_size": 16,
            "image_size": TINY_INPUT,
            "patch_size": 16,
            "image_embedding_size": TINY_INPUT // 16,
            "mask_input_channels": 4,
        },
        mask_decoder_config={"hidden_size": 16, "mlp_dim": 32, "num_attention_heads": 2, "iou_head_hidden_dim": 16},
    )


def sam2_config(size: Size) -> Any:
    from transformers import Sam2Config

    if size == "full":  # Hiera-S: the defaults (Hiera-T) with 11 blocks in stage 3
        backbone = {"blocks_per_stage": [1, 2, 11, 2], "global_attention_blocks": [7, 10, 13]}
        return Sam2Config(vision_config={"backbone_config": {"model_type": "sam2_hiera_det_model", **backbone}})
    backbone = {
        "model_type": "sam2_hiera_det_model",
        "image_size": [TINY_INPUT, TINY_INPUT],
        "hidden_size": 8,
        # the first block of a stage pools queries: it needs a window (global blocks have none)
        "blocks_per_stage": [1, 1, 2, 1],
        "embed_dim_per_stage": [8, 16, 32, 64],
        "num_attention_heads_per_stage": [1, 1, 1, 1],
        "window_size_per_stage": [2, 2, 2, 2],
        "global_attention_blocks": [3],
        "window_positional_embedding_background_size": [2, 2],
    }
    side = TINY_INPUT // 4  # the patch embedding strides by 4, each later stage by 2
    return Sam2Config(
        vision_config={
            "backbone_config": backbone,
            "backbone_channel_list": [64, 32, 16, 8],
            "backbone_feature_sizes": [[side, side], [side // 2, side // 2], [side // 4, side // 4]],
            "fpn_hidden_size": 16,
        },
        prompt_encoder_config={"hidden_size": 16, "image_size": TINY_INPUT, "patch_size": 16, "mask_input_channels": 4},
        mask_decoder_config={
            "hidden_size": 16,
            "mlp_dim": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 16,
        },
    )


def sam3_vision(size: Size) -> dict[str, Any]:
    """SAM 3's image encoder config: the real ViT (full) or a two-layer one at 112 px (tiny)."""
    if size == "full":
        return {}
    backbone = {
        "model_type": "sam3_vit_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": SAM3_INPUT,
        "patch_size": 14,
        "window_size": 4,
        "global_attn_indexes": [1],
        "pretrain_image_size": 56,
    }
    side = SAM3_INPUT // 14 * 4
    return {
        "backbone_config": backbone,
        "fpn_hidden_size": 32,
        "backbone_feature_sizes": [[side, side], [side // 2, side // 2], [side // 4, side // 4]],
    }


def sam3_tracker_config(size: Size) -> Any:
    from transformers import Sam3TrackerConfig

    if size == "full":
        return Sam3TrackerConfig()
    return Sam3TrackerConfig(
        vision_config=sam3_vision(size),
        prompt_encoder_config={"hidden_size": 32, "image_size": SAM3_INPUT, "patch_size": 14, "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": 32, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 16},
    )


def save(kind: Kind, directory: Path, size: Size = "tiny", *, seed: int = 0) -> tuple[str, Path]:
    """Build ``kind`` at ``size`` with random weights into ``directory``; returns the catalogue name it stands
    in for and the directory to pass as its weights."""
    import torch
    from transformers import Sam2Model, Sam3TrackerModel, SamModel

    torch.manual_seed(seed)
    if kind == "sam":
        net = SamModel(sam_config(size))
    elif kind == "sam2":
        net = Sam2Model(sam2_config(size))
    else:
        net = Sam3TrackerModel(sam3_tracker_config(size))
    directory.mkdir(parents=True, exist_ok=True)
    net.save_pretrained(directory)
    return MODELS[kind][size], directory


def save_sam3(directory: Path, size: Size = "tiny", *, seed: int = 0) -> Path:
    """SAM 3 (the concept segmenter: image and text encoders, DETR encoder / decoder, mask decoder) with its
    processor and a local CLIP tokenizer; tiny: one layer each, 32 wide, 12 queries, 112 px."""
    import torch
    from transformers import Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor

    from tests.support.random_models_hf import _clip_text, clip_tokenizer

    torch.manual_seed(seed)
    tokenizer = clip_tokenizer(size, max_length=32)
    if size == "full":
        config = Sam3Config(text_config=_clip_text(tokenizer, max_position_embeddings=32))
        image_processor = Sam3ImageProcessor()
    else:
        tiny = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
        config = Sam3Config(
            vision_config=sam3_vision(size),
            text_config=_clip_text(
                tokenizer, max_position_embeddings=32, num_hidden_layers=1, projection_dim=32, **tiny
            ),
            geometry_encoder_config={"num_layers": 1, **tiny},
            detr_encoder_config={"num_layers": 1, **tiny},
            detr_decoder_config={"num_layers": 1, "num_queries": 12, **tiny},
            mask_decoder_config={"hidden_size": 32, "num_attention_heads": 2},
        )
        square = {"height": SAM3_INPUT, "width": SAM3_INPUT}
        side = SAM3_INPUT // 14 * 4
        image_processor = Sam3ImageProcessor(size=square, mask_size={"height": side, "width": side})
    directory.mkdir(parents=True, exist_ok=True)
    Sam3Model(config).save_pretrained(directory)
    Sam3Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory
