"""DETECTOR+SEGMENTER and field:FIELD+SEGMENTER runs, end to end in real worker processes."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.runs_helpers import BLOBS, blob_dataset, label_snapshot, request
from verilabel.errors import ConfigError
from verilabel.models import registry
from verilabel.review import service as review
from verilabel.runs import service as runs
from verilabel.store import Store

FILLER = "python:tests.support.blob_model:box_filler"

pytestmark = pytest.mark.slow


def ellipse_fraction(path: Path) -> float:
    mask = np.asarray(Image.open(path)) > 127
    return float(mask.mean())


def test_detector_plus_segmenter_masks_every_box(store: Store, tmp_path: Path):
    blob_dataset(store, tmp_path / "imgs", 6)
    info = runs.create_run(
        store,
        request("masks", task="segmentation", model=f"{BLOBS}+{FILLER}", mask_dir=str(tmp_path / "masks")),
    )
    info = runs.wait_run(store, info.id, timeout=120)
    assert info.status == "in_review", info.to_json()
    files = sorted((tmp_path / "masks" / info.id).glob("*.png"))
    assert len(files) == info.labels > 0
    # an inscribed ellipse covers pi/4 of its box: the masks are the segmenter's, cropped to the detector's boxes
    assert all(0.7 < ellipse_fraction(f) < 0.85 for f in files)

    plain = runs.wait_run(store, runs.create_run(store, request("boxes")).id, timeout=120)
    strip = [row[:2] + row[3:] for row in label_snapshot(store, plain.id)]
    assert [row[:2] + row[3:] for row in label_snapshot(store, info.id)] == strip  # same boxes, classes


def test_field_boxes_get_masks_from_the_segmenter(store: Store, tmp_path: Path):
    blob_dataset(store, tmp_path / "imgs", 5)
    boxes = runs.wait_run(store, runs.create_run(store, request("boxes")).id, timeout=120)
    kept = [row for row in label_snapshot(store, boxes.id) if row[1] in ("red", "blue")]
    review.promote(store, boxes.id, review.LabelQuery(classes=["red", "blue"]))
    review.approve(store, boxes.id)

    info = runs.create_run(
        store,
        request("masks", task="segmentation", model=f"field:boxes+{FILLER}", mask_dir=str(tmp_path / "m")),
    )
    assert info.config["model_classes"] == ["blue", "red"]  # the field's classes are the vocabulary
    info = runs.wait_run(store, info.id, timeout=120)
    assert info.status == "in_review", info.to_json()
    generated = label_snapshot(store, info.id)
    assert [(r[0], r[1], *r[3:]) for r in generated] == [(r[0], r[1], *r[3:]) for r in kept]
    assert len(list((tmp_path / "m" / info.id).glob("*.png"))) == len(generated) > 0


def test_bad_chains_are_refused_with_the_fix(store: Store, tmp_path: Path):
    blob_dataset(store, tmp_path / "imgs", 2)
    with pytest.raises(ConfigError, match="does not take box prompts"):
        registry.resolve(f"{BLOBS}+{BLOBS}")
    with pytest.raises(ConfigError, match="follow it with a segmenter"):
        registry.resolve("field:boxes")
    with pytest.raises(ConfigError, match="exactly two"):
        registry.resolve(f"{BLOBS}+{FILLER}+{FILLER}")
    with pytest.raises(ConfigError, match="no label field 'nope'"):
        runs.create_run(
            store, request("m", task="segmentation", model=f"field:nope+{FILLER}", mask_dir=str(tmp_path / "m"))
        )
