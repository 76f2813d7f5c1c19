"""Exports read by the tools that consume them: ultralytics verifies and trains on a YOLO export, pycocotools
loads and evaluates a COCO export (AP 1.0 against itself)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.images import write_blob_images
from verilabel.datasets import service as ds
from verilabel.datasets.export import export_field
from verilabel.labels import Box, Detection, Mask, Polygon, rle_encode
from verilabel.store import Store
from verilabel.store.convert import label_columns
from verilabel.store.schema import LabelRow


def boxes_dataset(store: Store, tmp_path: Path, count: int = 4) -> None:
    """Blob images with scored boxes (as a verilabel run produces): a car and a dog on each."""
    write_blob_images(tmp_path / "imgs", count)
    ds.add_images(store, "d", tmp_path / "imgs", create=True)
    with store.write() as session:
        field = ds.ensure_field(session, ds.dataset_row(session, "d").id, "gt", "detection")
        for i, sample in enumerate(ds.samples(store, "d")):
            for label in (
                Detection("car", Box(0.1, 0.1 + 0.05 * i, 0.3, 0.25), 0.9),
                Detection("dog", Box(0.5, 0.4, 0.35, 0.4 - 0.05 * i), 0.6),
            ):
                session.add(LabelRow(**label_columns(label), sample_id=sample.id, field_id=field.id))


@pytest.mark.slow
def test_ultralytics_verifies_and_trains_on_a_yolo_export(store: Store, tmp_path: Path, monkeypatch):
    pytest.importorskip("ultralytics")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics-settings"))
    boxes_dataset(store, tmp_path)
    export_field(store, "d", "gt", "yolo", tmp_path / "yolo")
    lines = [line.split() for f in (tmp_path / "yolo" / "labels").glob("*.txt") for line in f.read_text().splitlines()]
    assert lines and all(len(line) == 5 for line in lines)  # class + box: the training format, no score column

    from ultralytics.data.utils import verify_image_label

    def verified(root: Path) -> list[tuple[int, int, int, int]]:
        """ultralytics' own check of each image and label file: (missing, found, empty, corrupt)."""
        counts = []
        for image in sorted((root / "images").iterdir()):
            label = root / "labels" / image.with_suffix(".txt").name
            *_, missing, found, empty, corrupt, _ = verify_image_label(
                (str(image), str(label), "", False, 2, 0, 0, False)
            )
            counts.append((missing, found, empty, corrupt))
        return counts

    assert verified(tmp_path / "yolo") == [(0, 1, 0, 0)] * 4
    export_field(store, "d", "gt", "yolo", tmp_path / "scored", with_scores=True)
    assert verified(tmp_path / "scored") == [(0, 1, 0, 1)] * 4  # with scores ultralytics calls each image corrupt

    from ultralytics import YOLO

    model = YOLO("yolo11n.yaml", task="detect")
    model.train(
        data=str(tmp_path / "yolo" / "data.yaml"),
        epochs=1,
        imgsz=64,
        batch=2,
        workers=0,
        device="cpu",
        plots=False,
        amp=False,
        project=str(tmp_path / "runs"),
        name="train",
        verbose=False,
    )
    weights = tmp_path / "runs" / "train" / "weights" / "last.pt"
    assert weights.is_file()
    assert YOLO(str(weights)).names == {0: "car", 1: "dog"}


def test_scores_are_opt_in_for_yolo(store: Store, tmp_path: Path):
    boxes_dataset(store, tmp_path, 1)
    export_field(store, "d", "gt", "yolo", tmp_path / "scored", with_scores=True)
    lines = [
        line.split() for f in (tmp_path / "scored" / "labels").glob("*.txt") for line in f.read_text().splitlines()
    ]
    assert sorted(float(line[-1]) for line in lines) == [0.6, 0.9]
    from verilabel.errors import ConfigError

    with pytest.raises(ConfigError, match="--with-scores is for YOLO"):
        export_field(store, "d", "gt", "coco", tmp_path / "coco", with_scores=True)


def test_pycocotools_loads_a_coco_export_and_scores_it_against_itself(store: Store, tmp_path: Path):
    pytest.importorskip("pycocotools")
    import contextlib
    import copy
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    boxes_dataset(store, tmp_path)
    # and shapes: a polygon and a mask, whose COCO areas are their own, not their boxes'
    mask = np.zeros((30, 48), bool)
    mask[5:25, 8:40] = True  # 20 x 32 = 640 pixels of a 48 x 30 box
    with store.write() as session:
        field = ds.ensure_field(session, ds.dataset_row(session, "d").id, "gt", "detection")
        sample = ds.samples(store, "d")[0]
        triangle = Polygon((((0.5, 0.5), (0.75, 0.5), (0.5, 0.75)),))
        for label in (
            Detection("cat", Box(0.5, 0.5, 0.25, 0.25), 0.8, polygon=triangle),
            Detection("cat", Box(0.1, 0.5, 0.3, 0.25), 0.7, mask=Mask(rle=rle_encode(mask))),
        ):
            session.add(LabelRow(**label_columns(label), sample_id=sample.id, field_id=field.id))
    summary = export_field(store, "d", "gt", "coco", tmp_path / "coco")
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(summary.path)
    assert len(truth.getImgIds()) == 4 and len(truth.getAnnIds()) == summary.labels == 10
    areas = sorted(a["area"] for a in truth.loadAnns(truth.getAnnIds(catIds=truth.getCatIds(catNms=["cat"]))))
    assert areas == [pytest.approx(0.5 * 40 * 30, abs=0.01), 640]  # the triangle: half of 40x30; the mask: its pixels
    for kind in ("bbox", "segm"):
        # segm: the shapes only (COCO's mask evaluation needs a segmentation on each label it compares)
        categories = truth.getCatIds(catNms=["cat"]) if kind == "segm" else truth.getCatIds()
        detections = copy.deepcopy(truth.loadAnns(truth.getAnnIds(catIds=categories)))  # loadRes renumbers them
        with contextlib.redirect_stdout(io.StringIO()):
            evaluation = COCOeval(truth, truth.loadRes(detections), kind)
            evaluation.params.catIds = categories
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        assert evaluation.stats[0] == pytest.approx(1.0), kind  # AP@[.5:.95] of the labels against themselves
