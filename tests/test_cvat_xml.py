"""CVAT for images 1.1 XML: export and import through the CLI (a round trip keeps every kind of label), a file
written the way CVAT's documentation shows it, streaming, and errors that say what to do."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from tests.support.images import write_blob_images
from tests.test_export import seeded
from verilabel.datasets import service as ds
from verilabel.datasets.export import export_field
from verilabel.errors import DatasetImportError
from verilabel.formats import cvat_xml
from verilabel.labels import Box, Classification, Detection, Keypoints, Label, Polygon
from verilabel.store import Store
from verilabel.store.convert import label_columns
from verilabel.store.schema import LabelRow


def by_name(store: Store, dataset: str, field: str) -> dict[str, list]:
    return {
        Path(s.path).name: sorted(
            ds.labels_of(store, dataset, field, s.id),
            key=lambda lb: (lb.label, lb.kind, getattr(lb, "box", None) and lb.box.x),
        )
        for s in ds.samples(store, dataset)
    }


def with_tag_and_two_part_polygon(store: Store, tmp_path: Path) -> None:
    """``seeded``'s field, plus on its unlabelled third image a classification and an unscored polygon in two
    parts with CVAT's own ``occluded`` and ``source``."""
    ids = seeded(store, tmp_path)
    rings = (((0.1, 0.1), (0.3, 0.1), (0.2, 0.3)), ((0.5, 0.5), (0.7, 0.5), (0.6, 0.7)))
    extra: list[Label] = [
        Classification("night", 0.6, attributes={"weather": "rain"}),
        Detection(
            "dog",
            Box(0.1, 0.1, 0.6, 0.6),
            polygon=Polygon(rings),
            attributes={"occluded": True, "source": "semi-auto", "legs": 3, "seen_by": ["a", "b"]},
        ),
    ]
    with store.write() as session:
        field = ds.find_field(session, ds.dataset_row(session, "src").id, "gt")
        assert field is not None
        for label in extra:
            session.add(LabelRow(**label_columns(label), sample_id=ids[2], field_id=field.id))


def expected_attributes(label: Label) -> dict[str, object]:
    """What CVAT keeps of a label's attributes: scalars as text, ``occluded``, and ``source`` (inferred from the
    confidence where the label has none of CVAT's)."""
    kept = {k: str(v) for k, v in label.attributes.items() if k not in ("occluded", "source", "seen_by")}
    if label.attributes.get("occluded"):
        kept["occluded"] = True
    return kept | {"source": label.attributes.get("source", "auto" if label.confidence is not None else "manual")}


def test_export_then_import_keeps_boxes_polygons_masks_keypoints_tags_scores_and_attributes(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from verilabel.cli import main

    with_tag_and_two_part_polygon(store, tmp_path)
    out = tmp_path / "cvat"
    assert main(["export", "src", "--field", "gt", "--format", "cvat", "--out", str(out)]) == 0
    assert "Upload annotations > CVAT 1.1" in " ".join(capsys.readouterr().out.split())
    root = ET.parse(out / "annotations.xml").getroot()
    assert root.findtext("version") == "1.1" and [i.get("name") for i in root.iter("image")][-1] == "sub/img_00003.png"
    assert {e.tag for i in root.iter("image") for e in i} == {"box", "polygon", "mask", "skeleton", "tag"}
    parts = [e for e in root.iter("polygon") if e.get("source") == "semi-auto"]
    assert len(parts) == 2 and parts[0].get("group_id") == parts[1].get("group_id") is not None

    args = ["dataset", "create", "back", "--from-cvat", str(out / "annotations.xml")]
    assert main(args) == 2 and "--from-cvat needs --images DIR" in capsys.readouterr().err
    assert main([*args, "--images", str(tmp_path / "imgs")]) == 0
    before, after = by_name(store, "src", "gt"), by_name(store, "back", "ground_truth")
    assert sorted(before) == sorted(after)
    compared = 0
    for name, labels in before.items():
        assert len(after[name]) == len(labels), name
        for old, new in zip(labels, after[name], strict=True):
            assert (new.label, new.confidence) == (old.label, pytest.approx(old.confidence))
            assert new.attributes == expected_attributes(old)
            if isinstance(old, Classification):
                compared += 1
                continue
            assert new.box.as_tuple() == pytest.approx(old.box.as_tuple(), abs=1e-3)
            if old.mask is not None:
                assert new.mask is not None and (new.mask.load() == old.mask.load()).all()  # pixel-exact
            if old.polygon is not None:
                assert new.polygon is not None and len(new.polygon.rings) == len(old.polygon.rings)
                for ring, old_ring in zip(new.polygon.rings, old.polygon.rings, strict=True):
                    assert np.array(ring) == pytest.approx(np.array(old_ring), abs=1e-3)
            if old.keypoints is not None:
                assert new.keypoints is not None
                assert np.array(new.keypoints.points) == pytest.approx(np.array(old.keypoints.points), abs=1e-3)
                assert new.keypoints.names == ("0", "1")  # unnamed points: named by their index
            compared += 1
    assert compared == 6


# As CVAT's documentation shows the format (docs.cvat.ai, "XML annotation format", version 1.1), with one of each
# element verilabel takes, one it does not, and a mask whose run lengths are worked out by hand below.
PUBLISHED = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>7</id><name>street</name><size>1</size><mode>annotation</mode><overlap>0</overlap>
      <labels>
        <label><name>car</name><attributes><attribute><name>colour</name><input_type>select</input_type>
          <values>red\nblue</values></attribute></attributes></label>
        <label><name>road</name></label><label><name>sign</name></label><label><name>person</name></label>
      </labels>
    </task>
    <dumped>2026-11-30 10:00:00.000000+00:00</dumped>
  </meta>
  <image id="0" name="street/frame_000.png" width="160" height="120">
    <box label="car" source="manual" occluded="1" xtl="16.00" ytl="12.00" xbr="48.00" ybr="36.00" z_order="0">
      <attribute name="colour">red</attribute>
    </box>
    <polygon label="road" source="manual" occluded="0" points="0.00,120.00;80.00,60.00;160.00,120.00" z_order="0"/>
    <polyline label="road" source="manual" occluded="0" points="0.00,0.00;10.00,10.00" z_order="0"/>
    <points label="sign" source="manual" occluded="0" points="100.50,20.25" z_order="0"/>
    <mask label="car" source="semi-auto" occluded="0" rle="2, 3, 1, 3, 3" left="100" top="50" width="4" height="3"
      z_order="0"/>
    <tag label="person" source="auto"><attribute name="score">0.75</attribute></tag>
    <skeleton label="person" source="manual" occluded="0" z_order="0">
      <points label="head" outside="0" occluded="0" points="60.00,30.00"/>
      <points label="foot" outside="1" occluded="0" points="0.00,0.00"/>
    </skeleton>
  </image>
</annotations>
"""


def test_a_file_as_cvats_documentation_shows_it(store: Store, tmp_path: Path):
    (image,) = write_blob_images(tmp_path / "images" / "street", 1)
    image.rename(image.with_name("frame_000.png"))
    xml = tmp_path / "annotations.xml"
    xml.write_text(PUBLISHED)
    summary = ds.import_cvat(store, "street", xml, tmp_path / "images", create=True)
    assert (summary.added, summary.labels, summary.skipped) == (1, 6, {"polyline": 1})
    labels = by_name(store, "street", "ground_truth")["frame_000.png"]
    box, mask, person_tag, person, road, sign = labels[0], labels[1], labels[2], labels[3], labels[4], labels[5]
    assert isinstance(box, Detection) and box.mask is None
    assert box.box.as_tuple() == pytest.approx((0.1, 0.1, 0.2, 0.2))
    assert box.attributes == {"colour": "red", "occluded": True, "source": "manual"} and box.confidence is None
    # rle "2, 3, 1, 3, 3" over a 4 x 3 box, row by row from background: 0 0 1 1 / 1 0 1 1 / 1 0 0 0
    assert mask.box.as_tuple() == pytest.approx((100 / 160, 50 / 120, 4 / 160, 3 / 120))
    assert mask.mask.load().astype(int).tolist() == [[0, 0, 1, 1], [1, 0, 1, 1], [1, 0, 0, 0]]
    assert mask.attributes == {"source": "semi-auto"}
    assert isinstance(person_tag, Classification) and person_tag.confidence == 0.75
    assert person.keypoints is not None and person.keypoints.names == ("head", "foot")
    assert person.keypoints.visibility == (1.0, 0.0)  # the foot is outside: not seen
    assert person.box.as_tuple() == pytest.approx((60 / 160, 30 / 120, 0.0, 0.0))  # around the points seen
    assert road.polygon is not None and road.box.as_tuple() == pytest.approx((0.0, 0.5, 1.0, 0.5))
    assert sign.keypoints.points[0] == pytest.approx((100.5 / 160, 20.25 / 120))


def test_a_detection_with_keypoints_comes_back_as_one_label(store: Store, tmp_path: Path):
    """Its box and its skeleton share a group id: the import joins them again."""
    posed = Detection(
        "person",
        Box(0.1, 0.2, 0.3, 0.4),
        0.8,
        keypoints=Keypoints(((0.2, 0.3), (0.3, 0.5)), ("head", "hand"), (1, 0.3)),
    )
    text = io.StringIO()
    cvat_xml.write(text, [("a.png", 200, 100, [posed, Classification("day")])], ["day", "person"], "t")
    (image,) = cvat_xml.read(_written(tmp_path, text.getvalue())).images
    person, day = sorted(image.labels, key=lambda lb: lb.label, reverse=True)
    assert isinstance(day, Classification) and day.confidence is None
    assert person.box.as_tuple() == pytest.approx((0.1, 0.2, 0.3, 0.4)) and person.confidence == 0.8
    assert person.keypoints.names == ("head", "hand") and person.keypoints.visibility == (1.0, 0.25)  # occluded


def _written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "a.xml"
    path.write_text(text)
    return path


def test_many_images_stream_into_valid_xml(tmp_path: Path):
    rng = np.random.default_rng(0)
    images = (
        (f"img_{i:05d}.jpg", 64, 48, [Detection("car", Box(*rng.uniform(0, 0.5, 2), 0.2, 0.3), 0.5)])
        for i in range(2000)
    )
    text = io.StringIO()
    assert cvat_xml.write(text, images, ["car"], "many") == 2000
    read = cvat_xml.read(_written(tmp_path, text.getvalue()))
    assert len(read.images) == 2000 and all(len(i.labels) == 1 for i in read.images)


def test_errors_say_what_to_do(store: Store, tmp_path: Path):
    with pytest.raises(DatasetImportError, match="CVAT XML file not found"):
        cvat_xml.read(tmp_path / "none.xml")
    with pytest.raises(DatasetImportError, match=r"not valid XML .*export the task again as CVAT for images 1.1"):
        cvat_xml.read(_written(tmp_path, "<annotations><image"))
    with pytest.raises(DatasetImportError, match=r"CVAT for video .*export the task as CVAT for images 1.1"):
        cvat_xml.read(_written(tmp_path, '<annotations><track id="0" label="car"/></annotations>'))
    image = '<annotations><image id="0" name="a.png" width="10" height="10">{}</image></annotations>'
    with pytest.raises(DatasetImportError, match=r"image a\.png: <box label='car'> has no ytl=: add it"):
        cvat_xml.read(_written(tmp_path, image.format('<box label="car" xtl="1"/>')))
    with pytest.raises(DatasetImportError, match=r"<mask label='car'> is malformed \(its runs cover 3 pixels, its 2x2"):
        cvat_xml.read(
            _written(tmp_path, image.format('<mask label="car" rle="1, 2" left="0" top="0" width="2" height="2"/>'))
        )
    with pytest.raises(DatasetImportError, match=r"<circle label='x'> is not an element of CVAT for images 1\.1"):
        cvat_xml.read(_written(tmp_path, image.format('<circle label="x"/>')))
    with pytest.raises(DatasetImportError, match="images folder not found"):
        ds.import_cvat(store, "x", _written(tmp_path, PUBLISHED), tmp_path / "nowhere", create=True)
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(
        DatasetImportError, match=r"1 images of .* not found under .*street/frame_000\.png: pass --images"
    ):
        ds.import_cvat(store, "x", _written(tmp_path, PUBLISHED), tmp_path / "elsewhere", create=True)
    assert not ds.dataset_exists(store, "x")


def test_the_export_counts_images_and_labels(store: Store, tmp_path: Path):
    seeded(store, tmp_path)
    summary = export_field(store, "src", "gt", "cvat", tmp_path / "out")
    assert (summary.images, summary.labels) == (4, 4)
    written = ET.parse(summary.path).getroot()
    assert [label.findtext("name") for label in written.iter("label")] == ["car", "dog"]
