"""Class mapping: from what the user asks for to what the model is asked, and back. One pure function."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from verilabel.errors import ConfigError


@dataclass(frozen=True)
class ClassMapping:
    """``model_classes``: what the model is asked for (vocabulary names or zero-shot prompts), in order.
    ``to_dataset``: model class -> the class stored in the dataset."""

    model_classes: tuple[str, ...]
    to_dataset: Mapping[str, str]

    @property
    def dataset_classes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.to_dataset.values()))


def parse_aliases(values: Sequence[str]) -> dict[str, list[str]]:
    """``["vehicle=car,truck", "person=man"]`` -> ``{"vehicle": ["car", "truck"], "person": ["man"]}``."""
    aliases: dict[str, list[str]] = {}
    for value in values:
        target, sep, sources = value.partition("=")
        names = [s.strip() for s in sources.split(",") if s.strip()]
        if not sep or not target.strip() or not names:
            raise ConfigError(
                "aliases",
                f"cannot read {value!r}: write DATASET_CLASS=MODEL_CLASS[,MODEL_CLASS...], e.g. vehicle=car,truck",
            )
        aliases.setdefault(target.strip(), []).extend(names)
    return aliases


def _resolve(name: str, vocabulary: Sequence[str], lowered: Mapping[str, str], option: str) -> str:
    if name in vocabulary:
        return name
    if name.lower() in lowered:
        return lowered[name.lower()]
    close = difflib.get_close_matches(name, vocabulary, n=5, cutoff=0.5) or difflib.get_close_matches(
        name.lower(), list(lowered), n=5, cutoff=0.5
    )
    hint = (
        f"closest names: {', '.join(lowered.get(c, c) for c in close)}"
        if close
        else "`verilabel models --vocabulary --json` lists each model's vocabulary"
    )
    raise ConfigError(option, f"{name!r} is not in the model's vocabulary ({hint})")


def map_classes(
    *, zero_shot: bool, vocabulary: Sequence[str], classes: Sequence[str], aliases: Mapping[str, Sequence[str]]
) -> ClassMapping:
    """Resolve requested classes and aliases against a model.

    - zero-shot: each class is a prompt for itself; an alias ``vehicle=car,truck`` prompts ``car`` and
      ``truck`` and stores both as ``vehicle``. At least one class or alias is required.
    - fixed vocabulary: names match exactly, then case-insensitively; no classes means the whole vocabulary;
      an unknown name is an error listing the closest vocabulary names.
    """
    classes = [c.strip() for c in classes if c.strip()]
    if len(set(classes)) != len(classes):
        dupes = sorted({c for c in classes if classes.count(c) > 1})
        raise ConfigError("classes", f"{', '.join(dupes)} listed more than once")
    to_dataset: dict[str, str] = {}
    if zero_shot:
        if not classes and not aliases:
            raise ConfigError("classes", "a zero-shot model needs at least one class: pass --classes a,b,c")
        for name in classes:
            to_dataset[name] = name
        for target, sources in aliases.items():
            for source in sources:
                to_dataset[source] = target
        return ClassMapping(tuple(to_dataset), to_dataset)

    lowered = {v.lower(): v for v in vocabulary}
    if not classes and not aliases:
        classes = list(vocabulary)
    for name in classes:
        resolved = _resolve(name, vocabulary, lowered, "classes")
        to_dataset[resolved] = resolved
    for target, sources in aliases.items():
        for source in sources:
            resolved = _resolve(source, vocabulary, lowered, "aliases")
            if to_dataset.get(resolved, target) != target:
                raise ConfigError("aliases", f"model class {resolved!r} is both a class and aliased to {target!r}")
            to_dataset[resolved] = target
    ordered = tuple(v for v in vocabulary if v in to_dataset)
    return ClassMapping(ordered, {k: to_dataset[k] for k in ordered})
