"""Finding and building models: the catalogue, plugins (entry point group ``verilabel.models``) and
``python:package.module:factory`` references to a user's own code."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from typing import Any

from verilabel.errors import ConfigError, ModelLoadError
from verilabel.models import weights
from verilabel.models.catalogue import CatalogueEntry, builtin_catalogue
from verilabel.models.interface import LoadRequest, Model, ModelSpec, Task

FIELD_PREFIX = "field:"

ENTRY_POINT_GROUP = "verilabel.models"
Factory = Callable[[LoadRequest], Model]


@dataclass(frozen=True)
class ModelRef:
    """A model chosen by name, known well enough to validate a run before anything heavy is loaded."""

    name: str
    tasks: tuple[Task, ...]
    zero_shot: bool
    vocabulary: tuple[str, ...]
    default_confidence: float
    factory: str  # "module:function"
    entry: CatalogueEntry | None = None
    stages: tuple[ModelRef, ...] = ()  # DETECTOR+SEGMENTER: the two models, chained by two_stage.TwoStage
    prompt_field: str | None = None  # field:NAME as the first stage: the boxes of an existing label field


def _import_object(reference: str, option: str = "model") -> Any:
    module_name, _, attr = reference.partition(":")
    if not module_name or not attr:
        raise ConfigError(option, f"{reference!r} is not `package.module:function`")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(option, f"cannot import {module_name!r} ({exc}); is it installed / on PYTHONPATH?") from None
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ConfigError(option, f"{module_name!r} has no attribute {attr!r}") from None
    return obj


def _plugin_entries() -> list[CatalogueEntry]:
    entries = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        value = ep.load()
        entries.append(value() if callable(value) and not isinstance(value, CatalogueEntry) else value)
    return [e for e in entries if isinstance(e, CatalogueEntry)]


def catalogue() -> list[CatalogueEntry]:
    """The built-in catalogue followed by entries that installed plugins register."""
    return [*builtin_catalogue(), *_plugin_entries()]


def is_available(entry: CatalogueEntry) -> bool:
    """The model runs with no download: its libraries import and its weights are on this machine."""
    return unavailable_because(entry) is None


def unavailable_because(entry: CatalogueEntry) -> str | None:
    """What keeps the model from running here with no download (a library, then the weights), with the fix;
    None when nothing does."""
    missing = _missing_modules(entry)
    if missing:
        return f"needs {', '.join(missing)}: pip install 'verilabel[{entry.extra}]'"
    return weights.missing(entry.weights)


def _missing_modules(entry: CatalogueEntry) -> list[str]:
    return [module for module in entry.requires if importlib.util.find_spec(module) is None]


def check_obtainable(ref: ModelRef, override: str | None, options: dict[str, Any] | None = None) -> None:
    """Fail now, with the loader's own message, if the model could not be built when its run starts: a library
    is missing, or its weights are neither here nor downloadable. Both stages of DETECTOR+SEGMENTER are checked
    (the segmenter's weights come from the model option ``segmenter_weights``)."""
    if ref.stages:
        detector, segmenter = ref.stages
        check_obtainable(detector, override, options)
        check_obtainable(segmenter, (options or {}).get("segmenter_weights"))
        return
    if ref.entry is None:
        return  # a user's model (python:...) or the boxes of a field: nothing to fetch
    missing = _missing_modules(ref.entry)
    if missing:
        raise ModelLoadError(_missing_modules_message(ref.name, missing, ref.entry.extra))
    weights.ensure_obtainable(ref.entry.weights, override, name=ref.entry.name)


def _missing_modules_message(name: str, missing: list[str], extra: str) -> str:
    return f"model {name!r} needs {', '.join(missing)}: install them with `pip install 'verilabel[{extra}]'`"


def _spec_of(factory: Any, reference: str) -> ModelSpec:
    spec = getattr(factory, "spec", None)
    if isinstance(spec, ModelSpec):
        return spec
    try:
        model = factory(LoadRequest())
    except Exception as exc:
        raise ModelLoadError(f"model factory {reference!r} failed: {exc}") from exc
    if not isinstance(getattr(model, "spec", None), ModelSpec):
        raise ConfigError(
            "model",
            f"{reference!r} must return an object with a `spec` (verilabel.ModelSpec) and `predict(images, context)`",
        )
    return model.spec  # type: ignore[no-any-return]


def score_kind(name: str) -> str:
    """What a run's confidences are (``CatalogueEntry.score``): ``model`` unless its model (the detector of
    DETECTOR+SEGMENTER) is a catalogue entry whose scores are a proxy."""
    first = name.partition("+")[0]
    entry = next((e for e in catalogue() if e.name == first), None)
    return entry.score if entry is not None else "model"


def resolve(name: str, weights: str | None = None, options: dict[str, Any] | None = None) -> ModelRef:
    """Look a model up by catalogue name, or import ``python:package.module:factory``.

    With ``weights`` (``--weights``), a fixed-vocabulary model whose adapter module defines
    ``read_vocabulary(weights, entry, options)`` takes its vocabulary from those weights (a fine-tuned YOLO, an
    ONNX export; ``options`` are the run's model options), so that classes are validated against what the model
    will really predict."""
    if "+" in name:
        return _resolve_two_stage(name, weights)
    if name.startswith(FIELD_PREFIX):
        raise ConfigError("model", f"{name!r} gives boxes only: follow it with a segmenter, as in {name}+sam-vit-base")
    if name.startswith("python:"):
        reference = name.removeprefix("python:")
        spec = _spec_of(_import_object(reference), reference)
        return ModelRef(name, spec.tasks, spec.zero_shot, spec.vocabulary, spec.default_confidence, reference)
    entries = catalogue()
    for entry in entries:
        if entry.name == name:
            return ModelRef(
                entry.name,
                entry.tasks,
                entry.zero_shot,
                _vocabulary(entry, weights, options or {}),
                entry.default_confidence,
                entry.loader,
                entry,
            )
    import difflib

    close = difflib.get_close_matches(name, [e.name for e in entries], n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ConfigError(
        "model",
        f"unknown model {name!r}; {hint}`verilabel models` lists them, or pass "
        "python:package.module:factory for your own",
    )


def _resolve_two_stage(name: str, weights: str | None) -> ModelRef:
    first_name, _, second_name = name.partition("+")
    if not first_name or not second_name or "+" in second_name:
        raise ConfigError("model", f"{name!r}: chain exactly two models, as in DETECTOR+SEGMENTER")
    first, second = _first_stage(first_name, weights), resolve(second_name)
    # A user's python: segmenter is checked for `segment` when it is built (two_stage.build).
    if not (second.entry.prompted if second.entry is not None else "segmentation" in second.tasks):
        prompted = [e.name for e in catalogue() if e.prompted]
        raise ConfigError(
            "model",
            f"{second_name!r} does not take box prompts; after `+` use one of {', '.join(prompted[:6])}, ...",
        )
    if first.entry is not None and first.entry.prompted:
        raise ConfigError("model", f"{first_name!r} needs box prompts itself: put a detector before `+`")
    if "detection" not in first.tasks:
        raise ConfigError("model", f"{first_name!r} is not a detector: it cannot give boxes to {second_name!r}")
    return ModelRef(
        name,
        ("segmentation", "detection"),
        first.zero_shot,
        first.vocabulary,
        first.default_confidence,
        "verilabel.models.two_stage:build",
        stages=(first, second),
        prompt_field=first.prompt_field,
    )


def _first_stage(name: str, weights: str | None) -> ModelRef:
    if not name.startswith(FIELD_PREFIX):
        return resolve(name, weights)
    field = name.removeprefix(FIELD_PREFIX)
    if not field:
        raise ConfigError("model", "field: needs a label field name, as in field:boxes+sam-vit-base")
    # The vocabulary is the field's classes: the run's validation reads them from the dataset.
    return ModelRef(name, ("detection",), False, (), 0.0, "", prompt_field=field)


def _vocabulary(entry: CatalogueEntry, weights: str | None, options: dict[str, Any]) -> tuple[str, ...]:
    from_weights = entry.vocabulary_source == "weights"
    if from_weights and not weights:
        raise ConfigError("weights", f"model {entry.name!r} has no default weights: pass --weights FILE")
    if entry.zero_shot or not weights:
        return entry.vocabulary
    if _missing_modules(entry):
        return entry.vocabulary  # load() reports the missing library with the extra to install
    module = importlib.import_module(entry.loader.partition(":")[0])
    reader = getattr(module, "read_vocabulary", None)
    if reader is None:
        return entry.vocabulary
    try:
        vocabulary = reader(weights, entry, options)
    except (ModelLoadError, ConfigError) as exc:
        raise ConfigError("weights", str(exc)) from None
    return tuple(vocabulary) if vocabulary else entry.vocabulary


def load(ref: ModelRef, request: LoadRequest) -> Model:
    """Build the model. Errors that stop a run (missing library, missing weights) become ModelLoadError.

    For DETECTOR+SEGMENTER, ``request.weights`` goes to the detector and the model option
    ``segmenter_weights`` to the segmenter."""
    if ref.stages:
        from verilabel.models import two_stage

        options = dict(request.options)
        segmenter_weights = options.pop("segmenter_weights", None)
        detector = load(ref.stages[0], replace(request, options=options))
        segmenter = load(ref.stages[1], replace(request, weights=segmenter_weights, options=options))
        return two_stage.build(detector, segmenter)
    if ref.prompt_field is not None:
        from verilabel.models import two_stage

        return two_stage.FieldBoxes(ref.prompt_field, ref.vocabulary or request.classes)
    if ref.entry is not None:
        missing = _missing_modules(ref.entry)
        if missing:
            raise ModelLoadError(_missing_modules_message(ref.name, missing, ref.entry.extra))
    factory = _import_object(ref.factory)
    try:
        model = factory(request, ref.entry) if ref.entry is not None else factory(request)
    except (ModelLoadError, ConfigError):
        raise
    except Exception as exc:
        raise ModelLoadError(f"model {ref.name!r} failed to load: {type(exc).__name__}: {exc}") from exc
    if not isinstance(getattr(model, "spec", None), ModelSpec) or not callable(getattr(model, "predict", None)):
        raise ModelLoadError(
            f"model {ref.name!r}: the factory returned {type(model).__name__}, which lacks "
            "`spec` (a ModelSpec) or `predict`"
        )
    return model  # type: ignore[no-any-return]
