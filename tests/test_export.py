"""Export round trips: COCO, YOLO and Pascal VOC exports re-import as the same labels."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from tests.support.images import write_blob_images
from verilabel.datasets import service as ds
from verilabel.datasets.export import export_field
from verilabel.datasets.views import parse_view
from verilabel.errors import ConfigError
from verilabel.labels import Box, Classification, Detection, Keypoints, Mask, Polygon
from verilabel.store import Store
from verilabel.store.convert import label_columns
from verilabel.store.schema import LabelRow


def seeded(store: Store, tmp_path: Path) -> list[int]:
    """A dataset with a field of boxes, polygons, RLE masks and keypoints, confidences and tags."""
    write_blob_images(tmp_path / "imgs", 3)
    write_blob_images(tmp_path / "imgs" / "sub", 1, start=3)
    ds.create_dataset(store, "src")
    ds.add_images(store, "src", tmp_path / "imgs")
    ids = [s.id for s in ds.samples(store, "src")]
    mask = np.zeros((24, 32), bool)
    mask[4:20, 6:30] = True
    labels = {
        ids[0]: [
            Detection("car", Box(0.1, 0.1, 0.2, 0.2), 0.9, tags=["needs-fix"], attributes={"make": "vw"}),
            Detection(
                "dog", Box(0.5, 0.5, 0.25, 0.25), 0.4, polygon=Polygon((((0.5, 0.5), (0.75, 0.5), (0.6, 0.75)),))
            ),
        ],
        ids[1]: [
            Detection(
                "dog",
                Box(0.25, 0.25, 0.2, 0.2),
                0.7,
                mask=Mask(rle=__import__("verilabel.labels", fromlist=["rle_encode"]).rle_encode(mask)),
            )
        ],
        ids[3]: [
            Detection(
                "car",
                Box(0.0, 0.0, 1.0, 1.0),
                0.55,
                keypoints=Keypoints(((0.25, 0.25), (0.75, 0.75)), visibility=(1.0, 0.5)),
            )
        ],
    }
    with store.write() as session:
        field = ds.ensure_field(session, ds.dataset_row(session, "src").id, "gt", "detection")
        for sample_id, sample_labels in labels.items():
            for label in sample_labels:
                session.add(LabelRow(**label_columns(label), sample_id=sample_id, field_id=field.id))
    return ids


def add_classification_field(store: Store) -> None:
    """Field ``kind`` of dataset ``src``: one classification (cat, 0.8) on the first sample."""
    with store.write() as session:
        field = ds.ensure_field(session, ds.dataset_row(session, "src").id, "kind", "classification")
        sample_id = ds.samples(store, "src")[0].id
        session.add(LabelRow(**label_columns(Classification("cat", 0.8)), sample_id=sample_id, field_id=field.id))


def summary(store: Store, dataset: str, field: str) -> list[tuple]:
    rows = []
    for sample in ds.samples(store, dataset, limit=100):
        for label in ds.labels_of(store, dataset, field, sample.id):
            assert isinstance(label, Detection)
            rows.append(
                (
                    Path(sample.path).resolve().name,
                    label.label,
                    round(label.confidence or 0, 4),
                    tuple(round(v, 3) for v in label.box.as_tuple()),
                    tuple(label.tags),
                    label.polygon is not None or label.mask is not None,
                )
            )
    return sorted(rows)


def test_coco_round_trip(store: Store, tmp_path: Path):
    ids = seeded(store, tmp_path)
    ds.tag_samples(store, "src", ["needs-fix"], parse_view(f"ids={ids[1]}"))
    result = export_field(store, "src", "gt", "coco", tmp_path / "out")
    assert (result.images, result.labels) == (4, 4)
    document = json.loads(Path(result.path).read_text())
    assert {c["name"] for c in document["categories"]} == {"car", "dog"}
    rle = next(a for a in document["annotations"] if isinstance(a.get("segmentation"), dict))
    assert rle["segmentation"]["size"] == [120, 160] and sum(rle["segmentation"]["counts"]) == 120 * 160
    ds.create_dataset(store, "back")
    ds.import_coco(store, "back", result.path, document["info"]["images_root"], field_name="gt")
    assert summary(store, "back", "gt") == summary(store, "src", "gt")
    assert ds.dataset_info(store, "back").tags == {"needs-fix": 1}  # sample tags travel in the image records
    assert [Path(s.path).name for s in ds.samples(store, "back", parse_view("tags=needs-fix"))] == ["img_00001.png"]
    back_mask = next(
        label.mask.load()
        for s in ds.samples(store, "back")
        for label in ds.labels_of(store, "back", "gt", s.id)
        if label.mask is not None
    )
    assert back_mask.sum() == 16 * 24


def test_yolo_round_trip_links_media(store: Store, tmp_path: Path):
    seeded(store, tmp_path)
    result = export_field(store, "src", "gt", "yolo", tmp_path / "yolo", with_scores=True)
    assert (result.images, result.labels) == (4, 4)
    images = sorted((tmp_path / "yolo" / "images").iterdir())
    assert all(p.is_symlink() for p in images)
    ds.create_dataset(store, "back")
    ds.import_yolo(store, "back", tmp_path / "yolo", field_name="gt")
    exported = summary(store, "src", "gt")
    imported = summary(store, "back", "gt")
    # YOLO segments carry no separate box: a mask comes back as a polygon whose extent is the mask's
    masked = [i for i, row in enumerate(exported) if row[0] == "img_00001.png"]
    assert [row[:4] for i, row in enumerate(imported) if i not in masked] == [
        row[:4] for i, row in enumerate(exported) if i not in masked
    ]
    (mask_row,) = [imported[i] for i in masked]
    x, y, w, h = mask_row[3]
    assert mask_row[5] and x >= 0.25 and y >= 0.25 and x + w <= 0.451 and y + h <= 0.451


def test_voc_round_trip_in_the_devkit_layout(store: Store, tmp_path: Path):
    seeded(store, tmp_path)
    result = export_field(store, "src", "gt", "voc", tmp_path / "voc")
    assert (result.images, result.labels) == (4, 4)
    root = tmp_path / "voc"
    xml_files = sorted((root / "Annotations").glob("*.xml"))
    assert len(xml_files) == 4 and all(p.is_symlink() for p in (root / "JPEGImages").iterdir())
    assert (root / "labels.txt").read_text().split() == ["car", "dog"]
    assert sorted((root / "ImageSets" / "Main" / "all.txt").read_text().split()) == [p.stem for p in xml_files]
    # the car box covers pixels 16..47 x 12..35 of the 160x120 image: VOC counts them from 1
    car = next(obj for p in xml_files for obj in ET.parse(p).getroot().iter("object") if obj.findtext("name") == "car")
    bndbox = car.find("bndbox")
    assert bndbox is not None
    assert [bndbox.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")] == ["17", "13", "48", "36"]
    assert (car.findtext("confidence"), car.findtext("difficult"), car.findtext("pose")) == ("0.9", "0", "Unspecified")
    ds.create_dataset(store, "back")
    ds.import_voc(store, "back", root, field_name="gt")
    # VOC detection files hold boxes only: classes, scores and boxes come back, shapes and label tags do not
    assert [row[:4] for row in summary(store, "back", "gt")] == [row[:4] for row in summary(store, "src", "gt")]
    assert {Path(s.path) for s in ds.samples(store, "back")} == {Path(s.path) for s in ds.samples(store, "src")}


def test_label_studio_tasks_use_percent_regions_its_config_declares(store: Store, tmp_path: Path):
    ids = seeded(store, tmp_path)
    result = export_field(store, "src", "gt", "label-studio", tmp_path / "ls")
    assert (result.images, result.labels) == (4, 4)
    # Label Studio wants the storage's folder (the images') strictly below its document root
    assert f"LOCAL_FILES_DOCUMENT_ROOT={tmp_path}," in result.next_step
    assert f"Local files storage for {tmp_path / 'imgs'}," in result.next_step
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    by_sample = {task["meta"]["verilabel_sample_id"]: task for task in tasks}
    assert by_sample[ids[3]]["data"]["image"] == "/data/local-files/?d=imgs/sub/img_00003.png"
    assert by_sample[ids[2]]["predictions"] == []  # no labels: a task to annotate from scratch
    car, dog = sorted(by_sample[ids[0]]["predictions"][0]["result"], key=lambda r: r["type"])[::-1]
    assert car["type"] == "rectanglelabels" and car["score"] == 0.9
    assert car["value"] == {
        "x": 10.0,
        "y": 10.0,
        "width": 20.0,
        "height": 20.0,
        "rotation": 0,
        "rectanglelabels": ["car"],
    }
    assert (car["original_width"], car["original_height"]) == (160, 120)
    assert dog["type"] == "polygonlabels" and dog["value"]["points"] == [[50.0, 50.0], [75.0, 50.0], [60.0, 75.0]]
    (masked,) = by_sample[ids[1]]["predictions"][0]["result"]  # a mask: its outline, inside its box
    assert masked["type"] == "polygonlabels" and len(masked["value"]["points"]) >= 4
    assert all(25 <= x <= 45 and 25 <= y <= 45 for x, y in masked["value"]["points"])
    config = ET.fromstring((tmp_path / "ls" / "label_config.xml").read_text())
    declared = {
        (c.tag, c.get("name"), c.get("toName")): {i.get("value") for i in c} for c in config if c.tag != "Image"
    }
    assert declared == {
        ("RectangleLabels", "label", "image"): {"car", "dog"},
        ("PolygonLabels", "polygon", "image"): {"car", "dog"},
        ("KeyPointLabels", "keypoint", "image"): {"0", "1"},  # unnamed points: by their index
    }
    posed, *points = by_sample[ids[3]]["predictions"][0]["result"]  # a detection's keypoints follow its box
    assert [(p["value"]["x"], p["value"]["y"], p["value"]["keypointlabels"], p["score"]) for p in points] == [
        (25.0, 25.0, ["0"], 1.0),
        (75.0, 75.0, ["1"], 0.5),
    ]
    assert {p["parentID"] for p in points} == {posed["id"]} and posed["type"] == "rectanglelabels"


def test_label_studio_export_of_classifications_uses_choices(store: Store, tmp_path: Path):
    seeded(store, tmp_path)
    add_classification_field(store)
    export_field(store, "src", "kind", "label-studio", tmp_path / "ls")
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    (choice,) = next(t for t in tasks if t["predictions"])["predictions"][0]["result"]
    assert (choice["type"], choice["from_name"], choice["value"]) == ("choices", "class", {"choices": ["cat"]})
    config = ET.fromstring((tmp_path / "ls" / "label_config.xml").read_text())
    (choices,) = config.iter("Choices")
    assert choices.get("name") == "class" and [c.get("value") for c in choices] == ["cat"]


def test_voc_and_yolo_exports_refuse_classification_fields(store: Store, tmp_path: Path):
    seeded(store, tmp_path)
    add_classification_field(store)
    for fmt in ("voc", "yolo"):
        with pytest.raises(ConfigError, match=f"{fmt.upper()} export takes detection fields"):
            export_field(store, "src", "kind", fmt, tmp_path / fmt)


def test_export_of_a_view_and_errors(store: Store, tmp_path: Path):
    ids = seeded(store, tmp_path)
    result = export_field(store, "src", "gt", "coco", tmp_path / "view", view=parse_view(f"ids={ids[0]}"))
    assert (result.images, result.labels) == (1, 2)
    with pytest.raises(ConfigError, match="no label field 'nope'"):
        export_field(store, "src", "nope", "coco", tmp_path / "x")
    with pytest.raises(ConfigError, match="coco, yolo, voc, label-studio"):
        export_field(store, "src", "gt", "pascal", tmp_path / "x")


def test_fiftyone_without_the_package_says_how_to_install_it(store: Store, tmp_path: Path):
    import importlib.util

    if importlib.util.find_spec("fiftyone") is not None:
        pytest.skip("FiftyOne is installed here: tests/test_fiftyone.py exports for real")
    seeded(store, tmp_path)
    with pytest.raises(ConfigError, match=r"FiftyOne is not installed: pip install 'verilabel\[fiftyone\]'"):
        export_field(store, "src", "gt", "fiftyone", "name")


def test_an_unreadable_sample_without_labels_is_left_out_and_a_failed_export_leaves_no_part(
    store: Store, tmp_path: Path
):
    """The demo's dataset holds a file no decoder reads (no size): exports leave it out. With labels it cannot be
    exported: the error names it, and no partial file stays behind."""
    ids = seeded(store, tmp_path)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not an image")
    ds.add_images(store, "src", tmp_path / "imgs")
    for fmt in ("coco", "cvat", "label-studio", "voc"):
        assert export_field(store, "src", "gt", fmt, tmp_path / fmt).images == len(ids), fmt
    broken = next(s.id for s in ds.samples(store, "src") if s.path.endswith("broken.png"))
    with store.write() as session:
        field = ds.ensure_field(session, ds.dataset_row(session, "src").id, "gt", "detection")
        session.add(
            LabelRow(**label_columns(Detection("car", Box(0, 0, 0.5, 0.5), 0.5)), sample_id=broken, field_id=field.id)
        )
    for fmt in ("coco", "cvat", "label-studio"):
        with pytest.raises(ConfigError, match=r"broken\.png\) has labels but no known size"):
            export_field(store, "src", "gt", fmt, tmp_path / f"{fmt}-2")
        assert list((tmp_path / f"{fmt}-2").iterdir()) == [], fmt  # neither the file nor its part
