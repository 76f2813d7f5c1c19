"""The model catalogue, as data: one entry per model a user can pick by name.

The entries live in ``families/*.toml`` (one file per family set, with shared ``[defaults]``). An entry says
what the model is (family, version, size, tasks, vocabulary, ratings, licence), where its weights come from
(``verilabel.models.weights``) and how to build it (``loader``: ``module:function`` taking a ``LoadRequest``
and the entry), without importing anything heavy.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from functools import cache
from importlib import resources
from typing import Any

from verilabel.models.interface import ModelSpec, Task


@cache
def vocabulary_file(name: str) -> tuple[str, ...]:
    """A vocabulary shipped with verilabel, index-aligned with the model's class ids."""
    text = resources.files("verilabel.models").joinpath("vocabularies").joinpath(f"{name}.txt").read_text()
    return tuple(text.splitlines())


SCORE_KINDS = ("model", "token-probability")

# Index placeholders in class-id-aligned vocabularies (torchvision's COCO-91 gaps, VOC's background).
_PLACEHOLDERS = frozenset({"__background__", "N/A"})


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    family: str
    version: str
    size: str
    tasks: tuple[Task, ...]
    zero_shot: bool
    vocabulary_source: str  # "inline:a,b", "file:NAME", "weights" (read from the weights) or "" (zero-shot)
    default_confidence: float
    speed: int  # 1-3, higher is faster, relative to comparable models
    accuracy: int  # 1-3, higher is more accurate
    description: str
    author: str
    licence: str
    link: str
    weights: str  # default source: "hf:ORG/NAME", "url:URL", "torch:URL", "package:DIST" or "user" (--weights)
    loader: str  # "module:function"
    requires: tuple[str, ...] = ()  # importable modules the loader needs
    extra: str = ""  # the pip extra that installs them
    prompted: bool = False  # needs boxes as prompts: used as DETECTOR+THIS (see verilabel.models.two_stage)
    options: dict[str, Any] = field(default_factory=dict)  # adapter-specific (architecture, input size...)
    onnx: bool = False  # its adapter can hand the network to ONNX Runtime (``verilabel.models.runtimes``)
    keypoints: str = ""  # the names of its keypoints, in order ("inline:a,b" or "file:NAME"), for keypoint models
    # What a label's confidence is: "model" (the network's own score for that label) or "token-probability" (a
    # generative model that gives no score: the probability it gave the tokens spelling that label, a proxy).
    score: str = "model"

    def __post_init__(self) -> None:
        if self.score not in SCORE_KINDS:
            raise ValueError(f"catalogue entry {self.name!r}: score must be one of {SCORE_KINDS}, got {self.score!r}")

    @property
    def runtimes(self) -> tuple[str, ...]:
        """What can run it: torch, and ONNX Runtime on the CPU for fixed-vocabulary networks that export (a
        zero-shot model's prompts change its graph from run to run)."""
        return ("torch", "onnx") if self.onnx and not self.zero_shot else ("torch",)

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return _names(self.vocabulary_source)

    @property
    def keypoint_names(self) -> tuple[str, ...]:
        """The keypoints its detections carry, in order (a CVAT skeleton's points); empty if it has none."""
        return _names(self.keypoints)

    def spec(self, *, batch_size: int, input_size: int | None = None) -> ModelSpec:
        """The spec of a model built from this entry; the adapter knows its batch and input sizes."""
        return ModelSpec(
            self.name,
            self.tasks,
            zero_shot=self.zero_shot,
            vocabulary=self.vocabulary,
            default_confidence=self.default_confidence,
            batch_size=batch_size,
            input_size=input_size,
            version=self.version,
            weights=self.weights,
        )

    def to_json(self, *, available: bool | None = None, vocabulary: bool = False) -> dict[str, Any]:
        row: dict[str, Any] = {
            "name": self.name,
            "family": self.family,
            "version": self.version,
            "size": self.size,
            "tasks": list(self.tasks),
            "zero_shot": self.zero_shot,
            "default_confidence": self.default_confidence,
            "speed": self.speed,
            "accuracy": self.accuracy,
            "description": self.description,
            "author": self.author,
            "licence": self.licence,
            "link": self.link,
            "weights": self.weights,
            "requires": list(self.requires),
            "extra": self.extra,
            "prompted": self.prompted,
            "vocabulary_size": len(self.vocabulary),
            "runtimes": list(self.runtimes),
            "score": self.score,
        }
        if available is not None:
            row["available"] = available
        if vocabulary:
            row["vocabulary"] = list(self.vocabulary)
        return row


def _names(source: str) -> tuple[str, ...]:
    kind, _, value = source.partition(":")
    if kind == "inline":
        return tuple(value.split(","))
    if kind == "file":
        return tuple(c for c in vocabulary_file(value) if c not in _PLACEHOLDERS)
    return ()


def _entry(data: dict[str, Any], source: str) -> CatalogueEntry:
    known = {f.name for f in fields(CatalogueEntry)}
    renamed = {"vocabulary_source" if k == "vocabulary" else k: v for k, v in data.items()}
    unknown = set(renamed) - known
    if unknown:
        raise ValueError(f"catalogue {source}: unknown keys {sorted(unknown)} in {data.get('name')!r}")
    renamed.setdefault("vocabulary_source", "")
    for key in ("tasks", "requires"):
        renamed[key] = tuple(renamed.get(key, ()))
    return CatalogueEntry(**renamed)


@cache
def builtin_catalogue() -> tuple[CatalogueEntry, ...]:
    """Every entry of ``families/*.toml``, in file-name order; names are unique."""
    entries: list[CatalogueEntry] = []
    folder = resources.files("verilabel.models").joinpath("families")
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if not item.name.endswith(".toml"):
            continue
        data = tomllib.loads(item.read_text())
        defaults = data.get("defaults", {})
        entries += [_entry(defaults | model, item.name) for model in data.get("model", [])]
    names = [e.name for e in entries]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"catalogue: duplicate model names {sorted(duplicates)}")
    return tuple(entries)
