"""FiftyOne, for real: a field exported to a FiftyOne dataset (read back with FiftyOne's own API), a dataset made
with FiftyOne's API imported into verilabel, and the round trip.

FiftyOne pins an older starlette than verilabel's app, so it is not in ``verilabel[all]``: ``.ci/run`` runs this
file in a virtualenv of its own (verilabel + ``verilabel[fiftyone]`` + pytest). Elsewhere it is skipped. Its
database lives in the test's folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.images import write_blob_images
from tests.test_export import seeded
from verilabel.datasets import service as ds
from verilabel.datasets.export import export_field
from verilabel.errors import ConflictError, DatasetImportError
from verilabel.labels import Classification, Detection
from verilabel.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fiftyone_module(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """FiftyOne with its database (and config) in a folder of this module's own (it starts once)."""
    folder = tmp_path_factory.mktemp("fiftyone")
    os.environ["FIFTYONE_DATABASE_DIR"] = str(folder / "db")
    os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
    os.environ["FIFTYONE_CONFIG_PATH"] = str(folder / "config.json")
    return pytest.importorskip("fiftyone", reason="FiftyOne is not installed here (see .ci/run)")


@pytest.fixture
def fo(fiftyone_module: Any) -> Iterator[Any]:
    """FiftyOne, its datasets deleted after each test (tests run once per store kind)."""
    yield fiftyone_module
    for name in fiftyone_module.list_datasets():
        fiftyone_module.delete_dataset(name)


def test_a_field_becomes_a_fiftyone_dataset(fo: Any, store: Store, tmp_path: Path):
    ids = seeded(store, tmp_path)
    summary = export_field(store, "src", "gt", "fiftyone", "vl-src")
    assert (summary.images, summary.labels, summary.path) == (4, 4, "vl-src")
    dataset = fo.load_dataset("vl-src")
    assert len(dataset) == 4 and dataset.persistent
    by_path = {s.filepath: s for s in dataset}
    samples = {s.id: s for s in ds.samples(store, "src")}
    first = by_path[samples[ids[0]].path]
    car, _ = sorted(first["gt"].detections, key=lambda d: d.label)
    assert car.bounding_box == pytest.approx([0.1, 0.1, 0.2, 0.2]) and car.confidence == pytest.approx(0.9)
    assert car["make"] == "vw" and car.tags == ["needs-fix"] and first.metadata.width == 160
    (outline,) = first["gt_polylines"].polylines
    assert outline.label == "dog" and np.array(outline.points[0]) == pytest.approx(
        np.array([[0.5, 0.5], [0.75, 0.5], [0.6, 0.75]])
    )
    (masked,) = by_path[samples[ids[1]].path]["gt"].detections
    (ours,) = ds.labels_of(store, "src", "gt", ids[1])
    assert (np.asarray(masked.mask) == ours.mask.load()).all()
    (posed,) = by_path[samples[ids[3]].path]["gt_keypoints"].keypoints
    assert np.array(posed.points) == pytest.approx(np.array([[0.25, 0.25], [0.75, 0.75]])) and posed.confidence == [
        1.0,
        0.5,
    ]
    with pytest.raises(ConflictError, match="--overwrite to replace it"):
        export_field(store, "src", "gt", "fiftyone", "vl-src")
    assert export_field(store, "src", "gt", "fiftyone", "vl-src", overwrite=True).images == 4


def test_a_fiftyone_dataset_comes_into_verilabel(
    fo: Any, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from verilabel.cli import main

    paths = write_blob_images(tmp_path / "media", 3)
    mask = np.zeros((12, 16), dtype=bool)
    mask[2:10, 3:12] = True
    dataset = fo.Dataset("made-in-fiftyone")
    dataset.add_samples(
        [
            fo.Sample(
                filepath=str(paths[0]),
                tags=["train"],
                ground_truth=fo.Detections(
                    detections=[
                        fo.Detection(label="car", bounding_box=[0.1, 0.2, 0.3, 0.4], confidence=0.8, colour="red"),
                        fo.Detection(label="dog", bounding_box=[0.5, 0.5, 0.1, 0.1], mask=mask),
                    ]
                ),
                scene=fo.Classification(label="street", confidence=0.6),
            ),
            fo.Sample(filepath=str(paths[1]), ground_truth=fo.Detections(detections=[])),
            fo.Sample(filepath=str(paths[2]), semantic=fo.Segmentation(mask=np.zeros((4, 4), dtype=np.uint8))),
        ]
    )
    args = ["dataset", "create", "imported", "--from-fiftyone", "made-in-fiftyone"]
    assert main([*args, "--json"]) == 0
    out = capsys.readouterr().out
    assert '"added": 3' in out and '"labels": 2' in out
    by_name = {Path(s.path).name: s for s in ds.samples(store, "imported")}
    assert by_name[paths[0].name].tags == ["train"]
    car, dog = sorted(ds.labels_of(store, "imported", "ground_truth", by_name[paths[0].name].id), key=lambda x: x.label)
    assert isinstance(car, Detection) and car.box.as_tuple() == pytest.approx((0.1, 0.2, 0.3, 0.4))
    assert car.confidence == pytest.approx(0.8) and car.attributes == {"colour": "red"}
    assert dog.mask is not None and (dog.mask.load() == mask).all()

    assert main([*args[:2], "scenes", "--from-fiftyone", "made-in-fiftyone", "--fiftyone-field", "scene"]) == 0
    (scene,) = [lb for s in ds.samples(store, "scenes") for lb in ds.labels_of(store, "scenes", "ground_truth", s.id)]
    assert isinstance(scene, Classification) and (scene.label, scene.confidence) == ("street", pytest.approx(0.6))

    semantic = ds.import_fiftyone(store, "semantic", "made-in-fiftyone", "semantic", create=True)
    assert (semantic.labels, semantic.skipped) == (0, {"Segmentation": 1})  # not a label verilabel takes: counted
    with pytest.raises(DatasetImportError, match="has no field 'nothing': pass --fiftyone-field, one of"):
        ds.import_fiftyone(store, "x", "made-in-fiftyone", "nothing", create=True)
    with pytest.raises(DatasetImportError, match="FiftyOne has no dataset 'absent'"):
        ds.import_fiftyone(store, "x", "absent", "ground_truth", create=True)


def test_round_trip_through_fiftyone_keeps_the_labels(fo: Any, store: Store, tmp_path: Path):
    ids = seeded(store, tmp_path)
    export_field(store, "src", "gt", "fiftyone", "trip")
    ds.import_fiftyone(store, "back", "trip", "gt", create=True)
    before = {s.path: ds.labels_of(store, "src", "gt", s.id) for s in ds.samples(store, "src")}
    after = {s.path: ds.labels_of(store, "back", "ground_truth", s.id) for s in ds.samples(store, "back")}
    assert len(ids) == len(after) == 4
    for path, labels in before.items():
        assert sorted((x.label, round(x.confidence, 4)) for x in after[path]) == sorted(
            (x.label, round(x.confidence, 4)) for x in labels
        )
