"""Run a real adapter through the engine's pipeline as if its device were asynchronous (CUDA), on the CPU."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from verilabel.datasets.images import decode
from verilabel.models.interface import ImageItem, PredictContext
from verilabel.runs.pipeline import Outcome, Pipeline, PipelineOptions, StageTimer, WorkItem


def label_rows(labels: list[Any]) -> list[tuple[Any, ...]]:
    return [(label.label, round(label.confidence, 5), getattr(label, "box", None)) for label in labels]


def overlapped_matches_predict(model: Any, arrays: list[np.ndarray], context: PredictContext, folder: Path) -> bool:
    """Labels through the pipeline with the model's ``infer`` / ``to_labels`` split (``to_labels`` in the
    labelling thread) equal ``predict`` on the same batches; raises if the labelling thread never ran."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, array in enumerate(arrays):
        paths.append(folder / f"{i}.png")
        Image.fromarray(array).save(paths[-1])
    batch = 2
    model.asynchronous = True
    names = {name: name for name in context.classes}
    options = PipelineOptions(batch, 2, 10**9, model.spec.input_size, context.min_confidence, names)
    pipeline = Pipeline(model, context, options, StageTimer(), threading.Event())
    assert pipeline.overlap, "the model does not offer infer and to_labels"
    calls: list[list[Outcome]] = []
    pipeline.run([WorkItem(i, str(p)) for i, p in enumerate(paths)], calls.append)
    assert "labels" in pipeline.timer.seconds
    overlapped = [label_rows(o.labels) for part in calls for o in part]

    items = []
    for i, path in enumerate(paths):
        array = decode(path, draft_size=model.spec.input_size)
        items.append(ImageItem(i, str(path), array, model.prepare(array) if hasattr(model, "prepare") else None))
    direct = [
        label_rows(labels)
        for start in range(0, len(items), batch)
        for labels in model.predict(items[start : start + batch], context)
    ]
    return overlapped == direct
