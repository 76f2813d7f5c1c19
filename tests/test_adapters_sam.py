"""SAM and SAM 2 (transformers) as promptable segmenters: tiny random models through the real loading path, and
known mask logits forced through the post-processing to check where the masks land."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests.support import blob_model, random_models_sam  # noqa: E402
from tests.support.images import blob_image  # noqa: E402
from verilabel import ImageItem, PredictContext  # noqa: E402
from verilabel.errors import ConfigError, ModelLoadError  # noqa: E402
from verilabel.labels import Box, Detection  # noqa: E402
from verilabel.models import registry, two_stage  # noqa: E402
from verilabel.models.adapters.hf_sam import SamSegmenter  # noqa: E402
from verilabel.models.checks import check_predictions  # noqa: E402
from verilabel.models.interface import LoadRequest, PromptedSegmenter  # noqa: E402
from verilabel.models.preprocess import RGB_MEAN_IMAGENET, RGB_STD_IMAGENET  # noqa: E402

pytestmark = pytest.mark.torch

SIZE, LOW = 64, 16  # the fake models' input and mask-logit sizes (one logit per 4 x 4 input pixels)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, Path]]:
    root = tmp_path_factory.mktemp("sam")
    return {kind: random_models_sam.save(kind, root / kind) for kind in ("sam", "sam2")}


class FakeSam:
    """Stands in for SamModel / Sam2Model: given logits (masks x L x L, the same for every box, or boxes x masks
    x L x L) and IoUs, records its inputs."""

    def __init__(self, logits: np.ndarray, iou: list[float] | None = None) -> None:
        self.logits = torch.tensor(logits, dtype=torch.float32)
        self.iou = torch.tensor(iou or [1.0] * logits.shape[1])
        self.calls: list[dict] = []

    def __call__(self, pixel_values, input_boxes, multimask_output):
        self.calls.append({"pixels": pixel_values, "boxes": input_boxes, "multimask": multimask_output})
        images, boxes = input_boxes.shape[:2]
        per_box = self.logits if self.logits.dim() == 4 else self.logits.expand(boxes, *self.logits.shape)
        masks = per_box.expand(images, *per_box.shape)
        return SimpleNamespace(pred_masks=masks, iou_scores=self.iou.expand(images, boxes, -1))


def segmenter(name: str, net: FakeSam, *, multimask: bool = False) -> SamSegmenter:
    entry = registry.resolve(name).entry
    assert entry is not None
    model_type = "sam2" if entry.family.startswith("sam2") else "sam"
    return SamSegmenter(entry, net, torch.device("cpu"), model_type=model_type, input_size=SIZE, multimask=multimask)


def step_logits(rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """+10 over a block of the low-resolution map, -10 elsewhere: the zero crossing sits on the block's edge."""
    logits = np.full((LOW, LOW), -10.0, np.float32)
    logits[rows[0] : rows[1], cols[0] : cols[1]] = 10.0
    return logits


def item(width: int, height: int, sample: int = 1) -> ImageItem:
    return ImageItem(sample, f"{sample}.png", np.zeros((height, width, 3), np.uint8))


@pytest.mark.parametrize(
    ("name", "rows"),
    [
        # SAM: 200x125 -> 64x40 (scale 0.32) + padding. Low-res rows 2-5 = input rows 8-23 = original 25-74.
        ("sam-vit-base", (25, 75)),
        # SAM 2 stretches 200x125 to 64x64 (rows scale 0.512): input rows 8-23 = original 15.6-46.9 -> 16-46.
        ("sam2.1-hiera-small", (16, 47)),
    ],
)
def test_forced_logits_land_on_the_right_pixels(name: str, rows: tuple[int, int]):
    # Bands (not blocks, whose corners bilinear interpolation rounds off): low-res rows 2-5 = input rows 8-23,
    # low-res cols 4-11 = input cols 16-47 = original cols 50-149 (x scale 0.32 for both models).
    row_band, col_band = step_logits((2, 6), (0, LOW)), step_logits((0, LOW), (4, 12))
    expected_rows, expected_cols = np.zeros((125, 200), bool), np.zeros((125, 200), bool)
    expected_rows[rows[0] : rows[1]] = True
    expected_cols[:, 50:150] = True
    whole = Detection("cat", Box(0, 0, 1, 1), 0.8)
    part = Detection("dog", Box.from_xyxy_pixels(40, 20, 120, 90, 200, 125), 0.6)
    for logits, expected in [(row_band, expected_rows), (col_band, expected_cols)]:
        (masked,) = segmenter(name, FakeSam(logits[None])).segment([item(200, 125)], [[whole, part]])
        assert [d.label for d in masked] == ["cat", "dog"]
        assert np.array_equal(masked[0].mask.array, expected)
        assert np.array_equal(masked[1].mask.array, expected[20:90, 40:120])


def blob_logits() -> np.ndarray:
    """A smooth off-centre blob, so that different but correct resampling paths agree almost everywhere."""
    yy, xx = np.mgrid[0:LOW, 0:LOW] + 0.5
    return (6 - np.hypot((xx - 7) / 1.3, yy - 4)).astype(np.float32)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_masks_match_transformers_own_post_processing():
    from transformers import Sam2ImageProcessor, SamImageProcessor

    logits = torch.tensor(blob_logits())[None, None]  # 1 box x 1 mask
    for width, height in [(200, 125), (90, 150)]:
        whole = Detection("cat", Box(0, 0, 1, 1), 0.8)
        (sam,) = segmenter("sam-vit-base", FakeSam(blob_logits()[None])).segment([item(width, height)], [[whole]])
        scale = SIZE / max(width, height)
        resized = (int(height * scale + 0.5), int(width * scale + 0.5))
        (reference,) = SamImageProcessor().post_process_masks(
            [logits], [(height, width)], [resized], pad_size={"height": SIZE, "width": SIZE}
        )
        assert iou(sam[0].mask.array, reference[0, 0].numpy()) > 0.97

        (sam2,) = segmenter("sam2-hiera-tiny", FakeSam(blob_logits()[None])).segment([item(width, height)], [[whole]])
        (reference,) = Sam2ImageProcessor().post_process_masks([logits], [(height, width)])
        assert iou(sam2[0].mask.array, reference[0, 0].numpy()) > 0.97


def test_boxes_are_prompted_in_input_pixels_and_padded_per_image():
    net = FakeSam(step_logits((0, LOW), (0, LOW))[None])
    model = segmenter("sam-vit-base", net)
    images = [item(200, 125, 1), item(50, 50, 2), item(64, 64, 3)]
    for image in images:
        image.prepared = model.prepare(image.array)
    pixels, height, width = images[0].prepared
    assert (pixels.shape, pixels.dtype, height, width) == ((SIZE, SIZE, 3), np.uint8, 40, 64)
    first = [Detection("a", Box(0.25, 0.5, 0.5, 0.25), 0.9), Detection("b", Box(0, 0, 1, 1), 0.5)]
    third = [Detection("c", Box(0.5, 0.5, 0.5, 0.5), 0.7)]
    results = model.segment(images, [first, [], third])
    (call,) = net.calls  # one forward, without the image that has no boxes
    assert call["boxes"].tolist() == [
        [[16.0, 20.0, 48.0, 30.0], [0.0, 0.0, 64.0, 40.0]],
        [[32.0, 32.0, 64.0, 64.0], [32.0, 32.0, 64.0, 64.0]],  # padded with its last box
    ]
    assert call["multimask"] is False
    assert [len(r) for r in results] == [2, 0, 1]


def test_images_are_normalised_and_padded_with_zeros_on_the_device():
    net = FakeSam(step_logits((0, LOW), (0, LOW))[None])
    model = segmenter("sam-vit-base", net)
    image = ImageItem(1, "x", np.full((125, 200, 3), 200, np.uint8))
    model.segment([image], [[Detection("a", Box(0, 0, 1, 1), 0.9)]])
    pixels = net.calls[0]["pixels"][0]
    assert pixels.shape == (3, SIZE, SIZE)
    normalised = (200 / 255 - np.array(RGB_MEAN_IMAGENET)) / np.array(RGB_STD_IMAGENET)
    assert np.allclose(pixels[:, :40].mean(dim=(1, 2)).numpy(), normalised, atol=1e-5)
    assert torch.count_nonzero(pixels[:, 40:]) == 0  # SAM pads after normalising

    sam2 = segmenter("sam2-hiera-tiny", net)
    assert sam2.prepare(image.array).pixels.shape == (SIZE, SIZE, 3)  # stretched, no padding


def test_multimask_output_keeps_the_mask_with_the_best_predicted_iou():
    left, right = step_logits((0, LOW), (0, 8)), step_logits((0, LOW), (8, LOW))
    net = FakeSam(np.stack([right, left, right]), iou=[0.2, 0.9, 0.4])
    model = segmenter("sam2-hiera-tiny", net, multimask=True)
    (masked,) = model.segment([item(64, 64)], [[Detection("a", Box(0, 0, 1, 1), 0.9)]])
    assert net.calls[0]["multimask"] is True
    mask = masked[0].mask.array
    assert mask[:, :32].all() and not mask[:, 32:].any()
    assert masked[0].attributes["mask_score"] == pytest.approx(0.9)


def test_detections_keep_identity_and_empty_masks_are_dropped():
    net = FakeSam(step_logits((0, 4), (0, LOW))[None])  # the top 16 rows of input pixels
    model = segmenter("sam-vit-base", net)
    inside = Detection("a", Box(0, 0, 0.5, 0.5), 0.7, attributes={"source": "field"}, tags=["approved"])
    outside = Detection("b", Box(0.5, 0.5, 0.5, 0.5), 0.9)
    (masked,) = model.segment([item(64, 64)], [[inside, outside]])
    (kept,) = masked
    assert (kept.id, kept.label, kept.box, kept.confidence, kept.tags) == (
        inside.id,
        "a",
        inside.box,
        0.7,
        ["approved"],
    )
    assert kept.attributes == {"source": "field", "mask_score": 1.0}
    assert kept.mask.array.shape == (32, 32) and kept.mask.array[:16].all() and not kept.mask.array[16:].any()


def test_masks_are_the_same_when_sampled_in_chunks(monkeypatch):
    from verilabel.models.adapters import hf_sam

    boxes = [Detection("a", Box(0.1 * k, 0.05 * k, 0.4 - 0.05 * k, 0.5 - 0.1 * k), 0.9) for k in range(4)]
    bands = [step_logits((k, k + 5), (0, LOW)) for k in range(4)]  # a different mask for each box
    logits = np.stack([np.stack([blob_logits(), band, blob_logits().T]) for band in bands])
    whole = segmenter("sam-vit-base", FakeSam(logits, iou=[0.1, 0.5, 0.2]), multimask=True)
    (at_once,) = whole.segment([item(150, 100)], [boxes])
    monkeypatch.setattr(hf_sam, "SAMPLES_PER_CHUNK", 1)  # one box per chunk
    (chunked,) = whole.segment([item(150, 100)], [boxes])
    assert len(at_once) == len(chunked) == 4
    assert all(np.array_equal(a.mask.array, b.mask.array) for a, b in zip(at_once, chunked, strict=True))
    tops = [np.flatnonzero(d.mask.array.any(axis=1))[0] + round(d.box.y * 100) for d in chunked]
    # each box its own band: low-res row k = input row 4k = original row 4k * 100 / 43 (first centre past it)
    assert tops == [0, 9, 19, 28]


@pytest.mark.parametrize("kind", ["sam", "sam2"])
def test_tiny_models_load_from_a_directory_and_segment(saved, kind: str):
    name, folder = saved[kind]
    ref = registry.resolve(name)
    assert ref.entry is not None and ref.entry.prompted
    model = registry.load(ref, LoadRequest(weights=str(folder), device="cpu"))
    assert isinstance(model, PromptedSegmenter)
    images = [ImageItem(i, f"{i}", blob_image(i, 96 + 16 * i, 80)) for i in range(3)]
    for image in images:
        image.prepared = model.prepare(image.array)
    boxes = [
        [Detection("red", Box(0.1, 0.1, 0.5, 0.6), 0.9), Detection("blue", Box(0.4, 0.3, 0.6, 0.7), 0.4)],
        [],
        [Detection("green", Box(0, 0, 1, 1), 0.5)],
    ]
    results = model.segment(images, boxes)
    assert len(results) == 3 and results[1] == []
    context = PredictContext("segmentation", ("red", "green", "blue"), 0.0)
    check_predictions(model.spec, context, images, results)  # masks cover their boxes
    given = {d.id: d for found in boxes for d in found}
    for detection in (d for found in results for d in found):
        original = given[detection.id]
        assert (detection.label, detection.box, detection.confidence) == (
            original.label,
            original.box,
            original.confidence,
        )
        assert 0 <= detection.attributes["mask_score"] <= 1
    with pytest.raises(ConfigError, match=rf"DETECTOR\+{name}.*field:FIELD\+{name}"):
        model.predict(images, context)


def test_detector_plus_sam_masks_the_detectors_boxes(saved):
    name, folder = saved["sam2"]
    detector = blob_model.detector(LoadRequest())
    chain = two_stage.build(detector, registry.load(registry.resolve(name), LoadRequest(weights=str(folder))))
    images = [ImageItem(i, f"{i}", blob_image(i)) for i in range(4)]
    context = PredictContext("segmentation", ("red", "green", "blue"), 0.0)
    found = chain.predict(images, context)
    check_predictions(chain.spec, context, images, found)
    boxes = detector.predict(images, PredictContext("detection", context.classes, 0.0))
    for masked, plain in zip(found, boxes, strict=True):
        assert {(d.label, d.box) for d in masked} <= {(d.label, d.box) for d in plain}
        assert all(d.mask is not None for d in masked)


def test_missing_or_unusable_weights_fail_with_the_fix(tmp_path: Path):
    with pytest.raises(ModelLoadError, match=r"'facebook/sam2.1-hiera-tiny' .*--weights"):
        registry.load(registry.resolve("sam2.1-hiera-tiny"), LoadRequest(device="cpu"))
    (tmp_path / "original").mkdir()
    (tmp_path / "original" / "sam2.1_hiera_tiny.pt").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"no config.json.*save_pretrained"):
        registry.load(registry.resolve("sam2.1-hiera-tiny"), LoadRequest(weights=str(tmp_path / "original")))
    (tmp_path / "vit").mkdir()
    (tmp_path / "vit" / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(ModelLoadError, match=r"'vit' model.*SAM, SAM 2 or SAM 3"):
        registry.load(registry.resolve("sam-vit-base"), LoadRequest(weights=str(tmp_path / "vit")))


def test_masks_are_made_at_the_full_size_of_an_image_decoded_smaller():
    """A JPEG decoded at 1/4 for the model: its masks cover their boxes in the full image's pixels, sampled from
    the logits there (not a quarter-size mask blown up later)."""
    row_band = step_logits((2, 6), (0, LOW))  # as above: original rows 25-74 of 125, so 100-299 of 500
    whole = Detection("cat", Box(0, 0, 1, 1), 0.8)
    quarter = ImageItem(1, "1.jpg", np.zeros((125, 200, 3), np.uint8), full_size=(800, 500))
    (masked,) = segmenter("sam-vit-base", FakeSam(row_band[None])).segment([quarter], [[whole]])
    expected = np.zeros((500, 800), bool)
    expected[100:300] = True
    assert np.array_equal(masked[0].mask.array, expected)
