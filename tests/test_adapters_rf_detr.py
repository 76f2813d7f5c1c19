"""RF-DETR (transformers) through the real loading path, on tiny random-weight models saved locally: boxes, scores
and masks read out as transformers' own post-processing does, padding undone, a fine-tuned model's classes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.support import random_models_hf  # noqa: E402
from tests.support.random_models_hf import natural_image  # noqa: E402
from verilabel import ImageItem, PredictContext  # noqa: E402
from verilabel.errors import ModelLoadError  # noqa: E402
from verilabel.models import registry  # noqa: E402
from verilabel.models.checks import check_predictions  # noqa: E402
from verilabel.models.interface import LoadRequest  # noqa: E402

pytestmark = pytest.mark.torch

COCO = registry.resolve("rf-detr-nano").vocabulary


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("rf-detr")
    return {
        "detect": random_models_hf.save_rf_detr(folder / "detect"),
        "seg": random_models_hf.save_rf_detr(folder / "seg", segmentation=True),
        "aspect": random_models_hf.save_rf_detr(folder / "aspect", square=False),
        "custom": random_models_hf.save_rf_detr(folder / "custom", names=("N/A", "crack", "dent")),
    }


def load(name: str, weights: Path, classes: tuple[str, ...] = COCO, **options: Any) -> Any:
    request = LoadRequest(weights=str(weights), device="cpu", classes=classes, options=options)
    return registry.load(registry.resolve(name, str(weights)), request)


def image(height: int, width: int, seed: int = 0) -> ImageItem:
    return ImageItem(seed, f"img{seed}.jpg", natural_image(height, width, seed=seed))


def outputs_of(model: Any, inputs: Any) -> Any:
    with torch.no_grad():
        return model._net(**inputs)


def test_detections_are_what_transformers_post_processing_finds(saved):
    model = load("rf-detr-nano", saved["detect"])
    item = image(48, 80)
    context = PredictContext("detection", COCO, 0.0)
    prepared = model.prepare(item.array)
    assert prepared.shape == (64, 64, 3)  # Roboflow's processors resize to a square
    item.prepared = prepared
    assert check_predictions(model.spec, context, [item], model.predict([item], context))
    processor = transformers.AutoImageProcessor.from_pretrained(saved["detect"])
    inputs = processor(images=item.array, return_tensors="pt")
    outputs = outputs_of(model, inputs)
    (ours,) = model.to_labels(([(64, 64)], outputs), [item], context)
    (reference,) = processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=[(48, 80)])
    names = [model._names[i] for i in reference["labels"].tolist()]
    expected = [
        (s, n, b)
        for s, n, b in zip(reference["scores"].tolist(), names, reference["boxes"].tolist(), strict=True)
        if n in COCO
    ]
    assert len(ours) == len(expected) > 0
    for detection, (score, name, (x0, y0, x1, y1)) in zip(ours, expected, strict=True):
        assert detection.label == name and detection.confidence == pytest.approx(score, abs=1e-6)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, 80), min(y1, 48)
        assert detection.box.as_tuple() == pytest.approx((x0 / 80, y0 / 48, (x1 - x0) / 80, (y1 - y0) / 48), abs=1e-4)


def test_the_floor_the_classes_and_the_detection_limit_apply(saved):
    item = image(48, 80)
    model = load("rf-detr-nano", saved["detect"], max_detections=5)
    (five,) = model.predict([item], PredictContext("detection", COCO, 0.0))
    assert len(five) == 5
    model = load("rf-detr-nano", saved["detect"])
    (everything,) = model.predict([item], PredictContext("detection", COCO, 0.0))
    floor = sorted(d.confidence for d in everything)[len(everything) // 2]
    (above,) = model.predict([item], PredictContext("detection", COCO, floor))
    assert above and all(d.confidence >= floor for d in above) and len(above) < len(everything)
    person = ("person",)
    (people,) = model.predict([item], PredictContext("detection", person, 0.0))
    assert {d.label for d in people} <= {"person"} and len(people) == sum(d.label == "person" for d in everything)


def test_boxes_of_a_padded_batch_are_relative_to_each_image():
    """Two images of different aspect in one batch: the smaller is padded; its boxes map back to itself."""
    from verilabel.models.adapters.hf_rf_detr import RfDetr

    model = RfDetr.__new__(RfDetr)
    model._names, model._masks = ["N/A", "cat"], False
    model._limit = 10
    logits = torch.full((2, 1, 2), -10.0)
    logits[:, 0, 1] = 3.0
    # a box covering the left half of the padded 64 x 96 input: all of the 64 x 48 image, half of the 64 x 96 one
    boxes = torch.tensor([[[0.25, 0.5, 0.5, 1.0]], [[0.25, 0.5, 0.5, 1.0]]])
    raw = ([(64, 48), (64, 96)], SimpleNamespace(logits=logits, pred_boxes=boxes))
    images = [image(100, 75), image(50, 75, seed=1)]
    small, large = model.to_labels(raw, images, PredictContext("detection", ("cat",), 0.5))
    assert small[0].box.as_tuple() == pytest.approx((0, 0, 1, 1)) and large[0].box.as_tuple() == pytest.approx(
        (0, 0, 0.5, 1)
    )


def test_a_shorter_side_processor_keeps_the_aspect_and_pads_batches(saved):
    model = load("rf-detr-nano", saved["aspect"])
    images = [image(48, 80), image(80, 48, seed=1)]
    for item in images:
        item.prepared = model.prepare(item.array)
    assert [i.prepared.shape[:2] for i in images] == [(58, 96), (96, 58)]  # longer side capped at 96
    context = PredictContext("detection", COCO, 0.2)
    assert len(check_predictions(model.spec, context, images, model.predict(images, context))) == 2


def test_masks_are_transformers_binary_maps(saved):
    model = load("rf-detr-seg-nano", saved["seg"])
    item = image(40, 60)
    context = PredictContext("segmentation", COCO, 0.0)
    item.prepared = model.prepare(item.array)
    assert check_predictions(model.spec, context, [item], model.predict([item], context))
    processor = transformers.AutoImageProcessor.from_pretrained(saved["seg"])
    outputs = outputs_of(model, processor(images=item.array, return_tensors="pt"))
    (ours,) = model.to_labels(([(64, 64)], outputs), [item], context)
    (reference,) = processor.post_process_instance_segmentation(
        outputs, threshold=0.0, target_sizes=[(40, 60)], return_binary_maps=True
    )
    maps = {
        round(info["score"], 6): reference["segmentation"][n].numpy()
        for n, info in enumerate(reference["segments_info"])
    }
    checked = 0
    for detection in ours:
        full = maps.get(round(detection.confidence, 6))
        if full is None:
            continue  # transformers drops a query whose mask is empty anywhere; verilabel drops it too
        x, y, w, h = detection.box.to_pixels(60, 40)
        assert np.array_equal(detection.mask.array, full[y : y + h, x : x + w])
        checked += 1
    assert checked >= 3


def test_fine_tuned_weights_bring_their_own_classes(saved):
    ref = registry.resolve("rf-detr-nano", str(saved["custom"]))
    assert ref.vocabulary == ("crack", "dent")
    model = load("rf-detr-nano", saved["custom"], classes=("crack", "dent"))
    assert model.spec.vocabulary == ("crack", "dent")
    (found,) = model.predict([image(48, 80)], PredictContext("detection", ("dent",), 0.0))
    assert found and {d.label for d in found} == {"dent"}


def test_weights_of_another_model_are_refused(saved, tmp_path):
    with pytest.raises(ModelLoadError, match=r"detector, not its segmentation model|not RF-DETR|cannot load"):
        load("rf-detr-seg-nano", saved["detect"])
    grounding = random_models_hf.save_grounding_dino(tmp_path / "gd")
    with pytest.raises(ModelLoadError, match=r"cannot load|not RF-DETR"):
        load("rf-detr-nano", grounding)
