"""Zero-shot image classification with transformers' image-text models: CLIP, SigLIP and SigLIP 2.

The class names become prompts, and each image gets the best-matching class. CLIP averages the text embeddings
of several prompt templates into one per class; SigLIP uses one template, its sigmoid scores being calibrated on
single prompts. Class embeddings are computed once per class and cached. CLIP's scores are a softmax over the
classes asked for; SigLIP's are sigmoids, each class scored on its own (they need not sum to one). A label carries
the top-5 ``[class, score]`` pairs in its ``scores`` attribute.

The pieces the other zero-shot adapters share live here too: ``load_transformers`` (a ``--weights`` directory, the
HF cache or one download, then ``from_pretrained``), ``ImageConfig`` + ``prepare_image`` (an HF image processor's
resize / crop / mean / std read once at load, the resize redone in numpy / OpenCV for the decode threads), and
``TextEmbeddings`` (prompt ensembling with a per-class cache). OpenCLIP (``open_clip``) reuses the classifier.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from verilabel.errors import ConfigError, ModelLoadError
from verilabel.labels import Classification, Label
from verilabel.models.catalogue import CatalogueEntry
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext
from verilabel.models.preprocess import to_batch
from verilabel.models.torch_support import inference, resolve_device
from verilabel.models.weights import hf_repo, hf_snapshot

# A few of the prompts OpenAI's CLIP paper ensembles for ImageNet: averaging them gains a point or more of
# zero-shot accuracy over "a photo of a {}." alone.
CLIP_TEMPLATES = (
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of the large {}.",
    "a photo of the small {}.",
    "a cropped photo of a {}.",
    "a close-up photo of a {}.",
    "a bright photo of a {}.",
)
# SigLIP's sigmoid scores are calibrated on single prompts; an average of several shifts them.
SIGLIP_TEMPLATES = ("a photo of a {}.",)
TOP_K = 5  # [class, score] pairs kept in a label's ``scores`` attribute
TEXT_BATCH = 256  # prompts per text-encoder call
DEFAULT_BATCH = 32
# What a hub snapshot needs: configs, tokenizer files and safetensors weights (not the TF / Flax / .bin copies).
HF_FILES = ("*.json", "*.txt", "*.model", "*.safetensors")


# --- options and loading (shared by the transformers adapters) ------------------------------------------------
def option(entry: CatalogueEntry, request: LoadRequest, key: str, default: Any) -> Any:
    """A model option: ``--model-option KEY=VALUE`` first, then the catalogue entry's ``options``, else default."""
    return request.options.get(key, entry.options.get(key, default))


def templates_option(entry: CatalogueEntry, request: LoadRequest, default: Sequence[str]) -> tuple[str, ...]:
    templates = option(entry, request, "templates", default)
    if isinstance(templates, str):
        templates = [templates]
    if not templates or not all(isinstance(t, str) and "{}" in t for t in templates):
        raise ConfigError("templates", f"prompt templates must be a list of strings holding {{}}, got {templates!r}")
    return tuple(templates)


def load_transformers(entry: CatalogueEntry, request: LoadRequest, auto_class: str) -> tuple[Any, Any, Any]:
    """(network in eval mode on its device, processor, device) from the weights of ``entry`` or ``--weights``."""
    directory = hf_snapshot(hf_repo(entry.weights, request.weights, name=entry.name), name=entry.name, files=HF_FILES)
    import transformers

    try:
        processor = transformers.AutoProcessor.from_pretrained(directory, local_files_only=True)  # type: ignore[no-untyped-call]
        net = getattr(transformers, auto_class).from_pretrained(directory, local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load {entry.name!r} from {directory} ({type(exc).__name__}: {_first_line(exc)}). --weights "
            "takes a directory written by save_pretrained(), holding the model and its processor."
        ) from None
    if getattr(processor, "image_processor", None) is None or getattr(processor, "tokenizer", None) is None:
        raise ModelLoadError(
            f"{directory} has no image processor and tokenizer for {entry.name!r} (save the processor)"
        )
    device = resolve_device(request.device)
    return net.float().eval().to(device), processor, device


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else ""


def pooled(output: Any) -> Any:
    """``get_text_features`` / ``get_image_features`` return a tensor before transformers 5, an output after."""
    return getattr(output, "pooler_output", output)


# --- images --------------------------------------------------------------------------------------------------
def _size_value(size: Any, key: str) -> int | None:
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return int(value) if value else None


@dataclass(frozen=True)
class ImageConfig:
    """What an image processor does to an image, read once at load: one resize (to a fixed ``size``, or keeping
    the aspect with ``shortest_edge`` / ``longest_edge``), an optional centre crop, then mean / std."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: tuple[int, int] | None = None  # (height, width), aspect not kept
    shortest_edge: int | None = None
    longest_edge: int | None = None
    crop: tuple[int, int] | None = None  # (height, width), centred; padded with ``fill`` where the image is smaller
    cubic: bool = False  # bicubic, else bilinear
    gaussian: bool = False  # antialias with a Gaussian blur then resize plainly (OWLv2), else torch's antialiasing
    fill: int = 0

    @classmethod
    def from_processor(cls, processor: Any) -> ImageConfig:
        """From a transformers image processor (its ``size`` is a dict before transformers 5, a SizeDict after)."""
        size, crop = processor.size, getattr(processor, "crop_size", None)
        height, width = _size_value(size, "height"), _size_value(size, "width")
        crop_hw = None
        if getattr(processor, "do_center_crop", False) and crop is not None:
            crop_h, crop_w = _size_value(crop, "height"), _size_value(crop, "width")
            crop_hw = (crop_h, crop_w) if crop_h and crop_w else None
        resample = getattr(processor, "resample", None)
        return cls(
            mean=tuple(float(m) for m in processor.image_mean),
            std=tuple(float(s) for s in processor.image_std),
            size=(height, width) if height and width else None,
            shortest_edge=_size_value(size, "shortest_edge"),
            longest_edge=_size_value(size, "longest_edge"),
            crop=crop_hw,
            cubic=resample == 3 or "CUBIC" in str(resample).upper(),  # PIL's BICUBIC is 3
        )

    @property
    def input_size(self) -> int | None:
        """The smallest side the model looks at (the JPEG decoder may drop detail beyond it)."""
        sides = self.crop or self.size
        return min(sides) if sides else self.shortest_edge


def prepare_image(image: np.ndarray, config: ImageConfig) -> np.ndarray:
    """The processor's resize and crop in numpy / OpenCV, still ``uint8`` (for the decode threads)."""
    height, width = image.shape[:2]
    if config.size is not None:
        out_h, out_w = config.size
    elif config.shortest_edge is not None:
        out_h, out_w = aspect_size(height, width, config.shortest_edge, config.longest_edge)
    elif config.longest_edge is not None:  # the longer side to it (OpenCLIP's "longest" mode, then padded)
        scale = config.longest_edge / max(height, width)
        out_h, out_w = round(height * scale), round(width * scale)
    else:
        out_h, out_w = height, width
    resized = resize_antialiased(image, out_w, out_h, cubic=config.cubic, gaussian=config.gaussian)
    return center_crop_or_pad(resized, *config.crop, fill=config.fill) if config.crop else resized


def aspect_size(height: int, width: int, shortest: int, longest: int | None = None) -> tuple[int, int]:
    """(height, width) after a resize of the shorter side to ``shortest`` with the longer side at most
    ``longest``, rounded exactly as transformers' ``get_size_with_aspect_ratio`` (and torchvision's Resize)."""
    size, raw = shortest, None
    if longest is not None:
        low, high = float(min(height, width)), float(max(height, width))
        if high / low * size > longest:
            raw = longest * low / high
            size = round(raw)
    if (height <= width and height == size) or (width <= height and width == size):
        return height, width
    base = raw if raw is not None else size
    if width < height:
        return int(base * height / width), size
    return size, int(base * width / height)


def resize_antialiased(
    image: np.ndarray, width: int, height: int, *, cubic: bool = False, gaussian: bool = False
) -> np.ndarray:
    """Resize an RGB ``uint8`` array as transformers' processors do: torch's antialiased bilinear / bicubic, or
    (``gaussian``) OWLv2's Gaussian blur of sigma ``(factor - 1) / 2`` followed by a plain bilinear resize.

    With OpenCV, shrinking uses its area filter in place of torch's antialiasing: against CLIPImageProcessor on
    640x480 photos with fine detail, a mean absolute difference of 0.02 in normalised units (a plain bicubic
    resize: 0.05 to 0.12), in 2 ms. Without OpenCV, PIL (antialiased too, three times slower)."""
    in_h, in_w = image.shape[:2]
    if (in_w, in_h) == (width, height):
        return image
    shrinking = width < in_w or height < in_h
    try:
        import cv2
    except ImportError:  # OpenCV is optional
        from PIL import Image

        resample = Image.Resampling.BICUBIC if cubic else Image.Resampling.BILINEAR
        return np.asarray(Image.fromarray(image).resize((width, height), resample))
    if shrinking and gaussian:
        sigma_x, sigma_y = max(0.0, (in_w / width - 1) / 2), max(0.0, (in_h / height - 1) / 2)
        if sigma_x > 0 and sigma_y > 0:  # as OWLv2's processor: no blur unless both axes shrink
            size = (2 * math.ceil(3 * sigma_x) + 1, 2 * math.ceil(3 * sigma_y) + 1)
            image = cv2.GaussianBlur(image, size, sigmaX=sigma_x, sigmaY=sigma_y)
        method = cv2.INTER_LINEAR
    elif shrinking:
        method = cv2.INTER_AREA
    else:
        method = cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=method)  # type: ignore[no-any-return]


def center_crop_or_pad(image: np.ndarray, height: int, width: int, *, fill: int = 0) -> np.ndarray:
    """The centred ``height`` x ``width`` window, padded with ``fill`` where the image is smaller (offsets as
    transformers' and torchvision's ``center_crop``)."""
    in_h, in_w = image.shape[:2]
    if in_h < height or in_w < width:
        canvas = np.full((max(in_h, height), max(in_w, width), 3), fill, dtype=np.uint8)
        top, left = (canvas.shape[0] - in_h) // 2, (canvas.shape[1] - in_w) // 2
        canvas[top : top + in_h, left : left + in_w] = image
        image, in_h, in_w = canvas, canvas.shape[0], canvas.shape[1]
    top, left = int((in_h - height) / 2.0), int((in_w - width) / 2.0)
    return image[top : top + height, left : left + width]


# --- text ----------------------------------------------------------------------------------------------------
def prompt_name(name: str) -> str:
    """A class name as it reads in a prompt: ``traffic_light`` -> ``traffic light``."""
    return " ".join(name.replace("_", " ").split())


class TextEmbeddings:
    """Unit-length text embeddings per class, each the normalised mean of its prompts' normalised embeddings
    (prompt ensembling). Computed on first use and kept: a run asks for the same classes on every batch."""

    def __init__(self, encode: Callable[[list[str]], Any], templates: Sequence[str]) -> None:
        self._encode = encode
        self._templates = tuple(templates)
        self._rows: dict[str, Any] = {}
        self._matrices: dict[tuple[str, ...], Any] = {}

    def __call__(self, classes: tuple[str, ...]) -> Any:
        """The (classes, dim) matrix of ``classes``."""
        matrix = self._matrices.get(classes)
        if matrix is None:
            import torch

            missing = [name for name in dict.fromkeys(classes) if name not in self._rows]
            if missing:
                self._rows.update(zip(missing, self._embed(missing), strict=True))
            matrix = self._matrices[classes] = torch.stack([self._rows[name] for name in classes])
        return matrix

    def _embed(self, classes: list[str]) -> Any:
        import torch
        from torch.nn.functional import normalize

        prompts = [template.format(prompt_name(name)) for name in classes for template in self._templates]
        parts = [self._encode(prompts[i : i + TEXT_BATCH]).float() for i in range(0, len(prompts), TEXT_BATCH)]
        per_prompt = normalize(torch.cat(parts), dim=-1).view(len(classes), len(self._templates), -1)
        return normalize(per_prompt.mean(dim=1), dim=-1)


# --- the classifier ------------------------------------------------------------------------------------------
class ImageTextEncoder(Protocol):
    """The two towers of a CLIP-style model and how it turns cosine similarities into logits."""

    sigmoid: bool  # scores are per-class sigmoids (SigLIP), else a softmax over the classes (CLIP)

    def encode_text(self, prompts: list[str]) -> Any: ...

    def encode_images(self, pixels: Any) -> Any: ...

    def logits(self, images: Any, texts: Any) -> Any:
        """(images, classes) logits from unit-length image and class embeddings."""
        ...


class ScaledCosine:
    """Logits as CLIP and SigLIP make them: cosine similarity times a learnt scale, plus SigLIP's learnt bias
    (whose presence makes the scores sigmoids)."""

    def __init__(self, logit_scale: Any, logit_bias: Any | None) -> None:
        self._scale = float(logit_scale.detach().exp())
        self._bias = float(logit_bias.detach()) if logit_bias is not None else 0.0
        self.sigmoid = logit_bias is not None

    def logits(self, images: Any, texts: Any) -> Any:
        return images @ texts.T * self._scale + self._bias


class TransformersEncoder(ScaledCosine):
    """``ImageTextEncoder`` over a transformers ``CLIPModel`` / ``SiglipModel`` (or any model with the same API)."""

    def __init__(self, net: Any, tokenizer: Any, device: Any) -> None:
        super().__init__(net.logit_scale, getattr(net, "logit_bias", None))
        self._net, self._tokenizer, self._device = net, tokenizer, device
        # SigLIP was trained on text padded to its full length (and pools the last position); CLIP pools the EOS.
        self._padding: str | bool = "max_length" if self.sigmoid else True
        self._max_length = int(net.config.text_config.max_position_embeddings)

    def encode_text(self, prompts: list[str]) -> Any:
        tokens = self._tokenizer(
            prompts, padding=self._padding, truncation=True, max_length=self._max_length, return_tensors="pt"
        )
        inputs = {k: v.to(self._device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        with inference(self._device):
            return pooled(self._net.get_text_features(**inputs))

    def encode_images(self, pixels: Any) -> Any:
        return pooled(self._net.get_image_features(pixel_values=pixels))


class ZeroShotClassifier:
    """One ``Classification`` per image: the best class among those asked for, with the top-5 in ``scores``."""

    def __init__(
        self,
        entry: CatalogueEntry,
        encoder: ImageTextEncoder,
        image: ImageConfig,
        device: Any,
        *,
        templates: Sequence[str],
        batch_size: int,
        classes: tuple[str, ...] = (),
    ) -> None:
        self.spec = entry.spec(batch_size=batch_size, input_size=image.input_size)
        self._encoder, self._image, self._device = encoder, image, device
        self._texts = TextEmbeddings(encoder.encode_text, templates)
        self._classes = classes  # what forward() scores when not told (the run's classes, known at load)
        if classes:
            self._texts(classes)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Runs in the decode pool: resize (and crop) to the model's input, still uint8."""
        return prepare_image(image, self._image)

    def forward(self, prepared: list[np.ndarray], classes: tuple[str, ...] | None = None) -> Any:
        """(images, classes) logits: the image tower on the batch against the cached class embeddings."""
        from torch.nn.functional import normalize

        classes = classes or self._classes
        if not classes:
            raise ValueError("forward() needs classes: pass them, or load the model with LoadRequest(classes=...)")
        texts = self._texts(classes)
        with inference(self._device):
            pixels = to_batch(prepared, self._device, mean=self._image.mean, std=self._image.std)
            images = normalize(self._encoder.encode_images(pixels).float(), dim=-1)
            return self._encoder.logits(images, texts)

    def postprocess(self, logits: Any, context: PredictContext) -> list[list[Label]]:
        probs = logits.float().sigmoid() if self._encoder.sigmoid else logits.float().softmax(dim=-1)
        return [self._classify(row, context) for row in probs.cpu().numpy()]

    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        if not context.classes:
            return [[] for _ in images]
        prepared = [item.prepared if item.prepared is not None else self.prepare(item.array) for item in images]
        return self.postprocess(self.forward(prepared, context.classes), context)

    @staticmethod
    def _classify(scores: np.ndarray, context: PredictContext) -> list[Label]:
        order = np.argsort(-scores, kind="stable")[:TOP_K]
        best = float(scores[order[0]])
        if best < context.min_confidence:
            return []
        top = [[context.classes[i], round(float(scores[i]), 4)] for i in order]
        return [Classification(context.classes[order[0]], min(best, 1.0), attributes={"scores": top})]


def load(request: LoadRequest, entry: CatalogueEntry) -> ZeroShotClassifier:
    net, processor, device = load_transformers(entry, request, "AutoModel")
    if not all(hasattr(net, attr) for attr in ("get_image_features", "get_text_features", "logit_scale")):
        raise ModelLoadError(
            f"{entry.name!r}: the weights hold a {type(net).__name__}, not an image-text model like CLIP or SigLIP"
        )
    if net.config.model_type == "siglip2":
        raise ModelLoadError(
            f"{entry.name!r}: SigLIP 2 NaFlex checkpoints (variable resolution) are not supported; use a "
            "fixed-resolution one such as google/siglip2-base-patch16-224"
        )
    encoder = TransformersEncoder(net, processor.tokenizer, device)
    return ZeroShotClassifier(
        entry,
        encoder,
        ImageConfig.from_processor(processor.image_processor),
        device,
        templates=templates_option(entry, request, SIGLIP_TEMPLATES if encoder.sigmoid else CLIP_TEMPLATES),
        batch_size=int(option(entry, request, "batch_size", DEFAULT_BATCH)),
        classes=request.classes,
    )
