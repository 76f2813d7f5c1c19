"""SAM 3 (transformers) on tiny random-weight models saved locally: the concept segmenter finds every instance of
each class prompt, read out as transformers' own post-processing does; its tracker segments a detector's boxes;
gated weights fail with the way to get them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.support import blob_model, random_models_sam  # noqa: E402
from tests.support.images import blob_image  # noqa: E402
from tests.support.random_models_hf import natural_image  # noqa: E402
from verilabel import ImageItem, PredictContext  # noqa: E402
from verilabel.errors import ModelLoadError  # noqa: E402
from verilabel.models import registry, two_stage, weights  # noqa: E402
from verilabel.models.checks import check_predictions  # noqa: E402
from verilabel.models.interface import LoadRequest, PromptedSegmenter  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sam3")
    return {
        "sam3": random_models_sam.save_sam3(root / "sam3"),
        "tracker": random_models_sam.save("sam3", root / "tracker")[1],
    }


def load(folder: Path, name: str = "sam3", **options: Any) -> Any:
    request = LoadRequest(weights=str(folder), device="cpu", classes=("cat", "dog"), options=options)
    return registry.load(registry.resolve(name), request)


def images(*shapes: tuple[int, int]) -> list[ImageItem]:
    return [ImageItem(i, f"{i}.jpg", natural_image(h, w, seed=i)) for i, (h, w) in enumerate(shapes)]


def test_every_instance_of_each_prompt_with_masks(saved):
    model = load(saved["sam3"])
    batch = images((60, 90), (80, 50))
    for item in batch:
        item.prepared = model.prepare(item.array)
    assert batch[0].prepared.shape == (112, 112, 3)  # stretched to the square input
    context = PredictContext("segmentation", ("cat", "dog"), 0.0)
    results = check_predictions(model.spec, context, batch, model.predict(batch, context))
    for found in results:
        assert len(found) == 2 * 12  # every query of both prompts at floor 0
        assert {d.label for d in found} == {"cat", "dog"} and all(d.mask is not None for d in found)
    (boxes_only,) = model.predict(batch[:1], PredictContext("detection", ("cat",), 0.0))
    assert len(boxes_only) == 12 and all(d.mask is None for d in boxes_only)


def test_cached_text_and_shared_image_features_equal_one_full_forward(saved):
    model = load(saved["sam3"])
    processor = transformers.AutoProcessor.from_pretrained(saved["sam3"])
    item = images((60, 90))[0]
    inputs = processor(images=item.array, text="cat", return_tensors="pt")
    with torch.no_grad():
        reference = model._net(pixel_values=inputs["pixel_values"], input_ids=inputs["input_ids"],
                               attention_mask=inputs["attention_mask"])  # fmt: skip
        vision = model._net.get_vision_features(pixel_values=inputs["pixel_values"])
    ours = model.find(vision, "cat", 1)
    for key in ("pred_logits", "presence_logits", "pred_boxes", "pred_masks"):
        assert torch.allclose(getattr(ours, key), getattr(reference, key), atol=1e-5), key


def test_scores_boxes_and_masks_are_transformers_post_processing(saved):
    model = load(saved["sam3"])
    processor = transformers.AutoProcessor.from_pretrained(saved["sam3"])
    item = images((60, 90))[0]
    inputs = processor(images=item.array, text="cat", return_tensors="pt")
    with torch.no_grad():
        outputs = model._net(**{k: v for k, v in inputs.items() if k != "original_sizes"})
    context = PredictContext("segmentation", ("cat",), 0.0)
    (ours,) = model.read_out(outputs, 0, [item], context)
    (theirs,) = processor.post_process_instance_segmentation(
        outputs, threshold=0.0, mask_threshold=0.5, target_sizes=[(60, 90)]
    )
    order = theirs["scores"].argsort(descending=True).tolist()
    kept = [i for i in order if theirs["masks"][i].any()]
    assert [d.confidence for d in ours] == pytest.approx([theirs["scores"][i].item() for i in kept], abs=1e-6)
    for detection, index in zip(ours, kept, strict=True):
        x0, y0, x1, y1 = theirs["boxes"][index].tolist()
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, 90), min(y1, 60)
        assert detection.box.as_tuple() == pytest.approx((x0 / 90, y0 / 60, (x1 - x0) / 90, (y1 - y0) / 60), abs=1e-4)
        x, y, w, h = detection.box.to_pixels(90, 60)
        assert np.array_equal(detection.mask.array, theirs["masks"][index].numpy()[y : y + h, x : x + w].astype(bool))


def test_the_floor_and_the_detection_limit(saved):
    item = images((60, 90))[0]
    everything = load(saved["sam3"]).predict([item], PredictContext("detection", ("cat",), 0.0))[0]
    floor = sorted(d.confidence for d in everything)[6]
    above = load(saved["sam3"]).predict([item], PredictContext("detection", ("cat",), floor))[0]
    assert len(above) == 6 and all(d.confidence >= floor for d in above)
    three = load(saved["sam3"], max_detections=3).predict([item], PredictContext("detection", ("cat",), 0.0))[0]
    assert [d.confidence for d in three] == sorted((d.confidence for d in everything), reverse=True)[:3]


def test_the_tracker_masks_a_detectors_boxes(saved):
    segmenter = registry.load(registry.resolve("sam3-tracker"), LoadRequest(weights=str(saved["tracker"])))
    assert isinstance(segmenter, PromptedSegmenter)
    detector = blob_model.detector(LoadRequest())
    chain = two_stage.build(detector, segmenter)
    batch = [ImageItem(i, f"{i}", blob_image(i)) for i in range(3)]
    context = PredictContext("segmentation", ("red", "green", "blue"), 0.0)
    found = check_predictions(chain.spec, context, batch, chain.predict(batch, context))
    boxes = detector.predict(batch, PredictContext("detection", context.classes, 0.0))
    assert any(found)
    for masked, plain in zip(found, boxes, strict=True):
        assert {(d.label, d.box) for d in masked} <= {(d.label, d.box) for d in plain}
        assert all(d.mask is not None and 0 <= d.attributes["mask_score"] <= 1 for d in masked)


def test_a_sam3_checkpoint_gives_its_tracker_to_the_second_stage(saved):
    """``sam3-tracker`` reads the concept model's checkpoint (one download for both): its tracker is built."""
    segmenter = registry.load(registry.resolve("sam3-tracker"), LoadRequest(weights=str(saved["sam3"])))
    assert type(segmenter._net).__name__ == "Sam3TrackerModel"


def test_gated_weights_say_how_to_get_access(monkeypatch, tmp_path):
    import httpx
    from huggingface_hub import errors

    def refuse(*args: Any, **kwargs: Any) -> Any:
        response = httpx.Response(403, request=httpx.Request("GET", "https://huggingface.co/facebook/sam3"))
        raise errors.GatedRepoError("Access to model facebook/sam3 is restricted", response=response)

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("VERILABEL_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.get_hf_file_metadata", refuse)
    monkeypatch.setattr("huggingface_hub.snapshot_download", refuse)
    message = r"facebook/sam3 is gated: request access on https://huggingface.co/facebook/sam3.*--weights"
    with pytest.raises(ModelLoadError, match=message):
        weights.ensure_obtainable("hf:facebook/sam3", None, name="sam3")
    with pytest.raises(ModelLoadError, match=message):
        registry.load(registry.resolve("sam3"), LoadRequest(device="cpu", classes=("cat",)))
