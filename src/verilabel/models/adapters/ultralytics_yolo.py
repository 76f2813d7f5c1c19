"""YOLO through ultralytics: detection (COCO, Open Images V7), instance segmentation, pose, ImageNet
classification, and the open-vocabulary YOLO-World and YOLOE.

The hot path never calls ``YOLO.predict`` (one image at a time, with its own preprocessing threads): the decode
pool letterboxes each image to the square model input (uint8, OpenCV), the model thread runs ONE forward of the
underlying ``nn.Module`` per batch, then ultralytics' own NMS, and boxes, masks and keypoints are mapped back to
the original image exactly (``Letterbox``). A classifier takes ultralytics' centre crop instead
(``UltralyticsClassifier``).

Heads trained both ways (YOLOv10, YOLO26, YOLOE-26) carry a one-to-many branch, decoded for NMS, and the NMS-free
one-to-one branch, whose forward ends with a top-k: its ``max_det`` best rows as ``x1 y1 x2 y2 score class
extra...``. Ultralytics' own predict runs the one-to-many branch and NMS unless told ``nms=False``: so does this
adapter unless ``end2end`` is set, and then keeps the rows above the score floor as they come, with no NMS
(``_choose_head``; ``non_max_suppression(end2end=True)`` only filters). That top-k runs in torch after the
network, so that ONNX Runtime can run the rest (``_split_top_k``). As ultralytics' predict, YOLOE's NMS (or
top-k) is class-agnostic (``agnostic``).

Open vocabulary: YOLO-World scores boxes against CLIP ViT-B/32 text embeddings, YOLOE against MobileCLIP ones.
The text encoder is loaded on first use from its own weights file (cached under ``VERILABEL_HOME/weights``, one
download attempt; ``--model-option text_encoder=FILE`` gives a local copy) and embeds each distinct tuple of
prompts once. ``UltralyticsYolo.text_embeddings`` is the one step to override for another encoder.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from verilabel.errors import ModelLoadError
from verilabel.labels import Detection, Label, Mask
from verilabel.models.adapters.torchvision_classification import top_classification
from verilabel.models.catalogue import CatalogueEntry, vocabulary_file
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext, SplitPredict
from verilabel.models.postprocess import box_detection, keypoints_detection
from verilabel.models.preprocess import Letterbox, letterbox, resize_shorter, to_batch
from verilabel.models.runtimes import Core, RuntimeChoice, TorchCore, accelerate, unsupported
from verilabel.models.torch_support import full_precision, inference, is_asynchronous, resolve_device
from verilabel.models.weights import source_file

DEFAULT_IMGSZ = 640
DEFAULT_IOU = 0.7  # ultralytics' predict default
DEFAULT_MAX_DET = 300
DEFAULT_BATCH = 16

# The text encoders of the open-vocabulary families, by the name ultralytics gives them (``WorldModel`` always
# uses CLIP ViT-B/32; a YOLOE checkpoint names its own in ``text_model``). OpenAI's CLIP file is a TorchScript
# archive that open_clip rebuilds as a plain module; the MobileCLIP ones are TorchScript text encoders.
TEXT_ENCODERS = {
    "clip:ViT-B/32": "url:https://openaipublic.azureedge.net/clip/models/"
    "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    "mobileclip:blt": "url:https://github.com/ultralytics/assets/releases/download/v8.3.0/mobileclip_blt.ts",
    "mobileclip2:b": "url:https://github.com/ultralytics/assets/releases/download/v8.4.0/mobileclip2_b.ts",
}


# --- letterbox ------------------------------------------------------------------------------------------------


# --- ultralytics, quietly ---------------------------------------------------------------------------------------
def _import_ultralytics() -> None:
    """Import ultralytics with no downloads, auto-installs, network checks or banners, and a writable config folder.

    Its import also sets ``OMP_NUM_THREADS=1`` (for every later subprocess) and ``cv2.setNumThreads(0)`` for the
    whole process: both are undone, they would slow the decode pool and CPU models beside this one. Its
    ``utils.patches`` replaces ``PIL.Image.open`` with a version that, on a file PIL cannot identify, tries to
    install ``pi-heif`` and raises ModuleNotFoundError: the original is put back, so a corrupt image is still
    reported as "not an image"."""
    if "ultralytics.utils" in sys.modules:
        _undo_image_open_patch()  # imported elsewhere first (a user's code, a test): the patch may be fresh
        return
    import cv2
    import torch

    from verilabel.settings import Settings

    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ.setdefault("YOLO_VERBOSE", "false")
    if not os.environ.get("YOLO_CONFIG_DIR"):
        folder = Settings.from_env().home / "ultralytics"
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["YOLO_CONFIG_DIR"] = str(folder)
    omp, threads, cv_threads = os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads(), cv2.getNumThreads()
    import ultralytics.utils
    import ultralytics.utils.patches  # noqa: F401  (it patches on import: import it now, then undo that)

    _undo_image_open_patch()
    if omp is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    cv2.setNumThreads(cv_threads)


def _undo_image_open_patch() -> None:
    from PIL import Image

    patches = sys.modules.get("ultralytics.utils.patches")
    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is not original:
        Image.open = original


def read_checkpoint(path: Path) -> Any:
    """The ``nn.Module`` of an ultralytics ``.pt`` checkpoint (a pickle: only load files you trust), fp32, eval."""
    _import_ultralytics()
    from ultralytics.nn.tasks import load_checkpoint

    try:
        net, _ = load_checkpoint(str(path), device="cpu")  # type: ignore[no-untyped-call]
    except Exception as exc:
        message = str(exc).strip().splitlines()[0].removeprefix("ERROR ❌️ ") if str(exc).strip() else ""
        raise ModelLoadError(
            f"cannot read YOLO weights {path} ({type(exc).__name__}: {message}); pass an ultralytics .pt file"
        ) from None
    return net


def class_names(net: Any) -> tuple[str, ...]:
    names = getattr(net, "names", None) or {}
    if isinstance(names, dict):
        return tuple(str(names[i]) for i in sorted(names))
    return tuple(str(name) for name in names)


def read_vocabulary(weights: str, entry: CatalogueEntry, options: dict[str, Any]) -> tuple[str, ...] | None:
    """The class names stored in a (fine-tuned) ultralytics checkpoint passed as ``--weights``."""
    net = read_checkpoint(source_file(entry.weights, weights, name=entry.name))
    return class_names(net) or None


def _kind(net: Any) -> str:
    from ultralytics.nn.tasks import ClassificationModel, PoseModel, SegmentationModel, WorldModel, YOLOEModel

    if isinstance(net, ClassificationModel):
        return "classify"
    if isinstance(net, YOLOEModel):
        return "yoloe"
    if isinstance(net, WorldModel):
        return "world"
    if isinstance(net, PoseModel):
        return "pose"
    if isinstance(net, SegmentationModel):
        return "segment"
    return "detect"


# What each catalogue family and task needs from the checkpoint's network.
_FAMILY_KINDS = {"yolo-world": {"world"}, "yoloe": {"yoloe"}}
_TASK_KINDS = {
    "detection": {"detect", "segment", "pose", "world", "yoloe"},
    "segmentation": {"segment", "yoloe"},
    "keypoints": {"pose"},
    "classification": {"classify"},
}


def _check_kind(net: Any, entry: CatalogueEntry, path: Path) -> str:
    kind = _kind(net)
    needed = _FAMILY_KINDS.get(entry.family, {"detect", "segment", "pose", "classify"})
    for task in entry.tasks:
        needed = needed & _TASK_KINDS.get(task, needed)
    if kind not in needed:
        raise ModelLoadError(
            f"{path} holds a YOLO {kind} model, but {entry.name!r} needs a {' or '.join(sorted(needed))} model: "
            "pick the catalogue entry that matches the weights"
        )
    if kind == "yoloe" and hasattr(net.model[-1], "lrpc"):
        raise ModelLoadError(f"{path} is a prompt-free YOLOE (-pf) model; {entry.name!r} needs the text-prompt one")
    return kind


# --- text encoders --------------------------------------------------------------------------------------------
class _OpenAIClipText:
    """OpenAI CLIP's text tower (YOLO-World), rebuilt by open_clip from OpenAI's checkpoint; unit-norm output."""

    def __init__(self, path: Path, device: Any) -> None:
        import open_clip

        self._model = open_clip.load_openai_model(str(path), precision="fp32", device=device).eval()
        self._tokenize = open_clip.tokenize
        self._device = device

    def __call__(self, texts: Sequence[str]) -> Any:
        import torch

        with torch.inference_mode():
            features = self._model.encode_text(self._tokenize(list(texts)).to(self._device)).float()
        return features / features.norm(dim=-1, keepdim=True)


class _TorchScriptText:
    """A TorchScript text encoder over CLIP tokens (YOLOE's MobileCLIP), used as ultralytics uses it."""

    def __init__(self, path: Path, device: Any) -> None:
        import open_clip
        import torch

        self._encoder = torch.jit.load(str(path), map_location=device)  # type: ignore[no-untyped-call]
        self._tokenize = open_clip.tokenize  # the CLIP BPE tokenizer (ships with open_clip), as clip.tokenize
        self._device = device

    def __call__(self, texts: Sequence[str]) -> Any:
        import torch

        with torch.inference_mode():
            return self._encoder(self._tokenize(list(texts)).to(self._device)).float()


def _load_text_encoder(variant: str, override: str | None, *, name: str, device: Any) -> Any:
    source = TEXT_ENCODERS.get(variant)
    if source is None:
        raise ModelLoadError(f"{name!r} uses the text encoder {variant!r}, which verilabel does not know")
    try:
        import open_clip  # noqa: F401
    except ImportError:
        raise ModelLoadError(
            f"{name!r} embeds its prompts with open_clip's tokenizer: `pip install 'verilabel[open-clip]'`"
        ) from None
    path = source_file(source, override, name=f"{name} text encoder ({variant})")
    try:
        with warnings.catch_warnings():  # torch.jit is deprecated, but these encoders ship only as TorchScript
            warnings.simplefilter("ignore", FutureWarning)
            return _OpenAIClipText(path, device) if variant.startswith("clip:") else _TorchScriptText(path, device)
    except Exception as exc:
        raise ModelLoadError(f"cannot load the {variant} text encoder of {name!r} from {path}: {exc}") from None


# --- the adapter ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class YoloOptions:
    """``--model-option`` keys (over the catalogue entry's ``options``)."""

    imgsz: int = DEFAULT_IMGSZ  # the square model input; a multiple of 32
    iou: float = DEFAULT_IOU  # NMS overlap threshold
    max_det: int = DEFAULT_MAX_DET  # detections kept per image
    batch_size: int = DEFAULT_BATCH
    text_encoder: str | None = None  # a local file replacing the default text encoder's weights
    end2end: bool = False  # YOLOv10 / YOLO26: the NMS-free one-to-one head instead of one-to-many + NMS
    # One box per place whatever its class (NMS, or the end-to-end top-k, across classes). None: as ultralytics'
    # own predict, which does so for YOLOE only (overlapping prompts, "car" and "vehicle", would box twice).
    agnostic: bool | None = None

    @classmethod
    def of(cls, entry: CatalogueEntry, request: LoadRequest) -> YoloOptions:
        given = {**entry.options, **request.options}
        try:
            options = cls(
                imgsz=int(given.get("imgsz", DEFAULT_IMGSZ)),
                iou=float(given.get("iou", DEFAULT_IOU)),
                max_det=int(given.get("max_det", DEFAULT_MAX_DET)),
                batch_size=int(given.get("batch_size", DEFAULT_BATCH)),
                text_encoder=str(given["text_encoder"]) if given.get("text_encoder") else None,
                end2end=_flag(given.get("end2end", False)),
                agnostic=None if given.get("agnostic") in (None, "") else _flag(given["agnostic"]),
            )
        except (TypeError, ValueError) as exc:
            raise ModelLoadError(f"bad option for {entry.name!r}: {exc}") from None
        if options.imgsz <= 0 or options.imgsz % 32:
            raise ModelLoadError(f"imgsz for {entry.name!r} must be a positive multiple of 32, got {options.imgsz}")
        if not 0 <= options.iou <= 1:
            raise ModelLoadError(f"iou for {entry.name!r} must be in [0, 1], got {options.iou}")
        return options


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes")


@dataclass
class RawOutput:
    """What one forward returns: decoded predictions (B x (4 + classes + extra) x anchors, or B x K x (6 + extra)
    for end-to-end heads) in model-input pixels, and the mask prototypes (B x 32 x H/4 x W/4) of segmenters."""

    predictions: Any
    protos: Any = None


# infer's result: the forward's outputs, the class names they index, the class ids NMS keeps (None: all)
Inferred = tuple[RawOutput, tuple[str, ...], list[int] | None]


class UltralyticsYolo(SplitPredict):
    def __init__(
        self,
        entry: CatalogueEntry,
        net: Any,
        kind: str,
        device: Any,
        options: YoloOptions,
        core: Core | None = None,
        runtime: RuntimeChoice | None = None,
        names: tuple[str, ...] | None = None,
        top_k: Callable[[Any], Any] | None = None,
    ) -> None:
        self._net = net
        self._top_k = top_k  # an end-to-end head's own selection, run after the network (``_split_top_k``)
        self._core = core or TorchCore(_predictions(net))  # the network, or its ONNX Runtime session
        self.runtime = runtime or RuntimeChoice("torch")
        self._head = net.model[-1]
        self._kind = kind
        self._device = device
        self.asynchronous = is_asynchronous(device)
        self._options = options
        self._entry = entry
        self._names = () if entry.zero_shot else names or class_names(net) or entry.vocabulary
        spec = entry.spec(batch_size=options.batch_size, input_size=options.imgsz)
        self.spec = spec if entry.zero_shot else dataclasses.replace(spec, vocabulary=self._names)
        self._text_encoder: Any = None
        self._prompt_cache: dict[tuple[str, ...], Any] = {}
        self._prompts: tuple[str, ...] | None = None
        kpt_shape = getattr(net, "kpt_shape", None) or (0, 0)
        self._keypoint_names = (
            vocabulary_file("coco-keypoints")
            if kpt_shape[0] == 17
            else tuple(f"keypoint_{i}" for i in range(kpt_shape[0]))
        )

    # -- open vocabulary
    def text_embeddings(self, classes: tuple[str, ...]) -> Any:
        """Unit-norm text-encoder embeddings of the prompts, one row per class (N x 512, on the model's device).

        The one step that needs the text encoder's own weights: override it to use another encoder (tests inject
        known embeddings here). What follows (YOLOE's prompt head, the model's contrastive head) is the model's."""
        if self._text_encoder is None:
            variant = getattr(self._net, "text_model", "mobileclip:blt") if self._kind == "yoloe" else "clip:ViT-B/32"
            self._text_encoder = _load_text_encoder(
                variant, self._options.text_encoder, name=self._entry.name, device=self._device
            )
        return self._text_encoder(classes)

    def use_prompts(self, classes: tuple[str, ...]) -> None:
        """Point the network at these prompts; their embeddings are computed once per distinct tuple."""
        if not self._entry.zero_shot or classes == self._prompts:
            return
        import torch

        embeddings = self._prompt_cache.get(classes)
        if embeddings is None:
            raw = self.text_embeddings(classes).to(self._device, torch.float32).reshape(1, len(classes), -1)
            if self._kind == "yoloe":
                with torch.inference_mode():
                    raw = self._head.get_tpe(raw)  # YOLOE's own prompt head (reprta), as its get_text_pe does
            embeddings = self._prompt_cache[classes] = raw
        if self._kind == "yoloe":
            self._net.pe = embeddings
        else:
            self._net.txt_feats = embeddings
        self._head.nc = len(classes)
        self._prompts = classes

    # -- the engine's interface
    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Runs in the decode pool: the letterboxed square model input, still uint8."""
        return letterbox(image, self._options.imgsz)

    def forward(self, images: list[np.ndarray]) -> RawOutput:
        """One forward of the network on the batch (bf16 / fp16 autocast on CUDA), no NMS."""
        batch = to_batch(images, self._device)
        with inference(self._device):
            predictions, *protos = self._core(batch)
            if self._top_k is not None:
                predictions = self._top_k(predictions.float())
            return RawOutput(predictions, *protos)

    def infer(self, images: Sequence[ImageItem], context: PredictContext) -> Inferred | None:
        """Queue the batch's forward (on CUDA it returns before the GPU is done), with the classes its outputs
        index and the ids NMS keeps; None when nothing is asked."""
        wanted = self._wanted(context) if images else None
        if wanted is None:
            return None
        self.use_prompts(context.classes)
        return self.forward(self.prepared(images)), *wanted

    def to_labels(
        self, raw: Inferred | None, images: Sequence[ImageItem], context: PredictContext
    ) -> list[list[Label]]:
        """NMS (waits for the forward), then each image's kept rows as labels on the original image."""
        if raw is None:
            return [[] for _ in images]
        output, names, class_ids = raw
        kept = self._nms(output, len(names), class_ids, context.min_confidence)
        labels: list[list[Label]] = []
        for i, (item, rows) in enumerate(zip(images, kept, strict=True)):
            protos = output.protos[i] if output.protos is not None and context.task == "segmentation" else None
            labels.append(self._labels(item, rows, names, protos, context.task))
        return labels

    def _wanted(self, context: PredictContext) -> tuple[tuple[str, ...], list[int] | None] | None:
        """The class names the outputs index and the ids NMS keeps (None: all); None when no class is wanted."""
        if not context.classes:
            return None
        if self._entry.zero_shot:
            return context.classes, None
        wanted = set(context.classes)
        ids = [i for i, name in enumerate(self._names) if name in wanted]
        if not ids:
            return None
        return self._names, (ids if len(ids) < len(self._names) else None)

    # -- post-processing
    def _nms(self, raw: RawOutput, num_classes: int, class_ids: list[int] | None, floor: float) -> list[Any]:
        import torchvision  # noqa: F401  (ultralytics' NMS uses torchvision's kernel once it is imported: faster)
        from ultralytics.utils.nms import non_max_suppression

        return non_max_suppression(  # type: ignore[no-any-return]
            raw.predictions.float(),
            conf_thres=floor,
            iou_thres=self._options.iou,
            classes=class_ids,
            max_det=self._options.max_det,
            nc=num_classes,
            agnostic=bool(self._options.agnostic),
            end2end=bool(getattr(self._head, "end2end", False)),
        )

    def _labels(self, item: ImageItem, rows: Any, names: tuple[str, ...], protos: Any, task: str) -> list[Label]:
        """One image's kept rows (x1 y1 x2 y2 score class extra..., input pixels) as labels on the original image."""
        if len(rows) == 0:
            return []
        box = Letterbox.of(item.width, item.height, self._options.imgsz)
        corners = box.to_original(rows[:, :4].cpu().numpy())
        scores = rows[:, 4].cpu().numpy()
        classes = rows[:, 5].cpu().numpy().astype(int)
        extra = rows[:, 6:]
        logits = None
        if protos is not None:  # mask logits at prototype resolution: coefficients x prototypes
            channels = protos.shape[0]
            logits = (extra[:, :channels] @ protos.float().reshape(channels, -1)).reshape(len(rows), *protos.shape[1:])
            logits = logits.cpu().numpy()
        points = None
        if task == "keypoints" and self._keypoint_names:
            points = extra.reshape(len(rows), len(self._keypoint_names), -1).cpu().numpy()
            points[..., :2] = box.to_original(points[..., :2])
        labels: list[Label] = []
        for j, cls in enumerate(classes):
            xyxy = (float(corners[j, 0]), float(corners[j, 1]), float(corners[j, 2]), float(corners[j, 3]))
            name, score = names[cls], float(scores[j])
            found: Detection | None
            if logits is not None:
                found = _with_mask(box_detection(name, score, xyxy, item.width, item.height), box, logits[j], item)
            elif points is not None:
                found = keypoints_detection(name, score, xyxy, points[j], self._keypoint_names, item.width, item.height)
            else:
                found = box_detection(name, score, xyxy, item.width, item.height)
            if found is not None:
                labels.append(found)
        return labels


def _with_mask(detection: Detection | None, box: Letterbox, logits: np.ndarray, item: ImageItem) -> Detection | None:
    """The detection with its mask over its own pixel rectangle in the full image (also when the model saw a
    smaller decode); None when the mask comes out empty (as ultralytics drops mask-less detections)."""
    if detection is None:
        return None
    rect = detection.box.to_pixels(item.full_width, item.full_height)
    crop = box.mask_crop(logits, rect, (item.width / item.full_width, item.height / item.full_height))
    if not crop.any():
        return None
    return Detection(detection.label, detection.box, detection.confidence, mask=Mask(crop))


class UltralyticsClassifier(SplitPredict):
    """An ultralytics classifier (YOLO26-cls): the top class among those asked for, with the top-5 as ``scores``
    (``top_classification``, as verilabel's other ImageNet classifiers).

    Its input is ultralytics' ``classify_transforms``: the shorter side resized to ``imgsz`` (PIL bilinear, as
    torchvision's ``Resize`` does to the PIL image ultralytics hands it), the centred square, pixels in [0, 1]
    (mean 0, std 1: no ImageNet normalisation). Its head already returns softmax probabilities."""

    def __init__(
        self,
        entry: CatalogueEntry,
        net: Any,
        names: tuple[str, ...],
        device: Any,
        options: YoloOptions,
        core: Core | None = None,
        runtime: RuntimeChoice | None = None,
    ) -> None:
        self._core = core or TorchCore(_predictions(net))  # the network, or its ONNX Runtime session
        self.runtime = runtime or RuntimeChoice("torch")
        self._device = device
        self.asynchronous = is_asynchronous(device)
        self._size = options.imgsz
        spec = entry.spec(batch_size=options.batch_size, input_size=options.imgsz)
        self.spec = dataclasses.replace(spec, vocabulary=names)
        self._index = {name: i for i, name in enumerate(names)}

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Runs in the decode pool: the resized centre square, still uint8."""
        return centre_square(resize_shorter(image, self._size), self._size)

    def forward(self, images: list[np.ndarray]) -> Any:
        """Class probabilities, one row per image."""
        batch = to_batch(images, self._device)
        with inference(self._device):
            return self._core(batch)[0]

    def infer(self, images: Sequence[ImageItem], context: PredictContext) -> Any:
        return self.forward(self.prepared(images)) if images and context.classes else None

    def to_labels(self, raw: Any, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        if raw is None:
            return [[] for _ in images]
        probabilities = raw.float().cpu().numpy()
        allowed = np.array([self._index[c] for c in context.classes if c in self._index], dtype=np.int64)
        names = self.spec.vocabulary
        return [top_classification(row, names, allowed, context.min_confidence) for row in probabilities]


def centre_square(image: np.ndarray, size: int) -> np.ndarray:
    """The centred ``size`` x ``size`` window of an image at least that large, its offsets rounded as
    torchvision's ``CenterCrop`` rounds them (``round``: half to even)."""
    height, width = image.shape[:2]
    top, left = round((height - size) / 2), round((width - size) / 2)
    return image[top : top + size, left : left + size]


def _split_top_k(head: Any) -> Callable[[Any], Any] | None:
    """An end-to-end head ends its forward with a top-k (``Detect.postprocess``: the ``max_det`` best (anchor,
    class) pairs as ``x1 y1 x2 y2 score class extra...`` rows). Exported, that top-k is ONNX Runtime's, which
    orders and picks near-equal scores its own way: the export would not match torch, and ``auto`` would fall
    back to torch. So the network stops before it (the head returns every anchor's decoded row) and the adapter
    runs the head's own top-k in torch after it, whichever runtime ran the network. None for other heads."""
    if not getattr(head, "end2end", False):
        return None
    top_k: Callable[[Any], Any] = head.postprocess
    head.postprocess = _every_row  # an instance attribute: shadows the class's method in the head's forward
    return top_k


def _every_row(predictions: Any) -> Any:
    return predictions


def _choose_head(net: Any, options: YoloOptions) -> None:
    """Heads trained both ways (YOLOv10, YOLO26) run one-to-many + NMS unless ``end2end`` is asked for: what
    ultralytics' own predict does by default (its ``nms=None``). Fusing then drops the other branch. An
    end-to-end head (chosen, or the only one a checkpoint kept) gets what ultralytics' predictor sets on it."""
    head = net.model[-1]
    if getattr(head, "one2one_cv2", None) is not None and getattr(head, "cv2", None) is not None:
        head.end2end = options.end2end
    if getattr(head, "end2end", False):
        head.max_det = max(options.max_det, DEFAULT_MAX_DET)  # its top-k, before any class filtering
        head.agnostic_nms = bool(options.agnostic)  # its top-k's "one class per anchor"


def _names_for(net: Any, entry: CatalogueEntry, request: LoadRequest) -> tuple[str, ...]:
    """The names of the class ids the network outputs: the checkpoint's own for ``--weights`` (the registry read
    them there too), the entry's vocabulary for the catalogue's weights when it has as many (it is index-aligned
    with their class ids, and the registry checked the run's classes against it: ultralytics' ImageNet
    checkpoints spell some classes unlike torchvision's list)."""
    own = class_names(net)
    if request.weights is None and entry.vocabulary and len(entry.vocabulary) == len(own):
        return entry.vocabulary
    return own or entry.vocabulary


def load(request: LoadRequest, entry: CatalogueEntry) -> UltralyticsYolo | UltralyticsClassifier:
    options = YoloOptions.of(entry, request)
    path = source_file(entry.weights, request.weights, name=entry.name)
    net = read_checkpoint(path)
    kind = _check_kind(net, entry, path)
    names = () if entry.zero_shot else _names_for(net, entry, request)
    if kind == "classify":
        return _load_classifier(request, entry, net, names, options)
    # NMS drops the classes not asked for before it keeps its top boxes: the run's cap holds for any class subset.
    options = dataclasses.replace(options, max_det=request.detection_limit(options.max_det))
    if options.agnostic is None:
        options = dataclasses.replace(options, agnostic=kind == "yoloe")
    _choose_head(net, options)
    device = resolve_device(request.device)
    net = net.fuse(verbose=False).eval().to(device)  # conv + batch norm folded; YOLOE's prompts stay unfused
    end2end = bool(getattr(net.model[-1], "end2end", False))
    top_k = _split_top_k(net.model[-1])
    if entry.zero_shot:
        core, runtime = None, unsupported(entry.name, request, "its prompts change from run to run: torch runs it")
    else:
        core, runtime = accelerate(
            _predictions(net),
            request=request,
            device=device,
            name=entry.name,
            shape=(1, 3, options.imgsz, options.imgsz),
            settings={"end2end": end2end, "top_k": "after the network" if end2end else None},
        )
    full_precision(net.model[-1])  # the head decodes boxes (and masks, keypoints): in fp32 under autocast
    model = UltralyticsYolo(entry, net, kind, device, options, core, runtime, names, top_k)
    if entry.zero_shot and request.classes:
        model.use_prompts(tuple(request.classes))  # fail fast on a missing text encoder; warm the cache
    return model


def _load_classifier(
    request: LoadRequest, entry: CatalogueEntry, net: Any, names: tuple[str, ...], options: YoloOptions
) -> UltralyticsClassifier:
    device = resolve_device(request.device)
    net = net.fuse(verbose=False).eval().to(device)
    core, runtime = accelerate(
        _predictions(net), request=request, device=device, name=entry.name, shape=(1, 3, options.imgsz, options.imgsz)
    )
    full_precision(net.model[-1])  # the softmax over 1000 classes: in fp32 under autocast
    return UltralyticsClassifier(entry, net, names, device, options, core, runtime)


def _predictions(net: Any) -> Any:
    from verilabel.models.adapters.network_parts import YoloPredictions

    return YoloPredictions(net)
