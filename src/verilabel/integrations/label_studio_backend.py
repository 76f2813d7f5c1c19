"""Label Studio's ML backend, served by verilabel: any catalogue model (or a user's own) predicts for a project.

The protocol is the one a real Label Studio 1.23 speaks (``GET /health``, ``POST /setup``, ``POST /predict``,
``POST /webhook``; ``{"results": [...]}`` back, one entry per task, in order). For each control of the project's
labeling config that targets an image, the backend runs a model:

- ``RectangleLabels``: boxes (the detection task); ``PolygonLabels``: the outlines of instance masks and
  ``BrushLabels``: the masks themselves, in Label Studio's brush RLE (the segmentation task); ``Choices``: one
  class per image (classification); ``KeyPointLabels``: the points of a keypoint model (each ``<Label>`` names a
  keypoint by ``model_index`` or by name; ``predicted_values`` there are the detection classes whose points it
  takes), each point under the box of its detection, which goes to the config's ``RectangleLabels`` marked
  ``model_skip`` (as in Label Studio's own example) unless ``model_add_bboxes="false"``;
  ``model_point_threshold`` is the floor of a point's own score.
- Labels follow the reference backends' conventions: ``predicted_values="a,b"`` on a ``<Label>`` / ``<Choice>``
  maps those model classes to it, otherwise the model class of the same name, then of the same name in another
  case. A zero-shot model is prompted with those values (or the label names).
- Several prompts of one label (``predicted_values="dog,puppy"``) give one region where their boxes overlap, and
  negative prompts (``model_negatives="toy dog,statue"`` on the control, or the backend's ``--negative``) drop the
  regions they overlap with at least their score: the rules of a run (``verilabel.models.mapping``).
- On the control: ``model_score_threshold`` (the confidence floor), ``model_skip="true"``, and ``model="NAME"``
  (a catalogue name, or a ``python:pkg.mod:factory`` the backend was started with) to run another model than
  the backend's default for it. Weights come from the command line only: nothing in a labeling config reaches
  the filesystem or imports code.
- Models are loaded once and kept (per model and classes); a task's image is fetched the way Label Studio serves
  it (relative URLs against the host from ``/setup`` or ``LABEL_STUDIO_URL``, with the access token or
  ``LABEL_STUDIO_API_KEY``); a task whose image cannot be fetched gets an empty result, and the reason is logged.
- ``model_version`` names the model, its weights and its floor, so that Label Studio does not skip a second
  model's predictions as already made.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import threading
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verilabel.errors import ConfigError, VerilabelError
from verilabel.formats.label_studio import box_value, percent, polygon_value
from verilabel.formats.label_studio_rle import brush_value
from verilabel.formats.shapes import full_image_mask, outline
from verilabel.labels import Classification, Detection, Label
from verilabel.models.interface import ImageItem, Model, PredictContext, Task
from verilabel.models.mapping import ClassMapping, parse_negatives, to_dataset_labels

log = logging.getLogger("verilabel.label_studio")

# config tag -> (result type, task the model runs)
CONTROLS: dict[str, tuple[str, Task]] = {
    "RectangleLabels": ("rectanglelabels", "detection"),
    "PolygonLabels": ("polygonlabels", "segmentation"),
    "BrushLabels": ("brushlabels", "segmentation"),
    "Choices": ("choices", "classification"),
    "KeyPointLabels": ("keypointlabels", "keypoints"),
}
FETCH_TIMEOUT = 30.0


@dataclass(frozen=True)
class ControlLabel:
    """One ``<Label>`` / ``<Choice>`` of a control."""

    value: str
    predicted: tuple[str, ...] = ()  # the model classes it stands for (``predicted_values``)
    index: int | None = None  # KeyPointLabels: which point of the model's output (``model_index``)


@dataclass(frozen=True)
class Control:
    """One control of the labeling config that the backend answers for."""

    name: str
    kind: str  # result type
    task: Task
    to_name: str
    data_key: str  # the task data field of its image (``<Image value="$image">``)
    labels: tuple[ControlLabel, ...]
    threshold: float | None = None
    model: str | None = None
    point_threshold: float = 0.0  # KeyPointLabels: the floor of a point's own score
    point_size: float = 1.0  # KeyPointLabels: the drawn size of a point
    boxes: Control | None = None  # KeyPointLabels: the RectangleLabels control its detections' boxes go to
    negatives: tuple[str, ...] = ()  # ``model_negatives``: prompts that suppress look-alikes (zero-shot models)


def _labels(tag: ET.Element) -> tuple[ControlLabel, ...]:
    return tuple(
        ControlLabel(
            item.get("value") or "",
            tuple(v.strip() for v in (item.get("predicted_values") or "").split(",") if v.strip()),
            int(index) if (index := item.get("model_index")) not in (None, "") else None,
        )
        for item in tag.iter()
        if item.tag in ("Label", "Choice") and item.get("value")
    )


def _number(tag: ET.Element, attribute: str, default: float | None) -> float | None:
    text = tag.get(attribute)
    if text in (None, ""):
        return default
    try:
        return float(text)
    except ValueError:
        problem = f"{tag.tag} {tag.get('name')!r}: {attribute}={text!r} is not a number"
        raise ConfigError("label_config", problem) from None


def parse_config(config: str) -> list[Control]:
    """The controls of a labeling config that target an ``<Image>`` (``model_skip="true"`` ones left out)."""
    try:
        root = ET.fromstring(config)
    except ET.ParseError as exc:
        raise ConfigError("label_config", f"the labeling config is not XML: {exc}") from None
    images = {
        tag.get("name"): (tag.get("value") or "").lstrip("$")
        for tag in root.iter()
        if tag.tag == "Image" and tag.get("name")
    }

    def control(tag: ET.Element) -> Control:
        kind, task = CONTROLS[tag.tag]
        to_name = tag.get("toName") or ""
        boxes = None
        if kind == "keypointlabels" and tag.get("model_add_bboxes", "true").lower() != "false":
            # a RectangleLabels the model does not answer for itself (model_skip), else its boxes would be doubled
            boxes = next(
                (
                    control(t)
                    for t in root.iter()
                    if t.tag == "RectangleLabels"
                    and t.get("toName") == to_name
                    and t.get("model_skip", "").lower() == "true"
                ),
                None,
            )
        return Control(
            name=tag.get("name") or kind,
            kind=kind,
            task=task,
            to_name=to_name,
            data_key=images[to_name],
            labels=_labels(tag),
            threshold=_number(tag, "model_score_threshold", None),
            model=tag.get("model") or None,
            point_threshold=_number(tag, "model_point_threshold", 0.0) or 0.0,
            point_size=_number(tag, "model_point_size", 1.0) or 1.0,
            boxes=boxes,
            negatives=tuple(parse_negatives([tag.get("model_negatives") or ""])),
        )

    return [
        control(tag)
        for tag in root.iter()
        if tag.tag in CONTROLS and tag.get("toName") in images and tag.get("model_skip", "").lower() != "true"
    ]


def label_map(
    control: Control,
    vocabulary: Sequence[str],
    zero_shot: bool,
    aliases: Mapping[str, Sequence[str]] | None = None,
    only: Sequence[str] = (),
) -> dict[str, str]:
    """Model class (or prompt) -> the control's label: ``predicted_values`` (else the backend's ``--alias`` for
    that label) first, then the same name, then the same name in another case. A zero-shot model's classes are
    the prompts themselves. ``only`` (the backend's ``--classes``) keeps those model classes alone. For
    ``KeyPointLabels``, whose labels name points: the classes whose points it takes (those its labels predict,
    else every class), each to itself."""
    aliases = aliases or {}
    if aliases:
        control = dataclasses.replace(
            control,
            labels=tuple(
                dataclasses.replace(label, predicted=tuple(aliases.get(label.value, ())))
                if not label.predicted
                else label
                for label in control.labels
            ),
        )
    mapping = _label_map(control, vocabulary, zero_shot)
    return {k: v for k, v in mapping.items() if k in only} if only else mapping


def class_mapping(
    mapping: Mapping[str, str], negatives: Sequence[str], vocabulary: Sequence[str], zero_shot: bool
) -> ClassMapping:
    """The control's model classes with the negatives asked for too: prompts for a zero-shot model, the
    vocabulary's classes (any case) for a fixed one; a negative that is also a label's class stays a class."""
    if not zero_shot:
        lower = {name.lower(): name for name in vocabulary}
        negatives = [lower[n.lower()] for n in negatives if n.lower() in lower]
    extra = tuple(n for n in dict.fromkeys(negatives) if n not in mapping)
    return ClassMapping((*mapping, *extra), dict(mapping), extra)


def _label_map(control: Control, vocabulary: Sequence[str], zero_shot: bool) -> dict[str, str]:
    if control.kind == "keypointlabels":
        wanted = {v for label in control.labels for v in label.predicted}
        return {name: name for name in (sorted(wanted) if zero_shot else vocabulary) if not wanted or name in wanted}
    mapping: dict[str, str] = {}
    if zero_shot:
        for label in control.labels:
            for prompt in label.predicted or (label.value,):
                mapping.setdefault(prompt, label.value)
        return mapping
    lower = {name.lower(): name for name in vocabulary}
    for label in control.labels:
        for value in label.predicted:
            if value in vocabulary:
                mapping.setdefault(value, label.value)
    for label in control.labels:
        if label.predicted:
            continue
        name = label.value if label.value in vocabulary else lower.get(label.value.lower())
        if name is not None:
            mapping.setdefault(name, label.value)
    return mapping


@dataclass
class Connection:
    """Where a project's Label Studio is, and how to authenticate to it (from ``/setup``)."""

    hostname: str | None = None
    token: str | None = None


class Backend:
    """The models and what the protocol needs; ``create_app`` serves it."""

    def __init__(
        self,
        model: str,
        *,
        weights: str | None = None,
        device: str = "auto",
        min_confidence: float | None = None,
        options: dict[str, Any] | None = None,
        runtime: str = "auto",
        allowed: Sequence[str] = (),
        classes: Sequence[str] = (),
        aliases: Mapping[str, Sequence[str]] | None = None,
        negatives: Sequence[str] = (),
        storage: Sequence[str] = (),
    ) -> None:
        from verilabel.models import registry

        self.model = model
        self.weights = weights
        self.device = device
        self.min_confidence = min_confidence
        self.options = dict(options or {})
        self.runtime = runtime
        # python: models a control's model= may name: a labeling config never imports code the operator did not list
        self.allowed = {model, *allowed}
        self.classes = tuple(classes)  # --classes: the model classes it may answer with (all, when empty)
        self.aliases = {k: tuple(v) for k, v in (aliases or {}).items()}  # --alias LABEL=CLASS,...
        self.negatives = tuple(negatives)  # --negative: for every control, besides its own model_negatives
        # --storage: object-storage prefixes whose URIs (a project on cloud storage without pre-signed URLs) this
        # backend reads with its own credentials; any other s3:// ... in a task is refused
        self.storage = tuple(storage)
        registry.resolve(model, weights, self.options)  # an unknown model fails now, not on the first request
        self._models: dict[tuple[str, tuple[str, ...]], Model] = {}
        self._lock = threading.Lock()
        self._connections: dict[str, Connection] = {}

    # -- protocol
    def setup(self, body: dict[str, Any]) -> dict[str, Any]:
        project = str(body.get("project") or "").split(".")[0]
        self._connections[project] = Connection(body.get("hostname"), body.get("access_token"))
        controls = parse_config(str(body.get("schema") or "<View/>"))
        return {"model_version": self.model_version(controls[0] if controls else None)}

    def model_version(self, control: Control | None) -> str:
        name = (control.model if control and control.model else None) or self.model
        floor = control.threshold if control and control.threshold is not None else self.min_confidence
        parts = [f"verilabel:{name}"]
        if self.weights and name == self.model:
            parts.append(f"weights={Path(self.weights).name}")
        if floor is not None:
            parts.append(f"min={floor:g}")
        return " ".join(parts)

    def predict(self, body: dict[str, Any]) -> dict[str, Any]:
        tasks = list(body.get("tasks") or [])
        controls = parse_config(str(body.get("label_config") or "<View/>"))
        project = str(body.get("project") or "").split(".")[0]
        connection = self._connections.get(project, Connection())
        results: list[list[dict[str, Any]]] = [[] for _ in tasks]
        with tempfile.TemporaryDirectory(prefix="verilabel-ls-") as folder:
            for data_key in sorted({c.data_key for c in controls}):
                items = self._images(tasks, data_key, connection, Path(folder))
                for control in (c for c in controls if c.data_key == data_key):
                    for index, regions in self._run(control, items).items():
                        results[index] += regions
        version = self.model_version(controls[0] if len(controls) == 1 else None)
        return {"results": [_prediction(regions, version) for regions in results]}

    # -- the work
    def _images(
        self, tasks: list[dict[str, Any]], data_key: str, connection: Connection, folder: Path
    ) -> dict[int, ImageItem]:
        """The tasks' images, fetched and decoded in parallel; a task whose image fails is left out (logged)."""
        from verilabel.datasets.images import decode_sized

        def one(index: int) -> tuple[int, ImageItem | None]:
            task = tasks[index]
            reference = (task.get("data") or {}).get(data_key)
            try:
                if not isinstance(reference, str):
                    raise VerilabelError(f"no image in its data field {data_key!r}")
                path = folder / f"{index}{Path(urllib.parse.urlparse(reference).path).suffix or '.img'}"
                path.write_bytes(fetch(reference, connection, self.storage))
                array, size = decode_sized(path)
            except Exception as exc:  # one task's image: never the whole batch
                log.warning("task %s: no prediction, its image cannot be read: %s", task.get("id"), exc)
                return index, None
            return index, ImageItem(int(task.get("id") or index), str(reference), array, full_size=size)

        with ThreadPoolExecutor(max_workers=8) as pool:
            return {i: item for i, item in pool.map(one, range(len(tasks))) if item is not None}

    def _model(self, name: str, classes: tuple[str, ...], task: Task) -> Model:
        from verilabel.models import registry
        from verilabel.models.interface import LoadRequest

        key = (name, classes)
        with self._lock:
            if key not in self._models:
                ref = registry.resolve(name, self.weights if name == self.model else None, self.options)
                if task not in ref.tasks:
                    raise ConfigError("model", f"{name!r} does {', '.join(ref.tasks)}, not {task}")
                request = LoadRequest(
                    weights=self.weights if name == self.model else None,
                    device=self.device,
                    classes=classes,
                    min_confidence=self.min_confidence,
                    options=self.options,
                    runtime=self.runtime,
                )
                self._models[key] = registry.load(ref, request)
            return self._models[key]

    def _run(self, control: Control, items: dict[int, ImageItem]) -> dict[int, list[dict[str, Any]]]:
        from verilabel.models import registry

        name = control.model or self.model
        if "python:" in name and name not in self.allowed:
            raise ConfigError(
                "model",
                f"control {control.name!r} names {name!r}: a control may name a catalogue model; your own model must "
                "be the backend's --model or listed with --allow-model",
            )
        ref = registry.resolve(name, self.weights if name == self.model else None, self.options)
        mapping = label_map(control, ref.vocabulary, ref.zero_shot, self.aliases, self.classes)
        if not mapping or not items:
            return {}
        classes = class_mapping(mapping, (*self.negatives, *control.negatives), ref.vocabulary, ref.zero_shot)
        model = self._model(name, classes.model_classes, control.task)
        floor = next(
            (f for f in (control.threshold, self.min_confidence, ref.default_confidence) if f is not None), 0.0
        )
        context = PredictContext(control.task, classes.model_classes, floor)
        boxes = label_map(control.boxes, ref.vocabulary, ref.zero_shot) if control.boxes else {}
        # labels reach the writer in the control's names: synonyms merged, negatives applied (as in a run)
        write = _Regions(control, {label: label for label in classes.dataset_classes}, boxes)
        order = sorted(items)
        out: dict[int, list[dict[str, Any]]] = {}
        size = max(1, model.spec.batch_size)
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            for index, labels in zip(chunk, model.predict([items[i] for i in chunk], context), strict=True):
                scored = [x for x in labels if x.confidence is None or x.confidence >= floor]
                kept = to_dataset_labels(scored, classes)
                out[index] = [region for label in kept for region in write(label, items[index])]
        return out


def fetch(reference: str, connection: Connection, storage: Sequence[str] = ()) -> bytes:
    """The bytes of a task's image: a relative URL against Label Studio's host, with its token; an absolute
    http(s) URL as it is (with the token when it is Label Studio's); an object-storage URI under one of the
    ``storage`` prefixes the operator allowed, read with this machine's credentials (with retries)."""
    from verilabel.datasets import media

    if media.is_remote(reference) and not reference.startswith(("http://", "https://")):
        if not any(reference.startswith(prefix) for prefix in storage):
            raise VerilabelError(
                f"{reference}: this backend reads object storage only under the prefixes given with --storage"
            )
        return media.read_bytes(reference)
    base = (os.environ.get("LABEL_STUDIO_URL") or connection.hostname or "").rstrip("/")
    token = connection.token or os.environ.get("LABEL_STUDIO_API_KEY")
    url = reference
    if reference.startswith("/"):
        if not base:
            raise VerilabelError(f"{reference} is relative and Label Studio's address is unknown: set LABEL_STUDIO_URL")
        url = base + reference
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise VerilabelError(f"{reference}: only http(s) and Label Studio's own URLs can be fetched")
    headers = {"Authorization": f"Token {token}"} if token and base and url.startswith(base) else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:
        return bytes(response.read())


@dataclass(frozen=True)
class _Regions:
    """A model's label as the regions of one control (a keypoint control: its points, and their box)."""

    control: Control
    mapping: dict[str, str]  # model class -> the control's label
    box_mapping: dict[str, str]  # model class -> the label of the boxes' RectangleLabels control

    def __call__(self, label: Label, item: ImageItem) -> list[dict[str, Any]]:
        name, kind = self.mapping[label.label], self.control.kind
        if isinstance(label, Classification):
            return [self._region(kind, {"choices": [name]}, label, item)] if kind == "choices" else []
        if kind == "rectanglelabels":
            return [self._region(kind, box_value(label.box, name), label, item)]
        if kind == "brushlabels" and label.mask is not None:
            mask = full_image_mask(label, item.full_width, item.full_height)
            return [self._region(kind, brush_value(mask, name), label, item)] if mask.any() else []
        if kind == "polygonlabels":
            points = outline(label)
            return [self._region(kind, polygon_value(points, name), label, item)] if len(points) >= 3 else []
        if kind == "keypointlabels" and label.keypoints is not None:
            return self._keypoints(label, item)
        return []

    def _keypoints(self, label: Detection, item: ImageItem) -> list[dict[str, Any]]:
        keypoints = label.keypoints
        assert keypoints is not None
        box = self.control.boxes
        regions = []
        if box is not None:
            value = box_value(label.box, self.box_mapping.get(label.label, label.label))
            regions.append(self._region("rectanglelabels", value, label, item, control=box) | {"id": label.id})
        lower = {name.lower(): i for i, name in enumerate(keypoints.names)}
        for point in self.control.labels:
            if point.predicted and label.label not in point.predicted:
                continue
            index = point.index if point.index is not None else lower.get(point.value.lower())
            if index is None or not 0 <= index < len(keypoints.points):
                continue
            score = keypoints.visibility[index] if keypoints.visibility else label.confidence
            if score is not None and score < self.control.point_threshold:
                continue
            x, y = keypoints.points[index]
            value = {"x": percent(x), "y": percent(y), "width": self.control.point_size}
            value["keypointlabels"] = [point.value]
            region = self._region("keypointlabels", value, label, item) | {"id": f"{label.id}-{index}"}
            if score is not None:
                region["score"] = round(float(score), 4)
            regions.append(region | ({"parentID": label.id} if box is not None else {}))
        return regions

    def _region(
        self, kind: str, value: dict[str, Any], label: Label, item: ImageItem, control: Control | None = None
    ) -> dict[str, Any]:
        control = control or self.control
        region = {
            "from_name": control.name,
            "to_name": control.to_name,
            "type": kind,
            "value": value,
            "original_width": item.full_width,
            "original_height": item.full_height,
            "image_rotation": 0,
        }
        if label.confidence is not None:
            region["score"] = round(float(label.confidence), 4)
        return region


def _prediction(regions: list[dict[str, Any]], version: str) -> dict[str, Any]:
    scores = [r["score"] for r in regions if "score" in r]
    return {
        "result": regions,
        "score": round(sum(scores) / len(scores), 4) if scores else 0.0,
        "model_version": version,
    }


def create_app(backend: Backend) -> Any:
    """The HTTP server Label Studio connects to (Settings > Model > Connect Model: this server's URL)."""
    from fastapi import Body, FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI(title="verilabel: Label Studio ML backend", docs_url=None, redoc_url=None)

    @app.exception_handler(VerilabelError)
    def refused(request: Request, exc: VerilabelError) -> JSONResponse:
        # a labeling config or model that cannot work: the reason, for Label Studio's log and its user
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"error": str(exc)}, status_code=422)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "UP", "model_class": f"verilabel:{backend.model}"}

    @app.post("/setup")
    def setup(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return backend.setup(body)

    @app.post("/predict")
    def predict(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return backend.predict(body)

    @app.post("/webhook")
    def webhook(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return {"status": "ok", "training": "not done by verilabel: review and approve in verilabel instead"}

    return app
