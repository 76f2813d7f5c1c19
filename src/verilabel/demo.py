"""The demo: a dataset from images that ship inside scikit-image, labelled by the offline models."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from verilabel.datasets import service as datasets
from verilabel.errors import NotFoundError, VerilabelError
from verilabel.models.registry import resolve, unavailable_because
from verilabel.runs.config import RunRequest
from verilabel.runs.service import RunInfo, create_run
from verilabel.store import Store


@dataclass(frozen=True)
class DemoRun:
    model: str
    task: str
    field: str
    why: str


DEMO_RUNS = (
    DemoRun("mediapipe-face", "detection", "faces", "faces with eye/nose/mouth keypoints"),
    DemoRun("rapidocr-text", "detection", "text", "text boxes, with the text read in attribute `text`"),
    DemoRun("efficientnet-lite0-imagenet", "classification", "imagenet", "one ImageNet class per image"),
    DemoRun("opencv-hog-person", "detection", "people", "upright people (a classical detector: expect noise)"),
)


def sample_image_dir() -> Path:
    try:
        import skimage.data
    except ImportError:
        raise VerilabelError("the demo images come with scikit-image: pip install 'verilabel[offline]'") from None
    return Path(skimage.data.__file__).parent


def build_demo(store: Store, dataset: str = "demo") -> tuple[datasets.ImportSummary, list[RunInfo], list[str]]:
    """(Re)create the demo dataset and start one background run per available offline model."""
    with contextlib.suppress(NotFoundError):
        datasets.delete_dataset(store, dataset)
    datasets.create_dataset(store, dataset)
    summary = datasets.add_images(store, dataset, sample_image_dir())
    runs, skipped = [], []
    for demo_run in DEMO_RUNS:
        ref = resolve(demo_run.model)
        why = unavailable_because(ref.entry) if ref.entry is not None else None
        if why is not None:
            skipped.append(f"{demo_run.model} ({why})")
            continue
        runs.append(
            create_run(
                store,
                RunRequest(
                    dataset=dataset,
                    task=demo_run.task,
                    model=demo_run.model,
                    field=demo_run.field,
                    # not plain `faces`: a user's own run writing field `faces` keeps that name to itself
                    name=f"{dataset}-{demo_run.field}",
                ),
            )
        )
    return summary, runs, skipped
