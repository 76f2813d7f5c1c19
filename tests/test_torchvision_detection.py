"""torchvision detectors through the real loading path, with random weights saved locally."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from tests.support.overlap import overlapped_matches_predict  # noqa: E402
from verilabel import ImageItem, PredictContext  # noqa: E402
from verilabel.errors import ModelLoadError  # noqa: E402
from verilabel.models import registry  # noqa: E402
from verilabel.models.adapters.torchvision_detection import TorchvisionDetector, build_network  # noqa: E402
from verilabel.models.interface import LoadRequest  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def ssdlite_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "ssdlite-random.pth"
    torch.save(build_network("ssdlite").state_dict(), path)
    return path


def test_loads_local_weights_and_predicts_relative_boxes(ssdlite_weights: Path):
    ref = registry.resolve("ssdlite320-mobilenet-v3-coco")
    model = registry.load(ref, LoadRequest(weights=str(ssdlite_weights), device="cpu", min_confidence=0.0, options={}))
    images = [
        ImageItem(i, f"{i}", np.random.default_rng(i).integers(0, 255, (240, 320, 3), dtype=np.uint8)) for i in range(3)
    ]
    for image in images:
        image.prepared = model.prepare(image.array)  # type: ignore[attr-defined]
        assert image.prepared.shape == (320, 320, 3) and image.prepared.dtype == np.uint8
    context = PredictContext("detection", ref.vocabulary, 0.0)
    results = model.predict(images, context)
    assert len(results) == 3
    labels = [label for result in results for label in result]
    assert labels and {label.label for label in labels} <= set(ref.vocabulary)
    narrow = model.predict(images, PredictContext("detection", ("person", "car"), 0.0))
    assert {label.label for result in narrow for label in result} <= {"person", "car"}


def test_known_raw_outputs_land_where_they_should():
    entry = registry.resolve("faster-rcnn-resnet50-fpn-coco").entry
    assert entry is not None

    def fake_net(tensors):
        return [
            {
                "boxes": torch.tensor([[32.0, 24.0, 96.0, 72.0], [0.0, 0.0, 400.0, 300.0]]),
                "scores": torch.tensor([0.9, 0.2]),
                "labels": torch.tensor([1, 3]),
            }
            for _ in tensors
        ]

    model = TorchvisionDetector(entry, fake_net, torch.device("cpu"), None, 2)
    image = ImageItem(1, "x", np.zeros((240, 320, 3), np.uint8))
    (labels,) = model.predict([image], PredictContext("detection", ("person", "car"), 0.1))
    person, car = labels
    assert person.label == "person" and person.box.as_tuple() == pytest.approx((0.1, 0.1, 0.2, 0.2))
    assert car.label == "car" and car.box.as_tuple() == pytest.approx((0.0, 0.0, 1.0, 1.0))  # clipped
    (only_person,) = model.predict([image], PredictContext("detection", ("person",), 0.5))
    assert [label.label for label in only_person] == ["person"]


def test_missing_weights_fail_fast_naming_the_file(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ref = registry.resolve("faster-rcnn-resnet50-fpn-coco")
    with pytest.raises(ModelLoadError) as info:
        registry.load(ref, LoadRequest(device="cpu"))
    message = str(info.value)
    assert "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth" in message and str(tmp_path / "torch") in message
    assert "--weights" in message
    with pytest.raises(ModelLoadError, match=r"weights file .* not found"):
        registry.load(ref, LoadRequest(weights=str(tmp_path / "nope.pth"), device="cpu"))


def test_wrong_weights_are_refused(tmp_path: Path, ssdlite_weights: Path):
    ref = registry.resolve("faster-rcnn-resnet50-fpn-coco")
    with pytest.raises(ModelLoadError, match="do not fit"):
        registry.load(ref, LoadRequest(weights=str(ssdlite_weights), device="cpu"))


def test_split_predict_runs_overlapped_in_the_pipeline_with_the_same_labels(ssdlite_weights: Path, tmp_path: Path):
    ref = registry.resolve("ssdlite320-mobilenet-v3-coco")
    model = registry.load(ref, LoadRequest(weights=str(ssdlite_weights), device="cpu", min_confidence=0.0))
    arrays = [np.random.default_rng(i).integers(0, 255, (240, 320, 3), dtype=np.uint8) for i in range(3)]
    assert overlapped_matches_predict(model, arrays, PredictContext("detection", ref.vocabulary, 0.0), tmp_path)


def test_ssds_batched_post_processing_keeps_torchvisions_detections():
    """SSD's per-class loop, batched (``vectorised_ssd_detections``): the same boxes, scores and classes as
    torchvision's own ``postprocess_detections``, also with many candidates per class (more than its top-k)."""
    import copy

    from verilabel.models.adapters.network_parts import vectorised_ssd_detections
    from verilabel.models.adapters.torchvision_detection import build_network

    theirs = build_network("ssdlite", score_thresh=0.001, detections_per_img=300).eval()
    theirs.topk_candidates = 50  # fewer than the candidates of some classes: the top-k decides
    ours = copy.deepcopy(theirs)
    vectorised_ssd_detections(ours)
    generator = torch.Generator().manual_seed(0)
    anchors_count, classes = 3234, 91
    for spread in (1.0, 4.0, 8.0):  # flat to peaked scores
        outputs = {
            "cls_logits": torch.randn(2, anchors_count, classes, generator=generator) * spread,
            "bbox_regression": torch.randn(2, anchors_count, 4, generator=generator) * 0.5,
        }
        anchors = [torch.rand(anchors_count, 4, generator=generator).sort(dim=1).values * 320] * 2
        sizes = [(320, 320), (320, 320)]
        expected = theirs.postprocess_detections(outputs, anchors, sizes)
        got = ours.postprocess_detections(outputs, anchors, sizes)
        for mine, reference in zip(got, expected, strict=True):
            assert len(mine["scores"]) == len(reference["scores"]) > 0
            assert _rows(mine) == _rows(reference)


def _rows(detections: dict) -> list[tuple]:
    labels, scores, boxes = detections["labels"].tolist(), detections["scores"].tolist(), detections["boxes"].tolist()
    return sorted(zip(labels, scores, map(tuple, boxes), strict=True))
