"""torchvision classifiers and semantic segmenters through the real loading path (random weights saved locally),
and known logits forced through their post-processing."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from tests.support import random_models_torchvision  # noqa: E402
from tests.support.images import blob_image  # noqa: E402
from tests.support.overlap import overlapped_matches_predict  # noqa: E402
from verilabel import ImageItem, PredictContext  # noqa: E402
from verilabel.errors import ModelLoadError  # noqa: E402
from verilabel.models import registry  # noqa: E402
from verilabel.models.adapters.torchvision_classification import ImageNetClassifier  # noqa: E402
from verilabel.models.adapters.torchvision_semantic import (  # noqa: E402
    TorchvisionSemantic,
    _regions_opencv,
    _regions_scipy,
    padded_batch,
)
from verilabel.models.catalogue import builtin_catalogue, vocabulary_file  # noqa: E402
from verilabel.models.checks import check_predictions  # noqa: E402
from verilabel.models.interface import LoadRequest  # noqa: E402
from verilabel.models.preprocess import RGB_MEAN_IMAGENET, RGB_STD_IMAGENET, to_batch  # noqa: E402

pytestmark = pytest.mark.torch

VOC = vocabulary_file("voc")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, Path]]:
    root = tmp_path_factory.mktemp("weights")
    return {kind: random_models_torchvision.save(kind, root) for kind in ("classification", "semantic")}


def noise(seed: int, height: int, width: int) -> ImageItem:
    return ImageItem(seed, f"{seed}.png", np.random.default_rng(seed).integers(0, 255, (height, width, 3), np.uint8))


class FixedLogits:
    """Stands in for a network: returns given logits (for a classifier) or {"out": logits}, records its input."""

    def __init__(self, logits: np.ndarray, *, segmentation: bool = False) -> None:
        self.logits = torch.tensor(logits, dtype=torch.float32)
        self.segmentation = segmentation
        self.inputs: list = []

    def __call__(self, batch):
        self.inputs.append(batch)
        return {"out": self.logits} if self.segmentation else self.logits


def entry(name: str):
    found = registry.resolve(name).entry
    assert found is not None
    return found


LOADERS = {f"verilabel.models.adapters.torchvision_{kind}:load" for kind in ("classification", "semantic")}


@pytest.mark.parametrize("model", [e for e in builtin_catalogue() if e.loader in LOADERS], ids=lambda e: e.name)
def test_catalogue_weights_and_resize_match_torchvisions_recipe(model):
    """Each entry names a torchvision builder, one of its released weights, and that weights' resize."""
    recipes = {w.url: w.transforms() for w in torchvision.models.get_model_weights(model.options["arch"])}
    recipe = recipes[model.weights.partition(":")[2]]
    default = 520 if model.tasks == ("segmentation",) else 256
    assert model.options.get("resize", default) == recipe.resize_size[0]
    assert getattr(recipe, "crop_size", [224])[0] == 224


# --- classification ----------------------------------------------------------------------------------------
def test_classifier_loads_local_weights_and_returns_top1_with_top5_scores(weights):
    name, path = weights["classification"]
    ref = registry.resolve(name)
    model = registry.load(ref, LoadRequest(weights=str(path), device="cpu"))
    images = [noise(1, 240, 320), noise(2, 400, 300), noise(3, 100, 100)]
    for image in images:
        image.prepared = model.prepare(image.array)
        assert image.prepared.shape == (224, 224, 3) and image.prepared.dtype == np.uint8
    context = PredictContext("classification", ref.vocabulary, 0.0)
    results = check_predictions(model.spec, context, images, model.predict(images, context))
    for (label,) in results:
        scores = label.attributes["scores"]
        assert len(scores) == 5 and scores[0][0] == label.label
        assert [s for _, s in scores] == sorted((s for _, s in scores), reverse=True)
    subset = model.predict(images, PredictContext("classification", ("tabby", "espresso"), 0.0))
    assert all(label.label in ("tabby", "espresso") and len(label.attributes["scores"]) == 2 for (label,) in subset)
    assert model.predict(images, PredictContext("classification", ref.vocabulary, 0.99)) == [[], [], []]


def test_classifier_embeds_with_the_features_its_last_layer_reads(weights):
    """``embed``: the pooled features before the classification layer (ResNet's ``fc``), unit length."""
    name, path = weights["classification"]
    model = registry.load(registry.resolve(name), LoadRequest(weights=str(path), device="cpu"))
    images = [noise(1, 240, 320), noise(2, 400, 300)]
    net = model._net
    batch = to_batch(
        [model.prepare(i.array) for i in images], torch.device("cpu"), mean=RGB_MEAN_IMAGENET, std=RGB_STD_IMAGENET
    )
    with torch.inference_mode():
        body = torch.nn.Sequential(*list(net.children())[:-1])  # everything up to fc: the pooled features
        expected = torch.nn.functional.normalize(body(batch).flatten(1), dim=-1).numpy()
    vectors = model.embed(images)  # through ONNX Runtime, as the classifier (a second export, without fc)
    assert model._features.__class__.__name__ == "OnnxCore"
    assert vectors.shape == (2, net.fc.in_features)
    np.testing.assert_allclose(vectors, expected, atol=1e-4)
    assert isinstance(net.fc, torch.nn.Linear)  # the classifier keeps its head


def test_forced_logits_give_softmax_top1_among_the_asked_classes():
    names = vocabulary_file("imagenet-1k")
    logits = np.zeros((1, 1000), np.float32)
    tabby, tiger_cat, espresso = names.index("tabby"), names.index("tiger cat"), names.index("espresso")
    logits[0, [tabby, tiger_cat, espresso]] = [9.0, 8.0, 1.0]
    model = ImageNetClassifier(entry("resnet18-imagenet"), FixedLogits(logits), torch.device("cpu"))
    image = noise(1, 50, 80)
    probabilities = torch.tensor(logits).softmax(dim=1)[0]
    ((top,),) = model.predict([image], PredictContext("classification", names, 0.0))
    assert top.label == "tabby" and top.confidence == pytest.approx(float(probabilities[tabby]))
    assert top.attributes["scores"][:2] == [
        ["tabby", round(float(probabilities[tabby]), 4)],
        ["tiger cat", round(float(probabilities[tiger_cat]), 4)],
    ]
    # A subset keeps the full softmax (no renormalisation) and never returns a class it was not asked for.
    ((cup,),) = model.predict([image], PredictContext("classification", ("espresso", "tiger cat"), 0.0))
    assert cup.label == "tiger cat" and cup.confidence == pytest.approx(float(probabilities[tiger_cat]))
    assert model.predict([image], PredictContext("classification", ("espresso",), 0.01)) == [[]]


def test_classifier_crops_the_centre_and_normalises_on_the_device():
    image = np.zeros((300, 900, 3), np.uint8)
    image[:, :300], image[:, 300:600], image[:, 600:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    net = FixedLogits(np.zeros((1, 1000), np.float32))
    model = ImageNetClassifier(entry("resnet50-imagenet"), net, torch.device("cpu"), resize=232)
    assert model.spec.input_size == 232
    prepared = model.prepare(image)
    assert prepared.shape == (224, 224, 3) and (prepared == (0, 255, 0)).all()  # only the middle third
    model.predict([ImageItem(1, "x", image, prepared)], PredictContext("classification", ("tabby",), 0.0))
    (batch,) = net.inputs
    expected = (np.array([0, 1, 0]) - np.array(RGB_MEAN_IMAGENET)) / np.array(RGB_STD_IMAGENET)
    assert batch.shape == (1, 3, 224, 224)
    assert np.allclose(batch[0, :, 0, 0].numpy(), expected, atol=1e-5)


def test_wrong_or_missing_classifier_weights_fail_with_the_fix(weights, tmp_path: Path):
    _, path = weights["classification"]
    with pytest.raises(ModelLoadError, match="do not fit 'resnet34-imagenet'"):
        registry.load(registry.resolve("resnet34-imagenet"), LoadRequest(weights=str(path), device="cpu"))
    with pytest.raises(ModelLoadError) as info:
        registry.load(registry.resolve("resnet50-imagenet"), LoadRequest(device="cpu"))
    assert "resnet50-11ad3fa6.pth" in str(info.value) and "--weights" in str(info.value)


# --- semantic segmentation -----------------------------------------------------------------------------------
def test_semantic_segmenter_loads_local_weights_and_returns_region_masks(weights):
    name, path = weights["semantic"]
    ref = registry.resolve(name)
    request = LoadRequest(weights=str(path), device="cpu", options={"size": 64, "min_area": 0.0})
    model = registry.load(ref, request)  # the checkpoint's auxiliary head is dropped, not refused
    assert model.spec.input_size == 64
    images = [noise(1, 48, 64), noise(2, 64, 48)]
    for image in images:
        image.prepared = model.prepare(image.array)
    assert images[0].prepared.shape == (64, 85, 3)
    context = PredictContext("segmentation", ref.vocabulary, 0.0)
    results = check_predictions(model.spec, context, images, model.predict(images, context))
    labels = [label for found in results for label in found]
    assert labels and all(label.mask is not None for label in labels)
    narrow = model.predict(images, PredictContext("segmentation", ("cat", "dog"), 0.0))
    assert {label.label for found in narrow for label in found} <= {"cat", "dog"}


def semantic_logits(height: int, width: int) -> np.ndarray:
    """Background (index 0) at logit 5 everywhere; classes at 10 where they are."""
    logits = np.zeros((len(VOC), height, width), np.float32)
    logits[0] = 5.0
    return logits


def test_forced_logits_become_one_mask_per_region_in_original_pixels():
    # Image 0: 200x100 -> 50x25 input (size 25, 4x upsampling back); image 1: 80x80 -> 25x25 (3.2x), padded to
    # 50 wide in the batch. A class wins a pixel where its interpolated logit passes the background's: exactly
    # at the input pixels' edges.
    first, second = semantic_logits(25, 50), semantic_logits(25, 50)
    person, car, dog = VOC.index("person"), VOC.index("car"), VOC.index("dog")
    first[person, 5:15, 10:30] = 10.0  # -> original rows 20-59, cols 40-119
    first[person, 20:25, 40:45] = 10.0  # a second person, apart from the first: rows 80-99, cols 160-179
    first[car, 0:1, 0:1] = 10.0  # speckle under the minimum area
    second[dog, 0:12, 0:12] = 10.0  # -> original 0-38.4: pixel centres 0.5-37.5
    second[car, :, 25:] = 10.0  # in the batch padding: must not appear
    net = FixedLogits(np.stack([first, second]), segmentation=True)
    model = TorchvisionSemantic(entry("deeplabv3-mobilenet-v3-voc"), net, torch.device("cpu"), size=25)
    images = [ImageItem(0, "a", np.zeros((100, 200, 3), np.uint8)), ImageItem(1, "b", np.zeros((80, 80, 3), np.uint8))]
    context = PredictContext("segmentation", ("person", "car", "dog"), 0.5)
    found, other = check_predictions(model.spec, context, images, model.predict(images, context))
    assert net.inputs[0].shape == (2, 3, 25, 50)

    assert sorted(label.label for label in found) == ["person", "person"]
    big, small = sorted(found, key=lambda label: -label.box.w)
    assert big.box.as_tuple() == pytest.approx((40 / 200, 20 / 100, 80 / 200, 40 / 100))
    assert big.mask.array.shape == (40, 80) and big.mask.array[1:-1, 1:-1].all()  # bilinear rounds the corners
    assert 0.95 < big.confidence < 0.991  # the interior probability; edge pixels blend with the background
    assert small.box.as_tuple() == pytest.approx((160 / 200, 80 / 100, 20 / 200, 20 / 100))

    ((dog_label,),) = [other]
    assert dog_label.label == "dog" and dog_label.box.as_tuple() == pytest.approx((0, 0, 38 / 80, 38 / 80))

    # The score floor and the class subset both apply.
    assert model.predict(images, PredictContext("segmentation", ("person", "dog"), 0.9999)) == [[], []]
    assert model.predict(images, PredictContext("segmentation", ("dog",), 0.5))[0] == []


def test_region_confidence_is_the_mean_class_probability():
    logits = semantic_logits(20, 20)
    cat = VOC.index("cat")
    logits[cat, :, :10] = 10.0
    logits[cat, :, 5:10] = 6.0  # less sure on the right half of the region
    model = TorchvisionSemantic(
        entry("fcn-resnet50-voc"), FixedLogits(logits[None], segmentation=True), torch.device("cpu"), size=20
    )
    ((label,),) = model.predict(
        [ImageItem(0, "a", np.zeros((20, 20, 3), np.uint8))], PredictContext("segmentation", ("cat",), 0.0)
    )
    probabilities = torch.tensor(logits).softmax(dim=0)[cat, :, :10]
    assert label.confidence == pytest.approx(float(probabilities.mean()), rel=1e-4)


@pytest.mark.parametrize("finder", [_regions_opencv, _regions_scipy])
def test_both_region_finders_give_8_connected_regions_above_the_minimum(finder):
    mask = np.zeros((10, 12), bool)
    mask[1:3, 1:3] = True
    mask[3, 3] = True  # touches the square diagonally: the same region
    mask[6:9, 6:11] = True
    mask[0, 11] = True  # a single pixel, under the minimum
    found = sorted((x, y, crop.shape, int(crop.sum())) for x, y, crop in finder(mask, 2))
    assert found == [(1, 1, (3, 3), 5), (6, 6, (3, 5), 15)]


def test_padded_batch_zeroes_the_padding_after_normalising():
    images = [np.full((4, 6, 3), 255, np.uint8), np.full((5, 3, 3), 255, np.uint8)]
    batch = padded_batch(images, "cpu", mean=RGB_MEAN_IMAGENET, std=RGB_STD_IMAGENET)
    assert batch.shape == (2, 3, 5, 6)
    white = (1 - np.array(RGB_MEAN_IMAGENET)) / np.array(RGB_STD_IMAGENET)
    assert np.allclose(batch[0, :, :4].mean(dim=(1, 2)).numpy(), white, atol=1e-5)
    assert torch.count_nonzero(batch[0, :, 4:]) == 0 and torch.count_nonzero(batch[1, :, :, 3:]) == 0


def test_missing_semantic_weights_name_the_torch_cache(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ModelLoadError) as info:
        registry.load(registry.resolve("deeplabv3-resnet50-voc"), LoadRequest(device="cpu"))
    message = str(info.value)
    assert "deeplabv3_resnet50_coco-cd0a2569.pth" in message and str(tmp_path / "torch") in message


def test_split_predict_runs_overlapped_in_the_pipeline_with_the_same_labels(weights, tmp_path):
    for kind, task, classes in (
        ("classification", "classification", ("goldfish", "tench")),
        ("semantic", "segmentation", ("cat", "dog", "person")),
    ):
        name, path = weights[kind]
        model = registry.load(registry.resolve(name), LoadRequest(weights=str(path), device="cpu"))
        arrays = [noise(seed, 90, 120).array for seed in range(3)]
        assert overlapped_matches_predict(model, arrays, PredictContext(task, classes, 0.0), tmp_path / kind)


def test_semantic_masks_are_made_at_the_full_size_of_an_image_decoded_smaller():
    """The 200x100 image of the test above, decoded at 1/2 of a 400x200 photo: each region's mask covers its box
    in the photo's pixels, its edges where the class wins at those pixels (the regions stay apart)."""
    first = semantic_logits(25, 50)
    person = VOC.index("person")
    first[person, 5:15, 10:30] = 10.0  # -> photo rows 40-119, cols 80-239
    first[person, 20:25, 40:45] = 10.0  # a second person: rows 160-199, cols 320-359
    net = FixedLogits(first[None], segmentation=True)
    model = TorchvisionSemantic(entry("deeplabv3-mobilenet-v3-voc"), net, torch.device("cpu"), size=25)
    half = ImageItem(0, "a.jpg", np.zeros((100, 200, 3), np.uint8), full_size=(400, 200))
    context = PredictContext("segmentation", ("person",), 0.5)
    (found,) = check_predictions(model.spec, context, [half], model.predict([half], context))
    big, small = sorted(found, key=lambda label: -label.box.w)
    assert big.box.as_tuple() == pytest.approx((40 / 200, 20 / 100, 80 / 200, 40 / 100))
    # bilinear rounds the corners, over twice as many pixels as at the decode's size
    assert big.mask.array.shape == (80, 160) and big.mask.array[2:-2, 2:-2].all() and big.mask.array.mean() > 0.99
    assert small.mask.array.shape == (40, 40) and small.mask.array[2:-2, 2:-2].all()


@pytest.mark.slow
def test_mask_rcnn_masks_are_torchvisions_own_pasted_masks_box_sized():
    """Mask R-CNN's masks as torchvision pastes them into the whole image, but only over each box: the same
    pixels, without a canvas per detection."""
    import copy

    from verilabel.models.adapters import torchvision_detection as tvd

    torch.manual_seed(5)  # a random network whose detections include classes of the vocabulary
    reference_net = tvd.build_network("mask-rcnn", score_thresh=0.0, detections_per_img=20).eval()
    net = copy.deepcopy(reference_net)
    tvd._keep_box_masks(net)
    model = tvd.TorchvisionDetector(entry("mask-rcnn-resnet50-fpn-coco"), net, torch.device("cpu"), None, 1)
    image = blob_image(3, 160, 120)
    context = PredictContext("segmentation", tuple(model.spec.vocabulary), 0.0)
    (labels,) = model.predict([ImageItem(0, "a", image)], context)
    (raw,) = model.infer([ImageItem(0, "a", image)], context)[1]
    assert "masks" not in raw and raw[tvd.MASKS].shape[-2:] == (28, 28)  # no image-sized canvas per detection
    with torch.inference_mode():
        (reference,) = reference_net([torch.from_numpy(image).permute(2, 0, 1).float() / 255])
    boxes = reference["boxes"].numpy() / [160, 120, 160, 120]
    assert len(labels) >= 10
    for label in labels:
        corners = np.array([label.box.x, label.box.y, label.box.x + label.box.w, label.box.y + label.box.h])
        match = int(np.abs(boxes - corners).sum(axis=1).argmin())
        x, y, w, h = label.box.to_pixels(160, 120)
        expected = reference["masks"][match, 0].numpy()[y : y + h, x : x + w] > tvd.MASK_THRESHOLD
        assert label.mask.array.shape == expected.shape
        assert (label.mask.array != expected).sum() <= max(1, expected.size // 100)
