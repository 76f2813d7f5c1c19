"""Run configuration: what a user asks for, checked against the store and the model before anything starts.

Every problem is a ``ConfigError`` whose ``field`` names the option (``classes``, ``min_confidence``, ...).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from verilabel.datasets.images import DEFAULT_MAX_PIXELS
from verilabel.datasets.service import dataset_row, find_field, read_id_file
from verilabel.datasets.views import View, parse_view
from verilabel.errors import ConfigError, DatasetImportError, NotFoundError
from verilabel.models import registry
from verilabel.models.interface import TASKS, Task
from verilabel.models.mapping import ClassMapping, map_classes, parse_aliases, parse_negatives
from verilabel.models.runtimes import check_runtime
from verilabel.store import Store
from verilabel.store.schema import LabelRow, RunRow

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,199}$")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
MAX_WORKERS = 64


@dataclass
class RunRequest:
    """Everything a run can be configured with; only dataset, task, model and field are required."""

    dataset: str
    task: str
    model: str
    field: str
    classes: list[str] = dataclasses.field(default_factory=list)
    aliases: list[str] = dataclasses.field(default_factory=list)
    negatives: list[str] = dataclasses.field(default_factory=list)  # look-alikes to suppress (never stored)
    min_confidence: float | None = None
    weights: str | None = None
    mask_dir: str | None = None
    name: str | None = None
    target: str = "all"  # all | view:EXPR | ids:FILE
    view: View | None = None  # Python API: a View object instead of target
    sample_ids: list[int] | None = None  # Python API: an explicit selection instead of target
    workers: int = 1
    batch_size: int | None = None
    device: str = "auto"
    runtime: str = "auto"  # auto | torch | onnx: what runs the network (verilabel.models.runtimes)
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    decode_threads: int | None = None
    max_labels: int | None = None  # per image: keep the most confident ones
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)  # passed to the model's loader
    executor: str = "local"  # local: worker processes on this machine; ray: actors on a Ray cluster
    ray_address: str | None = None  # auto, ray://HOST:PORT, or none (a one-machine Ray)
    gpus_per_worker: float | None = None  # Ray: none means 1 where the cluster has GPUs, else 0
    cpus_per_worker: float | None = None  # Ray: 1 unless said
    shards: int | None = None  # Ray: how many pieces the samples are cut into (8 per worker unless said)


@dataclass
class ValidatedRun:
    """A request after validation: the model is resolved, classes mapped, and the target is a query."""

    request: RunRequest
    dataset_id: int
    name: str
    task: Task
    model: registry.ModelRef
    mapping: ClassMapping
    min_confidence: float
    view: View

    def config_json(self) -> dict[str, Any]:
        """What the workers need, stored on the run (JSON)."""
        request = asdict(self.request)
        request.pop("view")
        request.pop("sample_ids")
        return {
            **request,
            "name": self.name,
            "min_confidence": self.min_confidence,
            "model_classes": list(self.mapping.model_classes),
            "to_dataset": dict(self.mapping.to_dataset),
            "negative_classes": list(self.mapping.negatives),
            "score": registry.score_kind(self.model.name),  # what its confidences are (shown in the review)
        }


def _check_name(option: str, value: str) -> str:
    if not _NAME.match(value):
        raise ConfigError(
            option,
            f"{value!r} is not a valid name: start with a letter or `_`, then letters, "
            "digits, `_`, `-` or `.` (at most 200)",
        )
    return value


def _check_runtime(request: RunRequest, model: registry.ModelRef) -> None:
    """``--runtime onnx`` only for models with an ONNX export, on the CPU (``auto`` decides per model)."""
    check_runtime(request.runtime)
    if request.runtime != "onnx":
        return
    entries = [stage.entry for stage in model.stages] if model.stages else [model.entry]
    first = entries[0]
    if first is None or "onnx" not in first.runtimes:
        able = ", ".join(e.name for e in registry.catalogue() if "onnx" in e.runtimes and request.task in e.tasks)
        what = "your own model" if first is None else f"{first.name!r}"
        raise ConfigError(
            "runtime",
            f"{what} has no ONNX export: use --runtime auto or torch (models that have one: {able or 'none'})",
        )
    if request.device not in ("auto", "cpu"):
        raise ConfigError(
            "runtime", f"ONNX Runtime runs models on the CPU: use --device cpu, or --runtime torch on {request.device}"
        )


def _target_view(request: RunRequest) -> View:
    if request.sample_ids is not None:
        return View(ids=list(request.sample_ids))
    if request.view is not None:
        return request.view
    kind, _, value = request.target.partition(":")
    if kind == "all" and not value:
        return View()
    if kind == "view" and value:
        return parse_view(value, option="target")
    if kind == "ids" and value:
        try:
            return View(ids=read_id_file(value))
        except FileNotFoundError:
            raise ConfigError("target", f"sample id file not found: {value}") from None
        except DatasetImportError as exc:
            raise ConfigError("target", str(exc)) from None
    raise ConfigError("target", f"{request.target!r}: use `all`, `view:EXPR` or `ids:FILE`")


def validate(store: Store, request: RunRequest) -> ValidatedRun:
    """Check every option; nothing is written. Raises ConfigError (an option), ModelLoadError (the model could
    not be built: a library or its weights are missing)."""
    if request.task not in TASKS:
        raise ConfigError("task", f"{request.task!r} is not a task; choose one of {', '.join(TASKS)}")
    task: Task = request.task
    model = registry.resolve(request.model, request.weights, request.model_options)
    if task not in model.tasks:
        able = [e.name for e in registry.catalogue() if task in e.tasks]
        raise ConfigError(
            "task",
            f"model {model.name!r} does {', '.join(model.tasks)}, not {task}; models for "
            f"{task}: {', '.join(able) or 'none installed'}",
        )
    _check_runtime(request, model)
    if model.prompt_field is not None:
        model = replace(model, vocabulary=_field_classes(store, request.dataset, model.prompt_field))
    # What `verilabel models` knows (weights missing, a library absent) stops the run now, not in a worker.
    registry.check_obtainable(model, request.weights, request.model_options)
    mapping = map_classes(
        zero_shot=model.zero_shot,
        vocabulary=model.vocabulary,
        classes=request.classes,
        aliases=parse_aliases(request.aliases),
        negatives=parse_negatives(request.negatives),
    )
    if request.min_confidence is not None and not 0.0 <= request.min_confidence <= 1.0:
        raise ConfigError("min_confidence", f"{request.min_confidence} is outside [0, 1]")
    min_confidence = model.default_confidence if request.min_confidence is None else request.min_confidence
    _check_name("field", request.field)
    if task == "segmentation":
        if not request.mask_dir:
            raise ConfigError("mask_dir", "segmentation runs write masks as files: pass --mask-dir DIR")
        request.mask_dir = _writable_dir(request.mask_dir)
    if not 1 <= request.workers <= MAX_WORKERS:
        raise ConfigError("workers", f"{request.workers} is outside 1..{MAX_WORKERS}")
    if request.batch_size is not None and not 1 <= request.batch_size <= 4096:
        raise ConfigError("batch_size", f"{request.batch_size} is outside 1..4096")
    if request.max_labels is not None and request.max_labels < 1:
        raise ConfigError("max_labels", f"{request.max_labels}: keep at least 1 label per image, or leave it unset")
    if request.decode_threads is not None and not 1 <= request.decode_threads <= 64:
        raise ConfigError("decode_threads", f"{request.decode_threads} is outside 1..64")
    if not _DEVICE.match(request.device):
        raise ConfigError("device", f"{request.device!r}: use auto, cpu, cuda or cuda:N")
    if request.max_image_pixels < 1:
        raise ConfigError("max_image_pixels", "must be a positive number of pixels")
    if request.weights and not request.weights.strip():
        raise ConfigError("weights", "empty weights source")
    _check_executor(store, request)
    view = _target_view(request)
    with store.read() as session:
        try:
            dataset_id = dataset_row(session, request.dataset).id
        except NotFoundError as exc:
            raise ConfigError("dataset", str(exc)) from None
        name = request.name or unique_run_name(session, dataset_id, request.field)
        _check_name("name", name)
        check_still_free(session, request, dataset_id, name)
        if session.scalar(view.sample_ids_query(dataset_id).limit(1)) is None:
            raise ConfigError("target", f"{request.target!r} selects no samples of {request.dataset!r}")
        if request.shards is None:  # Ray: sized by the samples
            from verilabel.runs.ray_executor import shard_count

            total = session.scalar(select(func.count()).select_from(view.sample_ids_query(dataset_id).subquery()))
            request.shards = shard_count(request.workers, int(total or 0))
    return ValidatedRun(request, dataset_id, name, task, model, mapping, min_confidence, view)


def _check_executor(store: Store, request: RunRequest) -> None:
    """The executor and its options; for the local one ``request.shards`` is its worker count (one process per
    shard), for Ray it is sized once the samples are counted (``validate``) unless given."""
    if request.executor == "local":
        ray_only = {"ray_address": request.ray_address, "gpus_per_worker": request.gpus_per_worker}
        ray_only |= {"cpus_per_worker": request.cpus_per_worker, "shards": request.shards}
        given = [name for name, value in ray_only.items() if value is not None]
        if given:
            raise ConfigError(given[0], f"--{given[0].replace('_', '-')} goes with --executor ray")
        request.shards = request.workers  # one worker process per shard
        return
    if request.executor != "ray":
        raise ConfigError("executor", f"{request.executor!r}: use local (this machine's processes) or ray")
    from verilabel.runs import ray_executor

    for option in ("gpus_per_worker", "cpus_per_worker"):
        value = getattr(request, option)
        if value is not None and not 0 <= value <= 64:
            raise ConfigError(option, f"{value} is outside 0..64")
    if request.shards is not None and not 1 <= request.shards <= 100_000:
        raise ConfigError("shards", f"{request.shards} is outside 1..100000")
    ray_executor.check_cluster(store.url, request.ray_address)


def unique_run_name(session: Session, dataset_id: int, base: str) -> str:
    """``base`` if no run of the dataset has that name yet, else ``base-2``, ``base-3``...: a default name the
    user can predict (a run is named after its field unless ``--name`` says otherwise)."""
    taken = set(
        session.scalars(
            select(RunRow.name).where(
                RunRow.dataset_id == dataset_id, or_(RunRow.name == base, RunRow.name.startswith(f"{base}-"))
            )
        )
    )
    if base not in taken:
        return base
    return next(f"{base}-{n}" for n in range(2, len(taken) + 3) if f"{base}-{n}" not in taken)


def check_still_free(session: Session, request: RunRequest, dataset_id: int, name: str) -> None:
    """The run's field and name are not taken in the dataset. Checked when validating, and again in the
    transaction that creates the run: another run may have taken them in between."""
    existing = find_field(session, dataset_id, request.field)
    if existing is not None:
        owner = f" (reserved by run {existing.run_id})" if existing.run_id else ""
        raise ConfigError(
            "field",
            f"dataset {request.dataset!r} already has a field {request.field!r}{owner}; "
            "a run writes a new field: pick another --field (to review an existing field, "
            "use `verilabel run analyze`)",
        )
    if session.scalar(select(RunRow.id).where(RunRow.dataset_id == dataset_id, RunRow.name == name)):
        raise ConfigError("name", f"dataset {request.dataset!r} already has a run named {name!r}")


def _field_classes(store: Store, dataset: str, field: str) -> tuple[str, ...]:
    """The classes of the detections in an existing field: the vocabulary of a ``field:NAME+SEGMENTER`` run."""
    with store.read() as session:
        try:
            dataset_id = dataset_row(session, dataset).id
        except NotFoundError as exc:
            raise ConfigError("dataset", str(exc)) from None
        row = find_field(session, dataset_id, field)
        if row is None:
            raise ConfigError("model", f"dataset {dataset!r} has no label field {field!r} to take boxes from")
        classes = session.scalars(
            select(LabelRow.label).where(LabelRow.field_id == row.id, LabelRow.kind == "detection").distinct()
        ).all()
    if not classes:
        raise ConfigError("model", f"field {field!r} of {dataset!r} holds no detections (boxes) to segment")
    return tuple(sorted(classes))


def _writable_dir(path: str) -> str:
    resolved = Path(path).expanduser().resolve()
    try:
        resolved.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("mask_dir", f"cannot create {resolved}: {exc.strerror}") from None
    if not os.access(resolved, os.W_OK):
        raise ConfigError("mask_dir", f"{resolved} is not writable")
    return str(resolved)
