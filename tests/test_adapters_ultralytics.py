"""YOLO through ultralytics: random-weight checkpoints saved locally and loaded through the registry, checked
against ultralytics' own ``YOLO.predict`` and with known raw outputs forced through the post-processing."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("ultralytics") is None:  # not importorskip: the adapter imports it, quietly
    pytest.skip("ultralytics is not installed", allow_module_level=True)

from tests.support.overlap import overlapped_matches_predict  # noqa: E402
from tests.support.random_models_ultralytics import (  # noqa: E402
    fixed_text_embeddings,
    save_text_encoders,
    save_yolo,
)
from verilabel import ImageItem, PredictContext  # noqa: E402
from verilabel.errors import ConfigError, ModelLoadError  # noqa: E402
from verilabel.models import registry  # noqa: E402
from verilabel.models.adapters import ultralytics_yolo  # noqa: E402
from verilabel.models.adapters.ultralytics_yolo import RawOutput, UltralyticsYolo  # noqa: E402
from verilabel.models.checks import check_predictions  # noqa: E402
from verilabel.models.interface import LoadRequest  # noqa: E402
from verilabel.models.preprocess import Letterbox  # noqa: E402

pytestmark = pytest.mark.torch

NAMES = ("cat", "dog", "bird")
IMGSZ = 320  # every test model runs at 320 to stay fast; the default is 640


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("yolo")
    return {
        "detect": save_yolo(folder, "detect", names=NAMES),
        "segment": save_yolo(folder, "segment", names=NAMES),
        "pose": save_yolo(folder, "pose"),
        "detect-v10": save_yolo(folder, "detect-v10", names=NAMES),
    }


@pytest.fixture(scope="module")
def zero_shot_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("yolo-open")
    return {"world": save_yolo(folder, "world"), "yoloe": save_yolo(folder, "yoloe"), **save_text_encoders(folder)}


def load(name: str, weights: Path | None, **options: Any) -> tuple[Any, registry.ModelRef]:
    ref = registry.resolve(name, str(weights) if weights else None)
    if ref.entry is not None and ref.entry.zero_shot:
        # The catalogue asks for OpenAI's `clip` package; the adapter needs only open_clip (see the report).
        ref = dataclasses.replace(ref, entry=dataclasses.replace(ref.entry, requires=("ultralytics",)))
    classes = tuple(options.pop("classes", ()))
    max_labels = options.pop("max_labels", None)
    request = LoadRequest(
        weights=str(weights) if weights else None,
        device="cpu",
        classes=classes,
        options={"imgsz": IMGSZ, **options},
        max_labels=max_labels,
    )
    return registry.load(ref, request), ref


def image(seed: int, width: int, height: int) -> ImageItem:
    return ImageItem(seed, f"{seed}.jpg", np.random.default_rng(seed).integers(0, 255, (height, width, 3), np.uint8))


def force(model: Any, monkeypatch: pytest.MonkeyPatch, predictions: list[list[float]], protos: Any = None) -> None:
    """Make the network "return" these rows (one column per anchor: cx cy w h class-scores extra...)."""
    tensor = torch.tensor(predictions, dtype=torch.float32).T[None]
    monkeypatch.setattr(model, "forward", lambda prepared: RawOutput(tensor.expand(len(prepared), -1, -1), protos))


def pixels(label: Any, width: int, height: int) -> tuple[float, ...]:
    x, y, w, h = label.box.as_tuple()
    return (x * width, y * height, (x + w) * width, (y + h) * height)


# --- loading and the contract -------------------------------------------------------------------------------------
def test_fine_tuned_weights_bring_their_class_names_and_predict_within_the_contract(weights):
    model, ref = load("yolo11n-coco", weights["detect"])
    assert ref.vocabulary == NAMES  # read_vocabulary: the checkpoint's names, not COCO's
    assert model.spec.vocabulary == NAMES and model.spec.input_size == IMGSZ and not model.spec.zero_shot
    items = [image(0, 320, 240), image(1, 200, 300), image(2, 64, 48)]
    for item in items:
        item.prepared = model.prepare(item.array)
        assert item.prepared.shape == (IMGSZ, IMGSZ, 3) and item.prepared.dtype == np.uint8
    context = PredictContext("detection", NAMES, 0.3)
    results = check_predictions(model.spec, context, items, model.predict(items, context))
    labels = [label for result in results for label in result]
    assert labels and all(label.confidence >= 0.3 for label in labels)
    assert {label.label for label in labels} <= set(NAMES)
    only_dogs = model.predict(items, PredictContext("detection", ("dog",), 0.3))
    assert {label.label for result in only_dogs for label in result} == {"dog"}
    assert model.predict(items, PredictContext("detection", ("zebra",), 0.0)) == [[], [], []]


def test_detections_masks_and_keypoints_match_ultralytics_own_predict(weights):
    """Same boxes, scores and keypoints as ``YOLO.predict`` on a square letterbox; masks agree on almost every
    pixel (ultralytics upsamples masks in two steps, the adapter samples the prototypes once per pixel)."""
    from ultralytics import YOLO

    item = image(7, 311, 237)
    for name, kind, task in [
        ("yolo11n-coco", "detect", "detection"),
        ("yolo11n-pose-coco", "pose", "keypoints"),
        ("yolo11n-seg-coco", "segment", "segmentation"),
        ("yolov10n-coco", "detect-v10", "detection"),
    ]:
        model, ref = load(name, weights[kind])
        ours = model.predict([item], PredictContext(task, ref.vocabulary, 0.25))[0]
        theirs = YOLO(str(weights[kind])).predict(
            item.array[..., ::-1].copy(), imgsz=IMGSZ, conf=0.25, rect=False, retina_masks=True, verbose=False
        )[0]
        assert_same_as_theirs(ours, theirs, ref.vocabulary, task, name)


def assert_same_as_theirs(
    ours: list[Any], theirs: Any, names: tuple[str, ...], task: str, name: str, faint: float = 0.02
) -> None:
    """Each of ultralytics' boxes (on ``image(7, 311, 237)``) is one of ours: class, score, box, and keypoints or
    mask; ours has no other box but those whose mask ultralytics found empty (ours covers under ``faint`` of its
    box)."""
    assert len(theirs.boxes) > 0, name
    agreement: list[float] = []
    unmatched = list(ours)
    for j in range(len(theirs.boxes)):  # scores tie often with random weights: match each box to one of ours
        label = next((label for label in unmatched if same(label, theirs, j, names)), None)
        assert label is not None, f"{name}: ultralytics' box {j} is not among ours"
        unmatched.remove(label)
        if task == "keypoints":
            points = np.array(label.keypoints.points) * (311, 237)
            np.testing.assert_allclose(points, theirs.keypoints.xy[j].numpy(), atol=0.05)
            assert label.keypoints.names[0] == "nose" and len(label.keypoints.names) == 17
        if task == "segmentation":
            x, y, w, h = label.box.to_pixels(311, 237)
            expected = theirs.masks.data[j].numpy()[y : y + h, x : x + w] > 0.5
            assert label.mask.array.shape == expected.shape
            agreement.append((label.mask.array == expected).mean())
    # Only masks on the edge of emptiness may differ: ultralytics' two-step upsampling flattens faint peaks.
    assert all(task == "segmentation" and label.mask.array.mean() < faint for label in unmatched), name
    if task == "segmentation":
        # random prototypes make speckled masks, where the two samplings differ most; the ramp test below
        # shows both put an edge on the same pixel
        assert np.mean(agreement) > 0.92 and min(agreement) > 0.85, name


def same(label: Any, theirs: Any, j: int, names: tuple[str, ...]) -> bool:
    box = np.array(pixels(label, 311, 237))
    return bool(
        label.label == names[int(theirs.boxes.cls[j])]
        and abs(label.confidence - float(theirs.boxes.conf[j])) < 1e-4
        and np.abs(box - theirs.boxes.xyxy[j].numpy()).max() < 0.05
    )


# --- letterbox and coordinates, with forced raw outputs ----------------------------------------------------------
@pytest.mark.parametrize(("width", "height"), [(320, 240), (300, 500), (333, 211), (1, 700), (4000, 3000)])
def test_letterbox_places_the_image_and_inverts_exactly(width, height):
    box = Letterbox.of(width, height, IMGSZ)
    assert max(box.new_w, box.new_h) == IMGSZ and box.left + box.new_w <= IMGSZ and box.top + box.new_h <= IMGSZ
    assert abs(box.left - (IMGSZ - box.new_w - box.left)) <= 1 and abs(box.top - (IMGSZ - box.new_h - box.top)) <= 1
    corners = np.array([[0.0, 0.0, width, height], [width * 0.25, height * 0.5, width * 0.75, height * 0.9]])
    placed = np.column_stack(
        [
            corners[:, 0] * box.scale_x + box.left,
            corners[:, 1] * box.scale_y + box.top,
            corners[:, 2] * box.scale_x + box.left,
            corners[:, 3] * box.scale_y + box.top,
        ]
    )
    np.testing.assert_allclose(placed[0], [box.left, box.top, box.left + box.new_w, box.top + box.new_h])
    np.testing.assert_allclose(box.to_original(placed), corners, atol=1e-9)
    if width * height < 1e6:
        array = np.full((height, width, 3), 200, np.uint8)
        out = box.apply(array)
        assert out.shape == (IMGSZ, IMGSZ, 3)
        assert (out[box.top : box.top + box.new_h, box.left : box.left + box.new_w] == 200).all()
        assert (out == 114).sum() == 3 * (IMGSZ * IMGSZ - box.new_w * box.new_h)


def test_forced_boxes_land_on_the_original_image(weights, monkeypatch):
    model, _ = load("yolo11n-coco", weights["detect"])
    # 320x240 -> unscaled, 40 px of grey above; 300x500 -> x0.64, 64 px of grey on the left
    landscape, portrait = image(0, 320, 240), image(1, 300, 500)
    force(model, monkeypatch, [[64, 88, 64, 48, 0.9, 0.0, 0.0]])
    (cat,) = model.predict([landscape], PredictContext("detection", NAMES, 0.5))[0]
    assert cat.label == "cat" and cat.confidence == pytest.approx(0.9)
    assert cat.box.as_tuple() == pytest.approx((0.1, 0.1, 0.2, 0.2))
    force(model, monkeypatch, [[121.6, 96, 76.8, 128, 0.0, 0.8, 0.0]])  # (83.2, 32)-(160, 160) in the input
    ((dog,), (dog_too,)) = model.predict([portrait, portrait], PredictContext("detection", NAMES, 0.5))
    assert dog.label == "dog" and dog.box.as_tuple() == pytest.approx((0.1, 0.1, 0.4, 0.4))
    assert dog_too.box == dog.box
    force(model, monkeypatch, [[160, 160, 400, 400, 0.7, 0.0, 0.0]])  # spills over the grey and the input
    ((whole,),) = model.predict([landscape], PredictContext("detection", NAMES, 0.5))
    assert whole.box.as_tuple() == pytest.approx((0.0, 0.0, 1.0, 1.0))


def test_thresholds_class_subsets_and_nms_on_forced_outputs(weights, monkeypatch):
    model, _ = load("yolo11n-coco", weights["detect"], iou=0.5)
    rows = [
        [64, 88, 64, 48, 0.9, 0.0, 0.0],  # cat
        [66, 88, 64, 48, 0.8, 0.0, 0.0],  # the same cat again: suppressed
        [66, 88, 64, 48, 0.0, 0.7, 0.0],  # a dog on the same place: kept (NMS is per class)
        [200, 150, 40, 40, 0.0, 0.0, 0.3],  # a faint bird
    ]
    force(model, monkeypatch, rows)
    item = image(0, 320, 240)

    def found(classes: tuple[str, ...], floor: float) -> list[tuple[str, float]]:
        labels = model.predict([item], PredictContext("detection", classes, floor))[0]
        return sorted((label.label, round(label.confidence, 3)) for label in labels)

    assert found(NAMES, 0.25) == [("bird", 0.3), ("cat", 0.9), ("dog", 0.7)]
    assert found(NAMES, 0.5) == [("cat", 0.9), ("dog", 0.7)]
    assert found(("dog", "bird"), 0.1) == [("bird", 0.3), ("dog", 0.7)]
    model_iou, _ = load("yolo11n-coco", weights["detect"], iou=0.99)
    force(model_iou, monkeypatch, rows)
    labels = model_iou.predict([item], PredictContext("detection", ("cat",), 0.1))[0]
    assert len(labels) == 2  # nearly identical boxes survive a 0.99 IoU threshold
    capped, _ = load("yolo11n-coco", weights["detect"], classes=NAMES, max_labels=2)  # the run keeps 2 per image
    force(capped, monkeypatch, rows)
    assert sorted(label.label for label in capped.predict([item], PredictContext("detection", NAMES, 0.1))[0]) == [
        "cat",
        "dog",
    ]
    # NMS drops unwanted classes before it keeps the top boxes: a class subset caps too, and loses nothing
    subset, _ = load("yolo11n-coco", weights["detect"], classes=("dog", "bird"), max_labels=1)
    assert subset._options.max_det == 1
    force(subset, monkeypatch, rows)
    labels = subset.predict([item], PredictContext("detection", ("dog", "bird"), 0.1))[0]
    assert [(label.label, round(label.confidence, 3)) for label in labels] == [("dog", 0.7)]


def test_end_to_end_heads_skip_nms(weights, monkeypatch):
    model, _ = load("yolov10n-coco", weights["detect-v10"], end2end=True)
    raw = model.forward([model.prepare(image(0, 320, 240).array)]).predictions
    assert raw.shape == (1, 300, 6)  # x1 y1 x2 y2 score class, top 300
    rows = torch.tensor([[[32, 64, 96, 112, 0.9, 1], [32, 64, 96, 112, 0.8, 1], [0, 40, 10, 50, 0.1, 0]]])
    monkeypatch.setattr(model, "forward", lambda prepared: RawOutput(rows.float()))
    labels = model.predict([image(0, 320, 240)], PredictContext("detection", NAMES, 0.2))[0]
    assert [label.label for label in labels] == ["dog", "dog"]  # no NMS: the head already chose one per object
    assert labels[0].box.as_tuple() == pytest.approx((0.1, 0.1, 0.2, 0.2))


def test_forced_masks_follow_the_prototypes_exactly(weights, monkeypatch):
    """Prototype logits that ramp linearly with the input x (first) or y (second): bilinear sampling is exact
    there, so each mask edge must fall on a known original pixel, through the letterbox's scale and padding."""
    model, _ = load("yolo11n-seg-coco", weights["segment"])
    cells = IMGSZ // 4
    centres = (torch.arange(cells, dtype=torch.float32) + 0.5) * 4  # prototype pixel centres, input pixels
    protos = torch.zeros(1, 32, cells, cells)
    protos[0, 0] = centres[None, :] - 100  # positive right of input x = 100
    protos[0, 1] = centres[:, None] - 100  # positive below input y = 100
    coefficient_x, coefficient_y = [1.0] + [0.0] * 31, [0.0, 1.0] + [0.0] * 30
    # 160x120 image -> x2, 40 px of grey above: original (16, 12)-(80, 36) and (100, 12)-(150, 60)
    rows = [
        [96, 88, 128, 48, 0.9, 0.0, 0.0, *coefficient_x],
        [250, 112, 100, 96, 0.0, 0.9, 0.0, *coefficient_y],
    ]
    force(model, monkeypatch, rows, protos)
    item = image(0, 160, 120)
    context = PredictContext("segmentation", NAMES, 0.5)
    labels = check_predictions(model.spec, context, [item], model.predict([item], context))[0]
    cat, dog = sorted(labels, key=lambda label: label.label)
    assert cat.box.to_pixels(160, 120) == (16, 12, 64, 24) and dog.box.to_pixels(160, 120) == (100, 12, 50, 48)
    # input x of original column u is 2u + 1: > 100 from u = 50, i.e. crop column 34
    assert cat.mask.array.shape == (24, 64)
    assert not cat.mask.array[:, :34].any() and cat.mask.array[:, 34:].all()
    # input y of original row v is 2v + 1 + 40: > 100 from v = 30, i.e. crop row 18
    assert dog.mask.array.shape == (48, 50)
    assert not dog.mask.array[:18].any() and dog.mask.array[18:].all()
    boxes_only = model.predict([item], PredictContext("detection", NAMES, 0.5))[0]
    assert len(boxes_only) == 2 and all(label.mask is None for label in boxes_only)
    protos[0, 0] = -1.0  # the cat's mask comes out empty: the detection is dropped, as ultralytics does
    assert [label.label for label in model.predict([item], context)[0]] == ["dog"]


def test_masks_are_made_at_the_full_size_of_an_image_decoded_smaller(weights, monkeypatch):
    """The same ramps, on a 640x480 photo decoded at 1/4 (JPEG draft) for the 160x120 input above: the masks
    cover their boxes in the photo's own pixels, each edge on the photo pixel where the ramp crosses zero."""
    model, _ = load("yolo11n-seg-coco", weights["segment"])
    cells = IMGSZ // 4
    centres = (torch.arange(cells, dtype=torch.float32) + 0.5) * 4
    protos = torch.zeros(1, 32, cells, cells)
    protos[0, 0] = centres[None, :] - 100
    protos[0, 1] = centres[:, None] - 100
    rows = [
        [96, 88, 128, 48, 0.9, 0.0, 0.0, 1.0, *[0.0] * 31],
        [250, 112, 100, 96, 0.0, 0.9, 0.0, 0.0, 1.0, *[0.0] * 30],
    ]
    force(model, monkeypatch, rows, protos)
    item = image(0, 160, 120)
    item.full_size = (640, 480)
    context = PredictContext("segmentation", NAMES, 0.5)
    found = check_predictions(model.spec, context, [item], model.predict([item], context))[0]
    cat, dog = sorted(found, key=lambda label: label.label)
    assert cat.box.to_pixels(640, 480) == (64, 48, 256, 96) and dog.box.to_pixels(640, 480) == (400, 48, 200, 192)
    # input x of photo column U is (U + 0.5) / 2: > 100 from U = 200, i.e. crop column 136
    assert cat.mask.array.shape == (96, 256)
    assert not cat.mask.array[:, :136].any() and cat.mask.array[:, 136:].all()
    # input y of photo row V is (V + 0.5) / 2 + 40: > 100 from V = 120, i.e. crop row 72
    assert dog.mask.array.shape == (192, 200)
    assert not dog.mask.array[:72].any() and dog.mask.array[72:].all()


def test_forced_keypoints_land_on_the_original_image(weights, monkeypatch):
    model, ref = load("yolo11n-pose-coco", weights["pose"])
    assert ref.vocabulary == ("person",)
    points = [value for k in range(17) for value in (100 + 2 * k, 140, 0.9 if k % 2 else 0.2)]
    force(model, monkeypatch, [[96, 88, 128, 48, 0.9, *points]])
    item = image(0, 160, 120)  # x2, 40 px of grey above
    (person,) = model.predict([item], PredictContext("keypoints", ("person",), 0.5))[0]
    keypoints = person.keypoints
    assert keypoints.names[:3] == ("nose", "left_eye", "right_eye") and len(keypoints.points) == 17
    assert keypoints.points[0] == pytest.approx((50 / 160, 50 / 120))
    assert keypoints.points[5] == pytest.approx((55 / 160, 50 / 120))
    assert keypoints.visibility[:2] == pytest.approx((0.2, 0.9))
    (box_only,) = model.predict([item], PredictContext("detection", ("person",), 0.5))[0]
    assert box_only.keypoints is None and box_only.box == person.box


# --- open vocabulary -----------------------------------------------------------------------------------------------
@pytest.fixture
def injected_embeddings(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """Known text embeddings in place of CLIP / MobileCLIP (whose weights cannot be downloaded here)."""
    calls: list[tuple[str, ...]] = []

    def text_embeddings(self: UltralyticsYolo, classes: tuple[str, ...]) -> Any:
        calls.append(classes)
        return fixed_text_embeddings(classes)

    monkeypatch.setattr(UltralyticsYolo, "text_embeddings", text_embeddings)
    return calls


@pytest.mark.parametrize(
    ("name", "kind", "task"), [("yolov8s-worldv2", "world", "detection"), ("yoloe-11s-seg", "yoloe", "segmentation")]
)
def test_zero_shot_prompts_are_embedded_once_and_decide_the_labels(
    zero_shot_weights, injected_embeddings, name, kind, task
):
    model, _ = load(name, zero_shot_weights[kind], classes=("cat", "dog"))
    assert model.spec.zero_shot and injected_embeddings == [("cat", "dog")]  # embedded at load: fails fast
    items = [image(3, 320, 240), image(4, 200, 300)]
    context = PredictContext(task, ("cat", "dog"), 0.0)
    first = check_predictions(model.spec, context, items, model.predict(items, context))
    assert injected_embeddings == [("cat", "dog")]  # cached
    assert all(first) and {label.label for result in first for label in result} <= {"cat", "dog"}
    if task == "segmentation":
        assert all(label.mask is not None for result in first for label in result)
    # The same prompts in the other order: the class-score columns swap and nothing else changes, so every
    # box keeps its label (labels follow the embeddings, not the positions).
    prepared = [model.prepare(item.array) for item in items]
    before = model.forward(prepared).predictions
    model.predict(items, PredictContext(task, ("dog", "cat"), 0.0))
    assert injected_embeddings == [("cat", "dog"), ("dog", "cat")]
    after = model.forward(prepared).predictions
    torch.testing.assert_close(after[:, [0, 1, 2, 3, 5, 4]], before[:, :6])
    torch.testing.assert_close(after[:, 6:], before[:, 6:])  # mask coefficients
    other = model.predict(items, PredictContext(task, ("a red car", "tree", "lamp"), 0.0))
    assert {label.label for result in other for label in result} <= {"a red car", "tree", "lamp"}
    model.predict(items, PredictContext(task, ("cat", "dog"), 0.0))
    assert len(injected_embeddings) == 3  # back to a tuple seen before: no new embedding


def test_default_text_encoders_load_from_their_weight_files(zero_shot_weights):
    """The real text-encoder path (tokenizer, encoder, normalisation) with tiny random encoders in the formats of
    OpenAI's ViT-B-32.pt (YOLO-World) and ultralytics' mobileclip_blt.ts (YOLOE)."""
    for name, kind, encoder in [("yolov8s-worldv2", "world", "clip"), ("yoloe-11s-seg", "yoloe", "mobileclip")]:
        model, _ = load(name, zero_shot_weights[kind], classes=("cat", "dog"), text_encoder=zero_shot_weights[encoder])
        embeddings = model.text_embeddings(("cat", "dog", "cat"))
        assert embeddings.shape == (3, 512)
        assert torch.allclose(embeddings.norm(dim=-1), torch.ones(3), atol=1e-4)
        assert torch.allclose(embeddings[0], embeddings[2]) and not torch.allclose(embeddings[0], embeddings[1])
        labels = model.predict([image(5, 320, 240)], PredictContext("detection", ("cat", "dog"), 0.0))[0]
        assert labels and {label.label for label in labels} <= {"cat", "dog"}


# --- failures -------------------------------------------------------------------------------------------------------
def test_missing_weights_fail_fast_naming_the_file(home, tmp_path):
    with pytest.raises(ModelLoadError) as info:
        load("yolo11n-coco", None)
    message = str(info.value)
    assert "yolo11n.pt" in message and str(home / "weights") in message and "--weights" in message
    with pytest.raises(ConfigError, match=r"weights file .* not found: .*nope\.pt"):
        registry.resolve("yolo11n-coco", str(tmp_path / "nope.pt"))  # reading the class names already fails


def test_missing_text_encoder_fails_at_load_naming_it(zero_shot_weights):
    with pytest.raises(ModelLoadError, match=r"ViT-B-32\.pt"):
        load("yolov8s-worldv2", zero_shot_weights["world"], classes=("cat",))
    with pytest.raises(ModelLoadError, match=r"mobileclip_blt\.ts"):
        load("yoloe-11s-seg", zero_shot_weights["yoloe"], classes=("cat",))


def test_wrong_or_broken_weights_are_refused(weights, tmp_path):
    with pytest.raises(ModelLoadError, match="needs a segment"):
        load("yolo11n-seg-coco", weights["detect"])
    with pytest.raises(ModelLoadError, match="needs a pose"):
        load("yolo11n-pose-coco", weights["segment"])
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"cannot read YOLO weights .*broken\.pt"):
        registry.resolve("yolo11n-coco", str(broken))
    entry = registry.resolve("yolo11n-coco").entry
    with pytest.raises(ModelLoadError, match=r"cannot read YOLO weights .*broken\.pt"):
        ultralytics_yolo.load(LoadRequest(weights=str(broken), device="cpu"), entry)
    with pytest.raises(ModelLoadError, match="multiple of 32"):
        load("yolo11n-coco", weights["detect"], imgsz=300)


def test_importing_ultralytics_stays_quiet_offline_and_leaves_threads_alone(tmp_path):
    script = (
        "import os, cv2, sys\n"
        "import verilabel.models.adapters.ultralytics_yolo as adapter\n"
        "assert 'torch' not in sys.modules and 'ultralytics' not in sys.modules\n"
        "before = cv2.getNumThreads()\n"
        "adapter._import_ultralytics()\n"
        "import ultralytics.utils as u\n"
        "assert not u.ONLINE and not u.AUTOINSTALL\n"
        "assert 'OMP_NUM_THREADS' not in os.environ and cv2.getNumThreads() == before\n"
        "print(os.environ['YOLO_CONFIG_DIR'])\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "user"), "VERILABEL_HOME": str(tmp_path / "vl")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "vl" / "ultralytics")  # nothing else printed
    assert not (tmp_path / "user").exists()  # no settings written to the user's home


def test_a_corrupt_image_is_still_reported_as_such_once_ultralytics_is_loaded(tmp_path):
    """ultralytics replaces PIL.Image.open with one that tries to pip-install pi-heif on unknown files."""
    from verilabel.datasets.images import decode
    from verilabel.errors import SampleError
    from verilabel.models.adapters import ultralytics_yolo

    ultralytics_yolo._import_ultralytics()
    import ultralytics.utils.patches  # noqa: F401  (imported again: its patch must stay undone)

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    with pytest.raises(SampleError, match="not an image"):
        decode(broken)


@pytest.mark.parametrize("kind", ["detect", "segment"])
def test_split_predict_runs_overlapped_in_the_pipeline_with_the_same_labels(weights, tmp_path, kind):
    model, _ = load("yolo11n-seg-coco" if kind == "segment" else "yolo11n-coco", weights[kind])
    arrays = [image(seed, 96 + 16 * seed, 80).array for seed in range(5)]
    context = PredictContext("segmentation" if kind == "segment" else "detection", NAMES, 0.0)
    assert overlapped_matches_predict(model, arrays, context, tmp_path)


# --- YOLO26, YOLOE-26 -----------------------------------------------------------------------------------------------
SIZES = "nsmlx"
TEXT_PROMPTS = ("cat", "dog")


@pytest.fixture(scope="module")
def weights_26(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("yolo26")
    return {
        "detect-26": save_yolo(folder, "detect-26", names=NAMES),
        "segment-26": save_yolo(folder, "segment-26", names=NAMES),
        "pose-26": save_yolo(folder, "pose-26"),
        "classify-26": save_yolo(folder, "classify-26", names=(*NAMES, "fish")),
        "yoloe-26": save_yolo(folder, "yoloe-26", names=TEXT_PROMPTS),
    }


YOLO26 = [
    ("yolo26n-coco", "detect-26", "detection"),
    ("yolo26n-seg-coco", "segment-26", "segmentation"),
    ("yolo26n-pose-coco", "pose-26", "keypoints"),
]


def test_yolo26_and_yoloe26_entries_resolve_and_name_ultralytics_release_weights():
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES, attempt_download_asset

    release = inspect.signature(attempt_download_asset).parameters["release"].default
    assert release == "v8.4.0"  # the release ultralytics 8.4 downloads YOLO26 and YOLOE-26 from
    prefix = f"url:https://github.com/ultralytics/assets/releases/download/{release}/"
    expected = {
        **{f"yolo26{k}-coco": (f"yolo26{k}.pt", ("detection",), 80) for k in SIZES},
        **{f"yolo26{k}-seg-coco": (f"yolo26{k}-seg.pt", ("segmentation",), 80) for k in SIZES},
        **{f"yolo26{k}-pose-coco": (f"yolo26{k}-pose.pt", ("keypoints", "detection"), 1) for k in SIZES},
        **{f"yolo26{k}-cls-imagenet": (f"yolo26{k}-cls.pt", ("classification",), 1000) for k in SIZES},
        **{f"yoloe-26{k}-seg": (f"yoloe-26{k}-seg.pt", ("segmentation", "detection"), 0) for k in SIZES},
    }
    catalogued = {entry.name for entry in registry.catalogue() if "26" in entry.name}
    assert catalogued == set(expected)
    for name, (file, tasks, classes) in expected.items():
        ref = registry.resolve(name)
        entry = ref.entry
        assert entry is not None and entry.weights == prefix + file and file in GITHUB_ASSETS_NAMES, name
        assert entry.loader == "verilabel.models.adapters.ultralytics_yolo:load" and entry.licence == "AGPL-3.0"
        assert ref.tasks == tasks and len(ref.vocabulary) == classes and ref.zero_shot == (classes == 0), name
        assert entry.runtimes == (("torch",) if entry.zero_shot else ("torch", "onnx")), name
        if "pose" in name:
            assert ref.vocabulary == ("person",) and entry.keypoint_names[:2] == ("nose", "left_eye")
            assert len(entry.keypoint_names) == 17
    sizes = {registry.resolve(f"yolo26{k}-coco").entry.size for k in SIZES}  # type: ignore[union-attr]
    assert sizes == {"nano", "small", "medium", "large", "xlarge"}


@pytest.mark.parametrize("end2end", [False, True], ids=["nms", "end2end"])
@pytest.mark.parametrize(("name", "kind", "task"), YOLO26, ids=[kind for _, kind, _ in YOLO26])
def test_yolo26_matches_ultralytics_own_predict_with_either_head(weights_26, name, kind, task, end2end):
    """YOLO26 heads carry both branches. By default, as ultralytics' own predict (``nms=None``), the one-to-many
    branch and NMS; with ``end2end``, as ultralytics' ``nms=False``, the NMS-free one-to-one branch, whose rows
    come already chosen (its top 300, ``x1 y1 x2 y2 score class extra``) and go through no NMS."""
    from ultralytics import YOLO

    model, ref = load(name, weights_26[kind], end2end=end2end)
    item = image(7, 311, 237)
    extra = {"detection": 0, "segmentation": 32, "keypoints": 17 * 3}[task]
    raw = model.forward([model.prepare(item.array)]).predictions
    anchors = sum((IMGSZ // stride) ** 2 for stride in (8, 16, 32))
    classes = len(ref.vocabulary)
    assert tuple(raw.shape) == ((1, 300, 6 + extra) if end2end else (1, 4 + classes + extra, anchors))
    ours = model.predict([item], PredictContext(task, ref.vocabulary, 0.25))[0]
    theirs = YOLO(str(weights_26[kind])).predict(
        item.array[..., ::-1].copy(),
        imgsz=IMGSZ,
        conf=0.25,
        rect=False,
        retina_masks=True,
        verbose=False,
        nms=False if end2end else None,
    )[0]
    # YOLO26's random prototypes leave a few more faint masks (up to 2-3 % of their box) than YOLO11's
    assert_same_as_theirs(ours, theirs, ref.vocabulary, task, name, faint=0.05)


def test_yolo26_heads_differ_and_end2end_skips_nms(weights_26, monkeypatch):
    """The two branches give different boxes (so the comparisons above tell them apart), and the NMS-free rows
    are taken as they come: two overlapping boxes of one class both stay."""
    item = image(7, 311, 237)
    context = PredictContext("detection", NAMES, 0.25)
    found = {}
    for end2end in (False, True):
        model, _ = load("yolo26n-coco", weights_26["detect-26"], end2end=end2end)
        found[end2end] = {(label.label, round(label.confidence, 4)) for label in model.predict([item], context)[0]}
    assert found[False] and found[True] and found[False] != found[True]
    rows = torch.tensor([[[32, 64, 96, 112, 0.9, 1], [33, 64, 96, 112, 0.8, 1], [0, 40, 10, 50, 0.1, 0]]])
    monkeypatch.setattr(model, "forward", lambda prepared: RawOutput(rows.float()))
    labels = model.predict([image(0, 320, 240)], PredictContext("detection", NAMES, 0.2))[0]
    assert [label.label for label in labels] == ["dog", "dog"]
    capped, _ = load("yolo26n-coco", weights_26["detect-26"], end2end=True, classes=NAMES, max_labels=2)
    assert capped._head.max_det == 300  # its top-k keeps 300 before the class filter, as ultralytics' predictor
    assert len(capped.predict([item], context)[0]) == 2


@pytest.mark.parametrize("end2end", [False, True], ids=["nms", "end2end"])
@pytest.mark.parametrize(("name", "kind", "task"), YOLO26[:2], ids=[kind for _, kind, _ in YOLO26[:2]])
def test_yolo26_on_onnx_runtime_gives_torchs_labels(weights_26, name, kind, task, end2end):
    """The export stops before an end-to-end head's top-k (ONNX Runtime's TopK would pick among near-equal
    scores its own way, and the export would not match torch): the top-k runs in torch after either runtime."""
    item = image(7, 311, 237)
    context = PredictContext(task, NAMES, 0.25)
    labels = {}
    for runtime in ("torch", "onnx"):
        ref = registry.resolve(name, str(weights_26[kind]))
        request = LoadRequest(
            weights=str(weights_26[kind]), device="cpu", runtime=runtime, options={"imgsz": IMGSZ, "end2end": end2end}
        )
        model = registry.load(ref, request)
        assert model.runtime.name == runtime
        labels[runtime] = sorted(model.predict([item], context)[0], key=lambda label: -label.confidence)
    assert len(labels["onnx"]) == len(labels["torch"]) > 0
    for theirs, ours in zip(labels["torch"], labels["onnx"], strict=True):
        assert ours.label == theirs.label and ours.confidence == pytest.approx(theirs.confidence, abs=1e-3)
        assert np.allclose(ours.box.as_tuple(), theirs.box.as_tuple(), atol=1e-3)


@pytest.mark.parametrize("nms", [None, False], ids=["one-to-many", "end2end"])
def test_yolo26_onnx_exports_run_on_the_onnx_yolo_adapter_as_ultralytics_predicts(weights_26, tmp_path, nms):
    """A YOLO26 exported by ultralytics (``yolo export format=onnx``): by default its one-to-many outputs (NMS
    here), with ``nms=False`` its NMS-free head's ``K x 6`` rows (kept as they come); as ultralytics' predict."""
    pytest.importorskip("onnx")  # ultralytics' exporter needs it
    import shutil
    import warnings

    from ultralytics import YOLO

    checkpoint = Path(shutil.copy(weights_26["detect-26"], tmp_path / "yolo26.pt"))
    with warnings.catch_warnings():  # torch's legacy ONNX exporter and its tracer complain, harmlessly
        warnings.simplefilter("ignore")
        exported = YOLO(str(checkpoint)).export(format="onnx", imgsz=IMGSZ, dynamic=True, simplify=False, nms=nms)
    ref = registry.resolve("onnx-yolo", exported)
    model = registry.load(ref, LoadRequest(weights=exported, device="cpu"))
    assert ref.vocabulary == NAMES and model._end_to_end == (nms is False)
    item = image(7, 311, 237)
    ours = model.predict([item], PredictContext("detection", NAMES, 0.25))[0]
    theirs = YOLO(str(checkpoint)).predict(
        item.array[..., ::-1].copy(), imgsz=IMGSZ, conf=0.25, rect=False, verbose=False, nms=nms
    )[0]
    assert len(ours) == len(theirs.boxes)
    assert_same_as_theirs(ours, theirs, NAMES, "detection", f"yolo26 export, nms={nms}")


@pytest.mark.parametrize("end2end", [False, True], ids=["nms", "end2end"])
def test_yoloe26_text_prompts_match_ultralytics_own_predict(weights_26, injected_embeddings, end2end):
    """YOLOE-26 with the same (injected) text embeddings as ultralytics' ``set_classes``: same boxes and masks,
    with either head."""
    from ultralytics import YOLOE

    model, _ = load("yoloe-26n-seg", weights_26["yoloe-26"], classes=TEXT_PROMPTS, end2end=end2end)
    assert model._net.text_model == "mobileclip2:b" and model._net.text_model in ultralytics_yolo.TEXT_ENCODERS
    item = image(7, 311, 237)
    ours = model.predict([item], PredictContext("segmentation", TEXT_PROMPTS, 0.25))[0]
    theirs_model = YOLOE(str(weights_26["yoloe-26"]))
    with torch.no_grad():  # ultralytics' get_text_pe: the text encoder's embeddings through the prompt head
        raw = fixed_text_embeddings(TEXT_PROMPTS).reshape(1, len(TEXT_PROMPTS), -1)
        theirs_model.set_classes(list(TEXT_PROMPTS), theirs_model.model.model[-1].get_tpe(raw))
    theirs = theirs_model.predict(
        item.array[..., ::-1].copy(),
        imgsz=IMGSZ,
        conf=0.25,
        rect=False,
        retina_masks=True,
        verbose=False,
        nms=False if end2end else None,
    )[0]
    assert_same_as_theirs(ours, theirs, TEXT_PROMPTS, "segmentation", "yoloe-26n-seg", faint=0.05)


def test_yoloe26_needs_its_mobileclip2_text_encoder(weights_26):
    with pytest.raises(ModelLoadError, match=r"mobileclip2_b\.ts"):
        load("yoloe-26n-seg", weights_26["yoloe-26"], classes=("cat",))


# the shorter side to 64, then crops whose offsets torchvision rounds half to even: 1.5 -> 2, 3.5 -> 4, 18.5 -> 18
CLASSIFIER_SIZES = [(67, 64), (64, 71), (97, 61), (64, 64), (300, 203), (51, 90)]


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_yolo26_classifier_matches_ultralytics_own_predict(weights_26, runtime):
    from ultralytics import YOLO

    path = weights_26["classify-26"]
    ref = registry.resolve("yolo26n-cls-imagenet", str(path))
    assert ref.vocabulary == (*NAMES, "fish")  # --weights: the checkpoint's own class names
    request = LoadRequest(weights=str(path), device="cpu", runtime=runtime, options={"imgsz": 64})
    model = registry.load(ref, request)
    assert model.runtime.name == runtime and model.spec.input_size == 64
    theirs_model = YOLO(str(path))
    items = [image(seed, width, height) for seed, (width, height) in enumerate(CLASSIFIER_SIZES)]
    context = PredictContext("classification", ref.vocabulary, 0.0)
    results = check_predictions(model.spec, context, items, model.predict(items, context))
    for item, (label,) in zip(items, results, strict=True):
        probabilities = theirs_model.predict(item.array[..., ::-1].copy(), imgsz=64, verbose=False)[0].probs
        expected = probabilities.data.numpy()
        assert label.label == ref.vocabulary[int(expected.argmax())]
        assert label.confidence == pytest.approx(float(expected.max()), abs=1e-5)
        for name, score in label.attributes["scores"]:
            assert score == pytest.approx(float(expected[ref.vocabulary.index(name)]), abs=1e-4)
    only_dogs = model.predict(items, PredictContext("classification", ("dog",), 0.0))
    assert {label.label for result in only_dogs for label in result} == {"dog"}
    assert model.predict(items, PredictContext("classification", ("dog",), 0.99)) == [[] for _ in items]


def test_yolo26_classifier_from_the_catalogue_names_its_classes_as_the_entry(home, tmp_path):
    """The catalogue's ImageNet vocabulary is torchvision's list, index-aligned with the class ids; ultralytics'
    checkpoints spell some of those classes their own way ("hammerhead shark"): labels use the entry's names."""
    import yaml
    from ultralytics.utils import ROOT

    theirs = yaml.safe_load((ROOT / "cfg" / "datasets" / "ImageNet.yaml").read_text())["names"]
    names = tuple(theirs[i] for i in range(1000))
    cached = home / "weights" / "yolo26n-cls.pt"  # where the catalogue's download lands
    cached.parent.mkdir(parents=True, exist_ok=True)
    save_yolo(tmp_path, "classify-26", names=names).rename(cached)
    ref = registry.resolve("yolo26n-cls-imagenet")
    assert ref.vocabulary[4] == "hammerhead" and names[4] == "hammerhead shark"
    model = registry.load(ref, LoadRequest(device="cpu", options={"imgsz": 64}))
    assert model.spec.vocabulary == ref.vocabulary
    items = [image(1, 80, 64)]
    (label,) = model.predict(items, PredictContext("classification", ("hammerhead",), 0.0))[0]
    assert label.label == "hammerhead"


def test_task_and_weights_must_agree_for_yolo26(weights_26):
    with pytest.raises(ModelLoadError, match="needs a classify model"):
        load("yolo26n-cls-imagenet", weights_26["detect-26"])
    with pytest.raises(ModelLoadError, match="holds a YOLO classify model"):
        load("yolo26n-coco", weights_26["classify-26"])
    with pytest.raises(ModelLoadError, match="needs a pose model"):
        load("yolo26n-pose-coco", weights_26["segment-26"])


def test_yoloe_suppresses_across_classes_as_ultralytics_predict_and_others_on_request(
    weights, weights_26, monkeypatch, injected_embeddings
):
    """Ultralytics' YOLOE predict runs class-agnostic NMS (overlapping prompts would box one object twice); the
    other families keep one box per class unless ``agnostic`` is asked for."""
    item = image(0, 320, 240)
    rows = [[64, 88, 64, 48, 0.9, 0.0], [66, 88, 64, 48, 0.0, 0.7]]  # a cat, and a dog in the same place

    def found(model: Any, classes: tuple[str, ...], extra: int) -> list[str]:
        force(model, monkeypatch, [row + [0.0] * extra for row in rows])
        return sorted(label.label for label in model.predict([item], PredictContext("detection", classes, 0.5))[0])

    assert found(load("yolo11n-coco", weights["detect"])[0], NAMES, 1) == ["cat", "dog"]
    assert found(load("yolo11n-coco", weights["detect"], agnostic=True)[0], NAMES, 1) == ["cat"]
    yoloe, _ = load("yoloe-26n-seg", weights_26["yoloe-26"], classes=TEXT_PROMPTS)
    assert found(yoloe, TEXT_PROMPTS, 32) == ["cat"]
    yoloe, _ = load("yoloe-26n-seg", weights_26["yoloe-26"], classes=TEXT_PROMPTS, agnostic="false")
    assert found(yoloe, TEXT_PROMPTS, 32) == ["cat", "dog"]
