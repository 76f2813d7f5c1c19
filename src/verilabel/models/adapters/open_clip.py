"""OpenCLIP zero-shot classification: the classifier of ``hf_clip`` (prompt ensembling, a softmax over the classes,
or sigmoids for SigLIP models, which carry a logit bias) over an ``open_clip`` model.

Weights: the entry's hub repository, from the HF cache or one download of the files OpenCLIP reads (what
``open_clip.create_model_from_pretrained('hf-hub:ORG/NAME')`` fetches, with verilabel's offline switch and
fail-fast message), or ``--weights DIR`` holding ``open_clip_config.json`` and the weights
(``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``), loaded through OpenCLIP's ``local-dir:``.
The image preprocessing follows the model's own ``preprocess_cfg`` (size, resize mode, interpolation, mean, std).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from verilabel.errors import ModelLoadError
from verilabel.models.adapters.hf_clip import (
    CLIP_TEMPLATES,
    DEFAULT_BATCH,
    SIGLIP_TEMPLATES,
    ScaledCosine,
    ZeroShotClassifier,
)
from verilabel.models.adapters.hf_common import ImageConfig, option, templates_option
from verilabel.models.catalogue import CatalogueEntry
from verilabel.models.interface import LoadRequest
from verilabel.models.torch_support import inference, resolve_device
from verilabel.models.weights import hf_repo, hf_snapshot

# What OpenCLIP reads from a hub repository (not the transformers-format copies many laion repos also hold).
OPEN_CLIP_FILES = ("open_clip_config.json", "open_clip_model.safetensors", "tokenizer*", "special_tokens_map.json")


class OpenClipEncoder(ScaledCosine):
    """``ImageTextEncoder`` over an OpenCLIP ``CLIP`` / ``CustomTextCLIP``."""

    def __init__(self, net: Any, tokenizer: Any, device: Any) -> None:
        super().__init__(net.logit_scale, getattr(net, "logit_bias", None))
        self._net, self._tokenizer, self._device = net, tokenizer, device

    def encode_text(self, prompts: list[str]) -> Any:
        tokens = self._tokenizer(prompts).to(self._device)
        with inference(self._device):
            return self._net.encode_text(tokens)

    def encode_images(self, pixels: Any) -> Any:
        return self._net.encode_image(pixels)


def image_config(preprocess: dict[str, Any]) -> ImageConfig:
    """OpenCLIP's inference transform (``image_transform_v2``) as an ``ImageConfig``."""
    size = preprocess.get("size", 224)
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    mode = preprocess.get("resize_mode", "shortest")
    common: dict[str, Any] = {
        "mean": tuple(float(m) for m in preprocess["mean"]),
        "std": tuple(float(s) for s in preprocess["std"]),
        "cubic": preprocess.get("interpolation", "bicubic") == "bicubic",
        "fill": int(preprocess.get("fill_color", 0)),
    }
    if mode == "squash":
        return ImageConfig(size=(height, width), **common)
    if mode == "longest":  # the longer side to the size, then centred on a square canvas of fill colour
        return ImageConfig(longest_edge=max(height, width), crop=(height, width), **common)
    return ImageConfig(shortest_edge=min(height, width), crop=(height, width), **common)


def model_location(entry: CatalogueEntry, request: LoadRequest) -> Path:
    """The local directory with ``open_clip_config.json`` and the weights: ``--weights``, or the hub snapshot."""
    repo = hf_repo(entry.weights, request.weights, name=entry.name)
    return hf_snapshot(repo, name=entry.name, files=OPEN_CLIP_FILES)


def load(request: LoadRequest, entry: CatalogueEntry) -> ZeroShotClassifier:
    directory = model_location(entry, request)
    import open_clip

    device = resolve_device(request.device)
    try:
        net = open_clip.create_model_from_pretrained(f"local-dir:{directory}", device=device, return_transform=False)
        tokenizer = open_clip.get_tokenizer(f"local-dir:{directory}")
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelLoadError(
            f"cannot load {entry.name!r} from {directory} ({type(exc).__name__}: {message}). --weights takes an "
            "OpenCLIP directory: open_clip_config.json and open_clip_model.safetensors (or .bin)."
        ) from None
    encoder = OpenClipEncoder(net.eval(), tokenizer, device)
    return ZeroShotClassifier(
        entry,
        encoder,
        image_config(net.visual.preprocess_cfg),
        device,
        templates=templates_option(entry, request, SIGLIP_TEMPLATES if encoder.sigmoid else CLIP_TEMPLATES),
        batch_size=int(option(entry, request, "batch_size", DEFAULT_BATCH)),
        classes=request.classes,
    )
