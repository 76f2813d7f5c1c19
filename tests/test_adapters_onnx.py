"""A YOLO detector exported to ONNX with ultralytics' own exporter, run through the registry with onnxruntime;
checked against the torch adapter on the same weights and with known raw outputs forced through the NMS."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")  # ultralytics' exporter needs it
torch = pytest.importorskip("torch")
if importlib.util.find_spec("ultralytics") is None:
    pytest.skip("ultralytics is not installed (it builds the test models)", allow_module_level=True)

from tests.support.random_models_ultralytics import save_onnx  # noqa: E402
from verilabel import ImageItem, PredictContext  # noqa: E402
from verilabel.errors import ConfigError, ModelLoadError  # noqa: E402
from verilabel.models import registry  # noqa: E402
from verilabel.models.adapters.onnx_yolo import nms, select  # noqa: E402
from verilabel.models.checks import check_predictions  # noqa: E402
from verilabel.models.interface import LoadRequest  # noqa: E402

pytestmark = pytest.mark.torch

NAMES = ("cat", "dog", "bird")
IMGSZ = 320


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("onnx")
    batched = save_onnx(folder / "batched", names=NAMES, imgsz=IMGSZ, dynamic=True)
    single = save_onnx(folder / "single", names=NAMES, imgsz=IMGSZ, dynamic=False)
    return {"batched": batched, "single": single, "checkpoint": batched.with_suffix(".pt")}


def load(weights: Path, **options: Any) -> tuple[Any, registry.ModelRef]:
    ref = registry.resolve("onnx-yolo", str(weights))
    return registry.load(ref, LoadRequest(weights=str(weights), device="cpu", options=options)), ref


def image(seed: int, width: int, height: int) -> ImageItem:
    return ImageItem(seed, f"{seed}.jpg", np.random.default_rng(seed).integers(0, 255, (height, width, 3), np.uint8))


def test_names_come_from_the_metadata_and_predictions_keep_the_contract(exports):
    for kind in ("batched", "single"):
        model, ref = load(exports[kind])
        assert ref.vocabulary == NAMES and model.spec.vocabulary == NAMES and model.spec.input_size == IMGSZ
        assert model.spec.batch_size == (8 if kind == "batched" else 1)
        items = [image(0, 320, 240), image(1, 200, 300), image(2, 50, 40)]
        for item in items:
            item.prepared = model.prepare(item.array)
            assert item.prepared.shape == (IMGSZ, IMGSZ, 3) and item.prepared.dtype == np.uint8
        context = PredictContext("detection", NAMES, 0.3)
        results = check_predictions(model.spec, context, items, model.predict(items, context))
        labels = [label for result in results for label in result]
        assert labels and all(label.confidence >= 0.3 for label in labels)
        birds = model.predict(items, PredictContext("detection", ("bird",), 0.3))
        assert {label.label for result in birds for label in result} == {"bird"}


def test_onnx_predictions_match_the_torch_adapter_on_the_same_weights(exports):
    onnx_model, _ = load(exports["batched"])
    ref = registry.resolve("yolo11n-coco", str(exports["checkpoint"]))
    torch_model = registry.load(
        ref, LoadRequest(weights=str(exports["checkpoint"]), device="cpu", options={"imgsz": IMGSZ})
    )
    items = [image(3, 311, 237), image(5, 200, 300)]
    prepared = [onnx_model.prepare(item.array) for item in items]
    raw = onnx_model.forward(prepared)
    np.testing.assert_allclose(raw, torch_model.forward(prepared).predictions.numpy(), atol=0.02)
    # Random weights can saturate scores at exactly 1.0 on some noise images, and NMS then picks among equals
    # by implementation detail; these two images stay clear of that.
    assert raw[:, 4:].max() < 0.999
    context = PredictContext("detection", NAMES, 0.25)
    for ours, theirs in zip(onnx_model.predict(items, context), torch_model.predict(items, context), strict=True):
        assert len(ours) == len(theirs) > 0
        unmatched = list(theirs)
        for label in ours:
            twin = next(t for t in unmatched if t.label == label.label and same_place(label, t))
            unmatched.remove(twin)


def same_place(a: Any, b: Any) -> bool:
    return abs(a.confidence - b.confidence) < 1e-3 and np.allclose(a.box.as_tuple(), b.box.as_tuple(), atol=1e-3)


def test_forced_outputs_land_on_the_original_image(exports, monkeypatch):
    model, _ = load(exports["batched"], iou=0.5)
    rows = np.array(
        [
            [64, 88, 64, 48, 0.9, 0.0, 0.0],  # a cat at (32, 24)-(96, 72) of a 320x240 image (40 px grey above)
            [66, 88, 64, 48, 0.8, 0.0, 0.0],  # the same cat again: suppressed
            [66, 88, 64, 48, 0.0, 0.7, 0.0],  # a dog on the same place: kept (NMS is per class)
            [200, 150, 40, 40, 0.0, 0.0, 0.3],  # a faint bird
        ],
        dtype=np.float32,
    ).T[None]
    monkeypatch.setattr(model, "forward", lambda prepared: np.repeat(rows, len(prepared), axis=0))
    item = image(0, 320, 240)
    labels = model.predict([item], PredictContext("detection", NAMES, 0.25))[0]
    assert sorted((label.label, round(label.confidence, 3)) for label in labels) == [
        ("bird", 0.3),
        ("cat", 0.9),
        ("dog", 0.7),
    ]
    cat = next(label for label in labels if label.label == "cat")
    assert cat.box.as_tuple() == pytest.approx((0.1, 0.1, 0.2, 0.2))
    ref = registry.resolve("onnx-yolo", str(exports["batched"]))
    capped = registry.load(ref, LoadRequest(weights=str(exports["batched"]), device="cpu", classes=NAMES, max_labels=1))
    monkeypatch.setattr(capped, "forward", lambda prepared: np.repeat(rows, len(prepared), axis=0))
    assert [label.label for label in capped.predict([item], PredictContext("detection", NAMES, 0.25))[0]] == ["cat"]
    only = model.predict([item], PredictContext("detection", ("dog", "bird"), 0.5))[0]
    assert [label.label for label in only] == ["dog"]
    portrait = image(1, 300, 500)  # x0.64, 64 px of grey on the left
    rows[0, :4, 0] = (121.6, 96, 76.8, 128)
    (cat, *_) = model.predict([portrait], PredictContext("detection", ("cat",), 0.5))[0]
    assert cat.box.as_tuple() == pytest.approx((0.1, 0.1, 0.4, 0.4))


def test_end_to_end_rows_skip_nms():
    rows = np.array([[32, 64, 96, 112, 0.9, 1], [32, 64, 96, 112, 0.8, 1], [0, 0, 5, 5, 0.9, 0], [1, 1, 2, 2, 0.1, 2]])
    wanted = np.array([False, True, True])
    boxes, scores, classes = select(rows, 3, wanted, 0.2, 0.5, 300, end_to_end=True)
    assert classes.tolist() == [1, 1] and scores.tolist() == [0.9, 0.8] and boxes[0].tolist() == [32, 64, 96, 112]


def test_numpy_nms_agrees_with_torchvision():
    torchvision = pytest.importorskip("torchvision")
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 200, (300, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 80, (300, 2))], axis=1)
    scores = rng.uniform(0, 1, 300)
    for iou in (0.3, 0.5, 0.7):
        expected = torchvision.ops.nms(torch.tensor(boxes), torch.tensor(scores), iou).numpy()
        np.testing.assert_array_equal(nms(boxes, scores, iou), expected)


def test_names_option_and_files_without_metadata(exports, tmp_path):
    import onnx

    bare = onnx.load(str(exports["batched"]))
    del bare.metadata_props[:]
    path = tmp_path / "bare.onnx"
    onnx.save(bare, str(path))
    with pytest.raises(ModelLoadError, match="names=a,b,c"):
        load(path)
    model, _ = load(path, names="ant,bee,wasp")
    assert model.spec.vocabulary == ("ant", "bee", "wasp") and model.spec.input_size == 640  # exporter's default
    labels = model.predict([image(0, 64, 64)], PredictContext("detection", ("bee",), 0.0))[0]
    assert {label.label for label in labels} <= {"bee"}
    with pytest.raises(ModelLoadError, match="predicts 3 classes, but 4 names"):
        load(path, names="a,b,c,d")
    renamed, _ = load(exports["batched"], names=["x", "y", "z"])
    assert renamed.spec.vocabulary == ("x", "y", "z")


def test_missing_or_broken_files_and_devices_fail_fast(exports, tmp_path):
    with pytest.raises(ConfigError, match="--weights"):
        registry.resolve("onnx-yolo")
    with pytest.raises(ConfigError, match=r"not found: .*nope\.onnx"):
        registry.resolve("onnx-yolo", str(tmp_path / "nope.onnx"))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match=r"cannot open the ONNX model .*broken\.onnx"):
        registry.resolve("onnx-yolo", str(broken))
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        ref = registry.resolve("onnx-yolo", str(exports["batched"]))
        with pytest.raises(ModelLoadError, match="no CUDA provider"):
            registry.load(ref, LoadRequest(weights=str(exports["batched"]), device="cuda:0"))
