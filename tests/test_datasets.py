import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy.orm import Session

from tests.support.images import header_only_png, write_blob_images
from tests.support.transactions import rival_transaction
from verilabel.datasets import service as ds
from verilabel.datasets.views import View, parse_view
from verilabel.errors import ConfigError, ConflictError, DatasetImportError, NotFoundError
from verilabel.labels import Detection
from verilabel.store import Store
from verilabel.store.schema import SampleRow


def make_tree(root: Path) -> None:
    write_blob_images(root, 2, fmt="jpg")
    write_blob_images(root / "sub" / "deeper", 2, start=10, fmt="png")
    for ext in ("webp", "bmp", "tif", "jpeg"):
        Image.new("RGB", (30, 20), "white").save(root / "sub" / f"other.{ext}")
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    Image.new("RGB", (5, 5)).save(root / ".hidden" / "skip.png")


def test_folder_import_is_recursive_and_readding_adds_only_new_files(store: Store, tmp_path: Path):
    make_tree(tmp_path / "imgs")
    ds.create_dataset(store, "d")
    first = ds.add_images(store, "d", tmp_path / "imgs")
    assert first.added == 8 and first.already_present == 0
    write_blob_images(tmp_path / "imgs" / "sub", 1, start=99)
    again = ds.add_images(store, "d", tmp_path / "imgs")
    assert (again.added, again.already_present) == (1, 8)
    samples = ds.samples(store, "d", limit=100)
    assert {Path(s.path).suffix for s in samples} == {".jpg", ".png", ".webp", ".bmp", ".tif", ".jpeg"}
    webp = next(s for s in samples if s.path.endswith(".webp"))
    assert (webp.width, webp.height) == (30, 20)
    assert all(Path(s.path).is_absolute() and str(tmp_path) in s.path for s in samples)  # never copied


def test_two_adds_of_one_folder_at_once_add_each_image_once(store: Store, tmp_path: Path):
    """Another add's transaction is still open when this one writes: it waits for it, then skips what it added
    (on PostgreSQL both would otherwise insert the same paths and one would fail on the unique constraint)."""
    paths = write_blob_images(tmp_path / "imgs", 3)
    ds.create_dataset(store, "d")

    def rival_adds_the_first_image(session: Session) -> None:
        dataset_id = ds.dataset_row(session, "d", lock=True).id
        session.add(
            SampleRow(dataset_id=dataset_id, path=str(paths[0]), width=160, height=120, meta={}, created_at=ds.now())
        )

    with rival_transaction(store, rival_adds_the_first_image, hold=0.5):
        summary = ds.add_images(store, "d", tmp_path / "imgs")
    assert (summary.added, summary.already_present) == (2, 1)
    assert sorted(s.path for s in ds.samples(store, "d")) == sorted(map(str, paths))


def test_unreadable_files_are_kept_as_samples_and_reported(store: Store, tmp_path: Path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"not a jpeg")
    ds.create_dataset(store, "d")
    summary = ds.add_images(store, "d", tmp_path / "imgs")
    assert summary.added == 1 and summary.unreadable == [str(tmp_path / "imgs" / "broken.jpg")]
    assert ds.samples(store, "d")[0].metadata["import_error"].startswith("not a readable image")


def test_exif_rotation_swaps_width_and_height(store: Store, tmp_path: Path):
    (tmp_path / "imgs").mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    Image.new("RGB", (40, 10)).save(tmp_path / "imgs" / "rot.jpg", exif=exif)
    ds.create_dataset(store, "d")
    ds.add_images(store, "d", tmp_path / "imgs")
    sample = ds.samples(store, "d")[0]
    assert (sample.width, sample.height) == (10, 40)


def test_dataset_errors_name_the_fix(store: Store, tmp_path: Path):
    with pytest.raises(NotFoundError, match="dataset create nope"):
        ds.dataset_info(store, "nope")
    ds.create_dataset(store, "d")
    with pytest.raises(ConflictError, match="dataset add d"):
        ds.create_dataset(store, "d")
    with pytest.raises(DatasetImportError, match="not a folder"):
        ds.add_images(store, "d", tmp_path / "missing")


def coco_file(tmp_path: Path) -> Path:
    write_blob_images(tmp_path / "imgs", 2)
    mask = np.zeros((120, 160), bool)
    mask[10:30, 20:60] = True
    from verilabel.labels import rle_encode

    data = {
        "images": [
            {"id": 1, "file_name": "img_00000.png", "width": 160, "height": 120},
            {"id": 2, "file_name": "img_00001.png", "width": 160, "height": 120},
        ],
        "categories": [{"id": 3, "name": "car"}, {"id": 7, "name": "dog"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 3,
                "bbox": [16, 12, 32, 24],
                "score": 0.8,
                "segmentation": [[16, 12, 48, 12, 48, 36]],
            },
            {"id": 2, "image_id": 2, "category_id": 7, "bbox": [20, 10, 40, 20], "segmentation": rle_encode(mask)},
        ],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_import_converts_boxes_polygons_rle_and_scores(store: Store, tmp_path: Path):
    path = coco_file(tmp_path)
    ds.create_dataset(store, "d")
    summary = ds.import_coco(store, "d", path, tmp_path / "imgs")
    assert (summary.added, summary.labels) == (2, 2)
    first, second = ds.samples(store, "d")
    (car,) = ds.labels_of(store, "d", "ground_truth", first.id)
    assert isinstance(car, Detection) and car.label == "car" and car.confidence == 0.8
    assert car.box.as_tuple() == pytest.approx((0.1, 0.1, 0.2, 0.2))
    assert car.polygon is not None and car.polygon.rings[0][1] == pytest.approx((0.3, 0.1))
    (dog,) = ds.labels_of(store, "d", "ground_truth", second.id)
    assert dog.confidence is None and dog.mask is not None
    crop = dog.mask.load()
    assert crop.shape == (20, 40) and crop[:, :].sum() == 20 * 40
    info = ds.dataset_info(store, "d")
    assert info.fields["ground_truth"]["labels"] == 2


def test_coco_errors_are_precise(store: Store, tmp_path: Path):
    ds.create_dataset(store, "d")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DatasetImportError, match="not valid JSON"):
        ds.import_coco(store, "d", tmp_path / "bad.json", tmp_path)
    (tmp_path / "orphan.json").write_text(
        json.dumps(
            {
                "images": [],
                "categories": [],
                "annotations": [{"id": 5, "image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1]}],
            }
        )
    )
    with pytest.raises(DatasetImportError, match="annotation 5 refers to unknown image 9"):
        ds.import_coco(store, "d", tmp_path / "orphan.json", tmp_path)


def test_yolo_import_reads_boxes_polygons_and_names(store: Store, tmp_path: Path):
    root = tmp_path / "yolo"
    write_blob_images(root / "images" / "train", 2)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "data.yaml").write_text("names:\n  0: cat\n  1: dog\n")
    (root / "labels" / "train" / "img_00000.txt").write_text("1 0.5 0.5 0.2 0.4\n0 0.25 0.25 0.1 0.1 0.9\n")
    (root / "labels" / "train" / "img_00001.txt").write_text("0 0.1 0.1 0.3 0.1 0.3 0.4\n")
    ds.create_dataset(store, "d")
    summary = ds.import_yolo(store, "d", root)
    assert (summary.added, summary.labels) == (2, 3)
    first, second = ds.samples(store, "d")
    labels = ds.labels_of(store, "d", "ground_truth", first.id)
    dog = next(label for label in labels if label.label == "dog")
    assert dog.box.as_tuple() == pytest.approx((0.4, 0.3, 0.2, 0.4))
    assert next(label for label in labels if label.label == "cat").confidence == 0.9
    (poly,) = ds.labels_of(store, "d", "ground_truth", second.id)
    assert poly.polygon is not None and poly.box.as_tuple() == pytest.approx((0.1, 0.1, 0.2, 0.3))
    (root / "labels" / "train" / "img_00001.txt").write_text("5 0.1 0.1 0.1 0.1\n")
    ds.create_dataset(store, "e")
    with pytest.raises(DatasetImportError, match="class index 5"):
        ds.import_yolo(store, "e", root)


VOC_FILE = """<annotation>
  <folder>images</folder><filename>{name}</filename><path>/elsewhere/{name}</path>
  <size><width>160</width><height>120</height><depth>3</depth></size>
  <object><name>person</name><pose>Left</pose><truncated>1</truncated><difficult>1</difficult>
    <bndbox><xmin>17</xmin><ymin>13</ymin><xmax>48.0</xmax><ymax>36</ymax></bndbox></object>
  <object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>160</xmax><ymax>120</ymax></bndbox></object>
</annotation>
"""


def test_voc_import_reads_boxes_flags_and_finds_images_beside_their_files(store: Store, tmp_path: Path):
    root = tmp_path / "labelimg"  # LabelImg's layout: each XML file beside its image
    write_blob_images(root, 2)
    (root / "img_00000.xml").write_text(VOC_FILE.format(name="img_00000.png"))
    (root / "img_00001.xml").write_text(VOC_FILE.format(name="missing.png"))
    ds.create_dataset(store, "d")
    summary = ds.import_voc(store, "d", root)
    assert (summary.added, summary.labels) == (2, 4)
    assert summary.unreadable == [str(root / "missing.png")]  # kept as a sample and reported
    first = next(s for s in ds.samples(store, "d") if s.path.endswith("img_00000.png"))
    person, dog = sorted(ds.labels_of(store, "d", "ground_truth", first.id), key=lambda label: label.label)[::-1]
    assert person.box.as_tuple() == pytest.approx((0.1, 0.1, 0.2, 0.2))
    assert person.attributes == {"truncated": 1, "difficult": 1, "pose": "Left"} and person.confidence is None
    assert dog.box.as_tuple() == pytest.approx((0.0, 0.0, 1.0, 1.0)) and dog.attributes == {}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("<annotation><size>", "not valid XML"),
        ("<coco/>", "root element is <coco>"),
        ("<annotation><filename>a.png</filename></annotation>", "<size> is missing"),
        (VOC_FILE.format(name="a.png").replace("<xmin>17</xmin>", ""), "object 1: <xmin> is missing"),
        (VOC_FILE.format(name="a.png").replace("<ymax>36</ymax>", "<ymax>x</ymax>"), "<ymax> is 'x', not a number"),
    ],
)
def test_voc_errors_name_the_file_and_the_element(store: Store, tmp_path: Path, text: str, error: str):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "bad.xml").write_text(text)
    ds.create_dataset(store, "d")
    with pytest.raises(DatasetImportError, match=error) as caught:
        ds.import_voc(store, "d", tmp_path)
    assert "bad.xml" in str(caught.value)


def test_views_filter_by_tags_ids_and_label_fields(store: Store, tmp_path: Path):
    coco = coco_file(tmp_path)
    ds.create_dataset(store, "d")
    ds.import_coco(store, "d", coco, tmp_path / "imgs")
    write_blob_images(tmp_path / "more", 1, start=5)
    ds.add_images(store, "d", tmp_path / "more")
    a, b, c = (s.id for s in ds.samples(store, "d"))
    ds.tag_samples(store, "d", ["needs-fix"], View(ids=[b, c]))

    def ids(expr: str) -> list[int]:
        return ds.sample_ids(store, "d", parse_view(expr))

    assert ids("tags=needs-fix") == [b, c]
    assert ids("ids=1,3") == [1, 3]
    assert ids("has=ground_truth") == [a, b]
    assert ids("missing=ground_truth") == [c]
    assert ids("ground_truth.label=dog") == [b]
    assert ids("ground_truth.confidence>=0.5") == [a]
    assert ids("ground_truth.confidence<0.8") == []
    assert ids("ground_truth.label=car; ground_truth.confidence>0.9") == []
    assert ids("tags=needs-fix; has=ground_truth") == [b]
    assert ds.dataset_info(store, "d").tags == {"needs-fix": 2}


@pytest.mark.parametrize("bad", ["tags>3", "what=1", "gt.confidence>=x", "ids=a", "nonsense"])
def test_bad_view_expressions_explain_the_grammar(bad):
    with pytest.raises(ConfigError) as info:
        parse_view(bad)
    assert info.value.field == "view"


def test_a_decompression_bomb_is_kept_with_its_size_and_reported_not_fatal(store: Store, tmp_path: Path):
    write_blob_images(tmp_path / "imgs", 2)
    bomb = header_only_png(tmp_path / "imgs" / "huge.png", 30000, 30000)
    summary = ds.add_images(store, "d", tmp_path / "imgs", create=True)
    assert summary.added == 3 and summary.unreadable == [str(bomb)]
    huge = next(s for s in ds.samples(store, "d") if s.path == str(bomb))
    assert (huge.width, huge.height) == (30000, 30000)
    assert "30000x30000 = 900 Mpx, above the limit of 179 Mpx" in huge.metadata["import_error"]


def test_a_failed_create_leaves_no_dataset_behind(store: Store, tmp_path: Path):
    with pytest.raises(DatasetImportError, match="not a folder"):
        ds.add_images(store, "ghost", tmp_path / "nonexistent", create=True)
    (tmp_path / "bad.json").write_text(
        '{"images": [{"id": 1, "file_name": "a.png", "width": 4, "height": 4}], '
        '"annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [0,0,1,1]}]}'
    )
    with pytest.raises(DatasetImportError):
        ds.import_coco(store, "ghost", tmp_path / "bad.json", tmp_path, create=True)
    (tmp_path / "labelled").mkdir()
    (tmp_path / "labelled" / "data.yaml").write_text("names: [cat]\n")
    with pytest.raises(DatasetImportError, match="no images under"):
        ds.import_yolo(store, "ghost", tmp_path / "labelled", create=True)
    assert ds.list_datasets(store) == []
    write_blob_images(tmp_path / "imgs", 1)
    assert ds.add_images(store, "ghost", tmp_path / "imgs", create=True).added == 1  # the retry just works
    with pytest.raises(ConflictError, match="already exists"):
        ds.add_images(store, "ghost", tmp_path / "imgs", create=True)


def test_coco_sample_tags_are_imported_with_the_samples(store: Store, tmp_path: Path):
    write_blob_images(tmp_path / "imgs", 2)
    document = {
        "images": [
            {"id": 1, "file_name": "img_00000.png", "width": 160, "height": 120, "tags": ["night", "blurry"]},
            {"id": 2, "file_name": "img_00001.png", "width": 160, "height": 120, "tags": ["night"]},
        ],
        "annotations": [],
        "categories": [{"id": 1, "name": "cat"}],
    }
    (tmp_path / "c.json").write_text(json.dumps(document))
    ds.import_coco(store, "d", tmp_path / "c.json", tmp_path / "imgs", create=True)
    assert ds.dataset_info(store, "d").tags == {"blurry": 1, "night": 2}
