"""A YOLOv8 / YOLO11 / YOLO26 detector exported to ONNX (``yolo export format=onnx``), run with onnxruntime: no
torch.

Letterboxed in the decode pool (the same ``Letterbox`` as the ultralytics adapter), one session run per batch
(per image when the export has a fixed batch of 1), NMS in numpy. Class names come from the file's metadata
(ultralytics writes ``names``) or ``--model-option names=a,b,c``. Exports with NMS built in (``nms=True``), and
those of an NMS-free head (YOLOv10, YOLO26 with ``nms=False``; ultralytics 8.4 exports their one-to-many head by
default), give ``x1 y1 x2 y2 score class`` rows and skip the NMS here; pose and segmentation exports work as
detectors (their extra channels are ignored).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from verilabel.errors import ModelLoadError
from verilabel.labels import Label
from verilabel.models.adapters.ultralytics_yolo import DEFAULT_IOU, DEFAULT_MAX_DET
from verilabel.models.catalogue import CatalogueEntry
from verilabel.models.interface import ImageItem, LoadRequest, ModelSpec, PredictContext
from verilabel.models.postprocess import box_detection
from verilabel.models.preprocess import Letterbox
from verilabel.models.runtimes import RuntimeChoice

DEFAULT_IMGSZ = 640
DEFAULT_BATCH = 8
MAX_CANDIDATES = 30_000  # boxes entering NMS per image, best first (ultralytics' max_nms)
CLASS_OFFSET = 7680.0  # shifts each class's boxes apart so one NMS pass never suppresses across classes


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression of ``x1 y1 x2 y2`` boxes: indices kept, best score first."""
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        width = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        height = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        overlap = width * height
        union = areas[best] + areas[rest] - overlap
        order = rest[overlap <= iou * np.maximum(union, 1e-9)]
    return np.asarray(keep, dtype=np.int64)


def select(
    output: np.ndarray,
    num_classes: int,
    wanted: np.ndarray,
    floor: float,
    iou: float,
    max_det: int,
    *,
    end_to_end: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw output -> kept (boxes x1 y1 x2 y2 in input pixels, scores, class ids).

    ``output`` is ``(4 + classes + extra) x anchors`` (centre x, centre y, w, h, class scores), or with
    ``end_to_end`` ``K x (6 + extra)`` rows of ``x1 y1 x2 y2 score class`` (NMS already done). ``wanted`` holds
    one bool per class id."""
    if end_to_end:
        classes = output[:, 5].astype(np.int64)
        keep = (output[:, 4] > floor) & (classes >= 0) & (classes < num_classes)
        keep[keep] = wanted[classes[keep]]
        rows = output[keep][:max_det]
        return rows[:, :4], rows[:, 4], classes[keep][:max_det]
    candidates = output.T  # anchors x channels
    class_scores = candidates[:, 4 : 4 + num_classes]
    classes = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(classes)), classes]
    keep = (scores > floor) & wanted[classes]
    boxes, scores, classes = candidates[keep, :4], scores[keep], classes[keep]
    if len(scores) > MAX_CANDIDATES:
        best = np.argsort(-scores, kind="stable")[:MAX_CANDIDATES]
        boxes, scores, classes = boxes[best], scores[best], classes[best]
    corners = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], axis=1)
    kept = nms(corners + (classes * CLASS_OFFSET)[:, None], scores, iou)[:max_det]
    return corners[kept], scores[kept], classes[kept]


def _session(path: Path, providers: list[Any]) -> Any:
    import onnxruntime

    try:
        return onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as exc:
        raise ModelLoadError(f"cannot open the ONNX model {path}: {str(exc).splitlines()[0]}") from None


def metadata_names(session: Any) -> tuple[str, ...] | None:
    """The class names ultralytics' exporter stores (``names``: a dict literal ``{0: 'person', ...}``)."""
    text = session.get_modelmeta().custom_metadata_map.get("names")
    if not text:
        return None
    try:
        names = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    if isinstance(names, dict):
        return tuple(str(names[i]) for i in sorted(names))
    if isinstance(names, list | tuple):
        return tuple(str(name) for name in names)
    return None


def _weights_file(weights: str | None, entry: CatalogueEntry) -> Path:
    if not weights:
        raise ModelLoadError(f"{entry.name!r} needs the exported model: pass --weights FILE.onnx")
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"ONNX model for {entry.name!r} not found: {path}. Pass an existing .onnx file.")
    return path


def read_vocabulary(weights: str, entry: CatalogueEntry, options: dict[str, Any]) -> tuple[str, ...] | None:
    """The class names of ``--model-option names=a,b`` or of the ONNX file's metadata (None when neither)."""
    return _names_option(options.get("names")) or metadata_names(
        _session(_weights_file(weights, entry), ["CPUExecutionProvider"])
    )


def _providers(device: str) -> list[Any]:
    """onnxruntime's execution providers for ``--device``: auto takes CUDA when this onnxruntime build has it."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    kind, _, index = device.partition(":")
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), "CPUExecutionProvider"]
    if kind == "auto":
        return ["CPUExecutionProvider"]
    raise ModelLoadError(
        f"device {device!r} asked for, but this onnxruntime has no CUDA provider (it has {', '.join(available)}): "
        "install onnxruntime-gpu or use --device cpu"
    )


def _names_option(value: Any) -> tuple[str, ...] | None:
    if value is None or value == "":
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(item).strip() for item in items)


class OnnxYolo:
    def __init__(
        self, entry: CatalogueEntry, session: Any, names: tuple[str, ...], *, iou: float, max_det: int, batch: int
    ) -> None:
        self._session = session
        provider = session.get_providers()[0]
        self.runtime = RuntimeChoice("onnx", device="cuda" if provider == "CUDAExecutionProvider" else "cpu")
        self._names = names
        self._iou, self._max_det = iou, max_det
        model_input = session.get_inputs()[0]
        self._input_name = model_input.name
        self._dtype = np.float16 if "float16" in model_input.type else np.float32
        _, _, height, width = model_input.shape
        size = _input_size(session)
        self._size_h = height if isinstance(height, int) else size[0]
        self._size_w = width if isinstance(width, int) else size[1]
        self._batched = not isinstance(model_input.shape[0], int) or model_input.shape[0] != 1
        self._end_to_end = _end_to_end(session)
        self.spec = ModelSpec(  # entry.spec() cannot: the entry's vocabulary is "whatever the file says"
            entry.name,
            entry.tasks,
            zero_shot=False,
            vocabulary=names,
            default_confidence=entry.default_confidence,
            batch_size=batch if self._batched else 1,
            input_size=min(self._size_h, self._size_w),
            version=entry.version,
            weights=entry.weights,
        )

    def check(self, path: Path) -> None:
        """One run on a grey input: the file runs here, and predicts at least as many classes as it has names."""
        try:
            output = self.forward([np.full((self._size_h, self._size_w, 3), 114, np.uint8)])
        except Exception as exc:
            raise ModelLoadError(f"the ONNX model {path} fails to run: {str(exc).splitlines()[0]}") from None
        if output.ndim != 3:
            raise ModelLoadError(f"{path} outputs shape {output.shape}; a YOLO detector outputs batch x rows x cols")
        if not self._end_to_end and output.shape[1] < 4 + len(self._names):
            raise ModelLoadError(
                f"{path} predicts {output.shape[1] - 4} classes, but {len(self._names)} names were given"
            )

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Runs in the decode pool: the letterboxed model input, still uint8."""
        return Letterbox.of(image.shape[1], image.shape[0], self._size_w, self._size_h).apply(image)

    def forward(self, images: list[np.ndarray]) -> np.ndarray:
        """Session run(s) on the batch: raw outputs, one per image along the first axis."""
        batch = (np.stack(images).transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1 / 255)).astype(self._dtype)
        if self._batched:
            return np.asarray(self._session.run(None, {self._input_name: batch})[0])
        return np.concatenate([self._session.run(None, {self._input_name: one[None]})[0] for one in batch])

    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        wanted = np.array([name in set(context.classes) for name in self._names])
        if not images or not wanted.any():
            return [[] for _ in images]
        prepared = [item.prepared if item.prepared is not None else self.prepare(item.array) for item in images]
        outputs = self.forward(prepared).astype(np.float32)
        results: list[list[Label]] = []
        for item, output in zip(images, outputs, strict=True):
            boxes, scores, classes = select(
                output,
                len(self._names),
                wanted,
                context.min_confidence,
                self._iou,
                self._max_det,
                end_to_end=self._end_to_end,
            )
            letterbox = Letterbox.of(item.width, item.height, self._size_w, self._size_h)
            corners = letterbox.to_original(boxes)
            labels: list[Label] = []
            for xyxy, score, cls in zip(corners, scores, classes, strict=True):
                found = box_detection(
                    self._names[int(cls)], float(score), (xyxy[0], xyxy[1], xyxy[2], xyxy[3]), item.width, item.height
                )
                if found is not None:
                    labels.append(found)
            results.append(labels)
        return results


def _end_to_end(session: Any) -> bool:
    """The export has NMS built in: ultralytics says so in ``end2end`` (or ``args`` ``nms``), else its output
    has the ``K x 6`` shape of such exports."""
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("end2end") == "True" or "'nms': True" in meta.get("args", ""):
        return True
    return bool(session.get_outputs()[0].shape[-1] == 6)


def _input_size(session: Any) -> tuple[int, int]:
    """(height, width) from the export's ``imgsz`` metadata, for exports with dynamic spatial axes."""
    text = session.get_modelmeta().custom_metadata_map.get("imgsz")
    try:
        size = ast.literal_eval(text) if text else DEFAULT_IMGSZ
    except (ValueError, SyntaxError):
        size = DEFAULT_IMGSZ
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])


def load(request: LoadRequest, entry: CatalogueEntry) -> OnnxYolo:
    path = _weights_file(request.weights, entry)
    session = _session(path, _providers(request.device))
    names = _names_option(request.options.get("names")) or metadata_names(session)
    if not names:
        raise ModelLoadError(
            f"{path} has no class names in its metadata: pass them in class-id order with --model-option names=a,b,c"
        )
    model = OnnxYolo(
        entry,
        session,
        names,
        iou=float(request.options.get("iou", DEFAULT_IOU)),
        # select() drops the classes not asked for before it keeps the top boxes: the run's cap always holds
        max_det=request.detection_limit(int(request.options.get("max_det", DEFAULT_MAX_DET))),
        batch=int(request.options.get("batch_size", DEFAULT_BATCH)),
    )
    model.check(path)
    return model
