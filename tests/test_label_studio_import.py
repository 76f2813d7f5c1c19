"""Importing a Label Studio project's JSON export (``dataset create --from-label-studio``): people's annotations
come back as labels, with who made them and when. The export below has the shape Label Studio 1.23 writes
(``tests/test_label_studio.py`` checks the same against a real server)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.support.images import write_blob_images
from verilabel.datasets import service as ds
from verilabel.errors import DatasetImportError
from verilabel.formats import label_studio_rle
from verilabel.labels import Classification, Detection
from verilabel.store import Store

CONTROL_NAMES = {"rectanglelabels": "label", "polygonlabels": "polygon", "keypointlabels": "kp"}


def region(kind: str, value: dict, name: str, width: int = 160, height: int = 120, **extra: object) -> dict:
    return {
        "id": f"r-{name}-{kind}",
        "from_name": {"rectanglelabels": "label", "polygonlabels": "polygon", "keypointlabels": "kp"}.get(
            kind, "class"
        ),
        "to_name": "image",
        "type": kind,
        "value": {**value, kind: [name]},
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "origin": "manual",
        **extra,
    }


def annotation(results: list[dict], *, who: str, at: str, cancelled: bool = False, truth: bool = False) -> dict:
    return {
        "id": hash((who, at)) % 1000,
        "completed_by": {"id": 1, "email": who},
        "result": results,
        "was_cancelled": cancelled,
        "ground_truth": truth,
        "created_at": at,
        "updated_at": at,
        "lead_time": 3.2,
    }


PAINTED = np.zeros((120, 160), dtype=bool)  # the brush stroke of one region: an L shape
PAINTED[30:60, 40:100] = True
PAINTED[60:70, 40:50] = True


def export(tmp_path: Path) -> Path:
    box = region("rectanglelabels", {"x": 10.0, "y": 20.0, "width": 25.0, "height": 50.0, "rotation": 0}, "car")
    polygon = region("polygonlabels", {"points": [[50.0, 50.0], [75.0, 50.0], [60.0, 75.0]], "closed": True}, "dog")
    turned = region("rectanglelabels", {"x": 50.0, "y": 10.0, "width": 20.0, "height": 20.0, "rotation": 90}, "car")
    brush = region("brushlabels", {"format": "rle", "rle": label_studio_rle.encode(PAINTED)}, "cat")
    ellipse = region("ellipselabels", {"x": 5.0, "y": 5.0, "radiusX": 2.0, "radiusY": 2.0, "rotation": 0}, "dog")
    wheel = region("keypointlabels", {"x": 12.0, "y": 60.0, "width": 1}, "wheel", parentID=box["id"])
    nose = region("keypointlabels", {"x": 90.0, "y": 80.0, "width": 1}, "nose")  # no parent box
    tasks = [
        {  # two annotations: the later one counts; an ellipse region is not imported (counted)
            "id": 1,
            "data": {"image": "/data/local-files/?d=imgs/img_00000.png"},
            "annotations": [
                annotation([box], who="ann@example.com", at="2026-12-01T10:00:00Z"),
                annotation(
                    [box, polygon, brush, ellipse, wheel, nose], who="bob@example.com", at="2026-12-01T11:00:00Z"
                ),
            ],
            "predictions": [],
        },
        {  # uploaded: Label Studio prefixed the file name; the ground-truth annotation wins over a later one
            "id": 2,
            "data": {"image": "/data/upload/3/0a1b2c3d-img_00001.png"},
            "annotations": [
                annotation([turned], who="eve@example.com", at="2026-12-01T09:00:00Z", truth=True),
                annotation([], who="bob@example.com", at="2026-12-01T12:00:00Z"),
            ],
        },
        {  # a classification; a cancelled (skipped) annotation is ignored
            "id": 3,
            "data": {"image": "http://127.0.0.1:8080/data/local-files/?d=imgs/img_00002.png"},
            "annotations": [
                annotation([region("choices", {}, "indoor")], who="ann@example.com", at="2026-12-01T08:00:00Z"),
                annotation([], who="bob@example.com", at="2026-12-01T13:00:00Z", cancelled=True),
            ],
        },
    ]
    path = tmp_path / "project-1-export.json"
    path.write_text(json.dumps(tasks))
    return path


def test_annotations_come_back_as_labels_with_who_and_when(store: Store, tmp_path: Path):
    write_blob_images(tmp_path / "media" / "imgs", 3)
    summary = ds.import_label_studio(store, "reviewed", export(tmp_path), tmp_path / "media", create=True)
    assert (summary.added, summary.labels, summary.skipped) == (3, 6, {"ellipselabels": 1})
    by_name = {Path(s.path).name: s for s in ds.samples(store, "reviewed")}
    labels = {name: ds.labels_of(store, "reviewed", "ground_truth", by_name[name].id) for name in by_name}

    car, cat, dog, kp = sorted(labels["img_00000.png"], key=lambda label: label.label)
    assert isinstance(cat, Detection) and cat.mask is not None  # the brush, as a mask over its box
    assert (cat.box.x, cat.box.y, cat.box.w, cat.box.h) == pytest.approx((40 / 160, 30 / 120, 60 / 160, 40 / 120))
    assert (cat.mask.load() == PAINTED[30:70, 40:100]).all()
    assert car.keypoints is not None and car.keypoints.names == ("wheel",)  # under its parent box
    assert car.keypoints.points[0] == pytest.approx((0.12, 0.60))
    assert kp.keypoints is not None and kp.keypoints.names == ("nose",)  # no parent: a detection of its own
    assert (kp.box.x, kp.box.y, kp.box.w, kp.box.h) == pytest.approx((0.9, 0.8, 0.0, 0.0))
    assert isinstance(car, Detection) and car.confidence is None
    assert (car.box.x, car.box.y, car.box.w, car.box.h) == pytest.approx((0.10, 0.20, 0.25, 0.50))
    assert car.attributes == {
        "label_studio_task": 1,
        "annotator": "bob@example.com",
        "annotated_at": "2026-12-01T11:00:00Z",
    }
    assert dog.polygon is not None
    assert [c for point in dog.polygon.rings[0] for c in point] == pytest.approx([0.5, 0.5, 0.75, 0.5, 0.6, 0.75])
    assert (dog.box.x, dog.box.y, dog.box.w, dog.box.h) == pytest.approx((0.5, 0.5, 0.25, 0.25))

    (turned,) = labels["img_00001.png"]  # 32 x 24 px turned 90 degrees clockwise about (80, 12) px
    assert turned.attributes["annotator"] == "eve@example.com" and turned.attributes["rotation"] == 90
    assert (turned.box.x, turned.box.y, turned.box.w, turned.box.h) == pytest.approx(
        (0.35, 0.10, 0.15, 0.2 * 160 / 120)
    )

    (choice,) = labels["img_00002.png"]
    assert isinstance(choice, Classification) and choice.label == "indoor"
    assert choice.attributes["annotator"] == "ann@example.com"


def test_a_task_whose_image_is_not_found_names_it_and_imports_nothing(store: Store, tmp_path: Path):
    write_blob_images(tmp_path / "media" / "imgs", 2)  # the third image is missing
    with pytest.raises(DatasetImportError, match=r"1 task images not found .*img_00002.png.*LOCAL_FILES_DOCUMENT_ROOT"):
        ds.import_label_studio(store, "reviewed", export(tmp_path), tmp_path / "media", create=True)
    assert not ds.dataset_exists(store, "reviewed")


def test_not_a_label_studio_export_is_refused_with_what_to_export(store: Store, tmp_path: Path):
    path = tmp_path / "min.json"
    path.write_text(json.dumps([{"image": "x.png", "label": []}]))  # JSON-MIN: no `data`
    with pytest.raises(DatasetImportError, match="export the project as JSON, not JSON-MIN"):
        ds.import_label_studio(store, "reviewed", path, tmp_path, create=True)


def test_the_cli_imports_and_reports_what_it_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from verilabel.cli import main

    write_blob_images(tmp_path / "media" / "imgs", 3)
    args = ["dataset", "create", "reviewed", "--from-label-studio", str(export(tmp_path))]
    assert main(args) != 0 and "--images DIR" in capsys.readouterr().err
    assert main([*args, "--images", str(tmp_path / "media"), "--field", "corrected"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "3 samples added" in out and "6 labels imported" in out and "1 ellipselabels" in out
