"""Class mapping: from what the user asks for to what the model is asked (``map_classes``), and back from what
the model found to the labels stored (``to_dataset_labels``).

Zero-shot labellers get two more words from the user. Synonyms: several prompts for one class (``--alias
dog=dog,puppy``) find the same dog twice, so after renaming, overlapping boxes of one class found by different
prompts are merged (the most confident stays). Negatives: prompts for look-alikes (``--negative "toy dog"``) are
asked too, never stored, and a detection they find suppresses the class detections it overlaps that it outscores.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from verilabel.errors import ConfigError
from verilabel.labels import Detection, Label

MERGE_IOU = 0.5  # one class's boxes from two of its prompts overlapping this much are one object
NEGATIVE_IOU = 0.5  # a negative's box overlapping a class's box this much, and scoring higher, suppresses it


@dataclass(frozen=True)
class ClassMapping:
    """``model_classes``: what the model is asked for (vocabulary names or zero-shot prompts), in order, the
    negatives last. ``to_dataset``: model class -> the class stored in the dataset. ``negatives``: model classes
    asked for only to suppress look-alikes (never stored)."""

    model_classes: tuple[str, ...]
    to_dataset: Mapping[str, str]
    negatives: tuple[str, ...] = ()

    @property
    def dataset_classes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.to_dataset.values()))

    @cached_property
    def synonymous(self) -> frozenset[str]:
        """The dataset classes two or more model classes (prompts) map to: their detections may be merged.
        Computed once: the engine reads it for every image."""
        targets = list(self.to_dataset.values())
        return frozenset(t for t in targets if targets.count(t) > 1)


def parse_negatives(values: Sequence[str]) -> list[str]:
    """``["toy dog,plush dog", "statue"]`` -> ``["toy dog", "plush dog", "statue"]`` (order kept, no repeats)."""
    return list(dict.fromkeys(n.strip() for value in values for n in value.split(",") if n.strip()))


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
    *,
    zero_shot: bool,
    vocabulary: Sequence[str],
    classes: Sequence[str],
    aliases: Mapping[str, Sequence[str]],
    negatives: Sequence[str] = (),
) -> ClassMapping:
    """Resolve requested classes, aliases and negatives against a model.

    - zero-shot: each class is a prompt for itself; an alias ``vehicle=car,truck`` prompts ``car`` and
      ``truck`` and stores both as ``vehicle``. At least one class or alias is required.
    - fixed vocabulary: names match exactly, then case-insensitively; no classes means the whole vocabulary;
      an unknown name is an error listing the closest vocabulary names.
    - negatives are prompts (zero-shot) or vocabulary names asked for besides, and stored as nothing.
    """
    classes = [c.strip() for c in classes if c.strip()]
    mapping = _map_positives(zero_shot=zero_shot, vocabulary=vocabulary, classes=classes, aliases=aliases)
    if not negatives:
        return mapping
    lowered = {v.lower(): v for v in vocabulary}
    resolved = [n if zero_shot else _resolve(n, vocabulary, lowered, "negatives") for n in negatives]
    clash = [n for n in resolved if n in mapping.to_dataset]
    if clash:
        raise ConfigError(
            "negatives", f"{', '.join(clash)} asked for both as a class and as a negative: drop it from one of them"
        )
    negative = tuple(dict.fromkeys(resolved))
    return ClassMapping((*mapping.model_classes, *negative), mapping.to_dataset, negative)


def _map_positives(
    *, zero_shot: bool, vocabulary: Sequence[str], classes: list[str], aliases: Mapping[str, Sequence[str]]
) -> ClassMapping:
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


def to_dataset_labels(labels: Sequence[Label], mapping: ClassMapping) -> list[Label]:
    """A model's labels (in model classes) as the dataset stores them: negatives suppress the detections they
    outscore and overlap, then leave; the rest take their dataset class; one class's detections found by two of
    its prompts and overlapping are merged (the most confident stays). Labels of classes not asked for go."""
    to_dataset = mapping.to_dataset
    blockers = [label for label in labels if label.label in mapping.negatives and isinstance(label, Detection)]
    kept = [label for label in labels if label.label in to_dataset]
    if blockers:
        kept = [label for label in kept if not _suppressed(label, blockers)]
    if mapping.synonymous:
        kept = _merge_synonyms(kept, to_dataset, mapping.synonymous)
    # Most classes keep their name: no copy then (``replace`` re-validates every field of every label).
    return [
        label if to_dataset[label.label] == label.label else replace(label, label=to_dataset[label.label])
        for label in kept
    ]


def _suppressed(label: Label, blockers: Sequence[Detection]) -> bool:
    if not isinstance(label, Detection):
        return False
    score = label.confidence or 0.0
    return any((blocker.confidence or 0.0) >= score and box_iou(label, blocker) >= NEGATIVE_IOU for blocker in blockers)


def _merge_synonyms(labels: list[Label], to_dataset: Mapping[str, str], synonymous: frozenset[str]) -> list[Label]:
    """Drop a detection when a more confident one of its dataset class, found by another prompt, overlaps it."""
    order = sorted(range(len(labels)), key=lambda i: -(labels[i].confidence or 0.0))
    winners: dict[str, list[Detection]] = {}
    dropped: set[int] = set()
    for i in order:
        label = labels[i]
        target = to_dataset[label.label]
        if not isinstance(label, Detection) or target not in synonymous:
            continue
        rivals = winners.setdefault(target, [])
        if any(r.label != label.label and box_iou(label, r) >= MERGE_IOU for r in rivals):
            dropped.add(i)
        else:
            rivals.append(label)
    return [label for i, label in enumerate(labels) if i not in dropped]


def box_iou(a: Detection, b: Detection) -> float:
    """Intersection over union of two detections' (relative) boxes."""
    ax, ay, aw, ah = a.box.as_tuple()
    bx, by, bw, bh = b.box.as_tuple()
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return float(inter / (aw * ah + bw * bh - inter))
