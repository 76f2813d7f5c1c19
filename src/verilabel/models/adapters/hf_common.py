"""What the transformers and OpenCLIP adapters share: loading (a ``--weights`` directory, the HF cache or one
download, then ``from_pretrained``), an HF image processor's resize / crop / mean / std read once at load and
redone in numpy / OpenCV for the decode threads (``ImageConfig``, ``prepare_image``), prompt ensembling with a
per-class cache (``TextEmbeddings``), and the box post-processing of the zero-shot detectors (``corners``,
``select``, ``box_labels``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from verilabel.errors import ConfigError, ModelLoadError
from verilabel.labels import Label
from verilabel.models.catalogue import CatalogueEntry
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext, SplitPredict
from verilabel.models.postprocess import box_detection
from verilabel.models.preprocess import aspect_size, center_crop_or_pad, resize_antialiased
from verilabel.models.torch_support import is_asynchronous, resolve_device
from verilabel.models.weights import hf_repo, hf_snapshot

TEXT_BATCH = 256  # prompts per text-encoder call
# What a hub snapshot needs: configs, tokenizer files, chat templates and safetensors weights (not the TF / Flax /
# .bin copies).
HF_FILES = ("*.json", "*.txt", "*.model", "*.safetensors", "*.jinja")


# --- options and loading --------------------------------------------------------------------------------------
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


def load_transformers(
    entry: CatalogueEntry, request: LoadRequest, auto_class: str, *, text: bool = True, half: bool = False
) -> tuple[Any, Any, Any]:
    """(network in eval mode on its device, processor, device) from the weights of ``entry`` or ``--weights``.
    ``text``: the model reads prompts (an image processor and a tokenizer); else only an image processor.
    ``half``: on a CUDA device the weights stay in bf16 (fp16 where the GPU has none) instead of fp32 under
    autocast: a generative model reads all its weights at every token it decodes (a 7B one holds 30 GB in fp32)."""
    directory = hf_snapshot(hf_repo(entry.weights, request.weights, name=entry.name), name=entry.name, files=HF_FILES)
    import transformers

    processor_class = transformers.AutoProcessor if text else transformers.AutoImageProcessor
    try:
        processor = processor_class.from_pretrained(directory, local_files_only=True)  # type: ignore[no-untyped-call]
        net = getattr(transformers, auto_class).from_pretrained(directory, local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load {entry.name!r} from {directory} ({type(exc).__name__}: {_first_line(exc)}). --weights "
            "takes a directory written by save_pretrained(), holding the model and its processor."
        ) from None
    if not text:
        if not hasattr(processor, "image_mean"):
            raise ModelLoadError(f"{directory} has no image processor for {entry.name!r} (save the image processor)")
    elif getattr(processor, "image_processor", None) is None or getattr(processor, "tokenizer", None) is None:
        raise ModelLoadError(
            f"{directory} has no image processor and tokenizer for {entry.name!r} (save the processor)"
        )
    device = resolve_device(request.device)
    if half and device.type == "cuda":
        import torch

        half_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return net.to(device, half_dtype).eval(), processor, device
    return net.float().eval().to(device), processor, device


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else ""


def pooled(output: Any) -> Any:
    """``get_text_features`` / ``get_image_features`` return a tensor before transformers 5, an output after."""
    return getattr(output, "pooler_output", output)


# --- images ---------------------------------------------------------------------------------------------------
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


def pad_batch(images: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """Images padded at the bottom and right to the largest height and width, and the mask of real pixels."""
    height, width = max(i.shape[0] for i in images), max(i.shape[1] for i in images)
    mask = np.zeros((len(images), height, width), dtype=bool)
    padded = []
    for n, image in enumerate(images):
        h, w = image.shape[:2]
        mask[n, :h, :w] = True
        if (h, w) != (height, width):
            canvas = np.zeros((height, width, 3), dtype=np.uint8)
            canvas[:h, :w] = image
            image = canvas
        padded.append(image)
    return padded, mask


# --- text -----------------------------------------------------------------------------------------------------
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


# --- boxes of the zero-shot detectors ------------------------------------------------------------------------
DEFAULT_NMS_IOU = 0.5
MAX_DETECTIONS = 100
PRE_NMS = 10  # NMS looks at the best PRE_NMS x max_detections boxes only (OWLv2 has 3,600 per image)


def corners(boxes: Any) -> Any:
    """(..., 4) centre-size boxes -> corner boxes, in the same units."""
    import torch

    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def select(xyxy: Any, scores: Any, labels: Any, *, floor: float, nms_iou: float | None, limit: int) -> Any:
    """Indices of the boxes kept, best first: finite, score at least ``floor``, class-wise NMS unless
    ``nms_iou`` is None or >= 1, at most ``limit``."""
    import torch

    keep = torch.nonzero((scores >= floor) & torch.isfinite(xyxy).all(dim=-1)).squeeze(1)
    keep = keep[scores[keep].argsort(descending=True)][: limit * PRE_NMS]
    if nms_iou is not None and nms_iou < 1 and keep.numel() > 1:
        from torchvision.ops import batched_nms

        keep = keep[batched_nms(xyxy[keep].float(), scores[keep].float(), labels[keep], nms_iou)]
    return keep[:limit]


def box_labels(
    xyxy: np.ndarray, scores: np.ndarray, labels: np.ndarray, classes: Sequence[str], width: int, height: int
) -> list[Label]:
    """Detections from pixel corner boxes (clipped to the image; empty ones dropped)."""
    found: list[Label] = []
    for box, score, label in zip(xyxy.tolist(), scores.tolist(), labels.tolist(), strict=True):
        detection = box_detection(classes[label], score, (box[0], box[1], box[2], box[3]), width, height)
        if detection is not None:
            found.append(detection)
    return found


def nms_option(entry: CatalogueEntry, request: LoadRequest, default: float | None) -> float | None:
    value = option(entry, request, "nms_iou", default)
    return None if value is None else float(value)


class ForwardOnClasses(SplitPredict):
    """Models whose ``forward`` scores a prepared batch against the classes asked for (CLIP and SigLIP, the
    zero-shot detectors): ``infer`` runs it (None when no class is asked), ``to_labels`` reads it out with
    ``postprocess``."""

    def forward(self, prepared: list[np.ndarray], classes: tuple[str, ...] | None = None) -> Any:
        raise NotImplementedError

    def postprocess(self, raw: Any, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        raise NotImplementedError

    def infer(self, images: Sequence[ImageItem], context: PredictContext) -> Any:
        """Queue the batch's forward (on CUDA it returns before the GPU is done); None when nothing is asked."""
        if not context.classes:
            return None
        return self.forward(self.prepared(images), context.classes)

    def to_labels(self, raw: Any, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        return [[] for _ in images] if raw is None else self.postprocess(raw, images, context)


class ZeroShotDetector(ForwardOnClasses):
    """What the transformers zero-shot detectors share besides ``ForwardOnClasses``: ``detections`` turns one
    image's pixel boxes into labels (floor, class-wise NMS, top-k)."""

    def __init__(
        self,
        net: Any,
        processor: Any,
        device: Any,
        *,
        nms_iou: float | None,
        max_detections: int,
        classes: tuple[str, ...],
    ) -> None:
        self._net, self._tokenizer, self._device = net, processor.tokenizer, device
        self.asynchronous = is_asynchronous(device)
        self._nms_iou, self._max_detections = nms_iou, max_detections
        self._classes = classes

    def detections(
        self, pixels: Any, scores: Any, labels: Any, item: ImageItem, context: PredictContext
    ) -> list[Label]:
        keep = select(
            pixels, scores, labels, floor=context.min_confidence, nms_iou=self._nms_iou, limit=self._max_detections
        )
        return box_labels(
            pixels[keep].cpu().numpy(),
            scores[keep].cpu().numpy(),
            labels[keep].cpu().numpy(),
            context.classes,
            item.width,
            item.height,
        )
