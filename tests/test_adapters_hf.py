"""transformers zero-shot adapters (CLIP, SigLIP, OWL-ViT, OWLv2, Grounding DINO, OmDet-Turbo) through the real
loading path, on tiny random-weight models saved locally; raw outputs forced through the post-processing and
compared with transformers' own post-processing."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.support import random_models_hf  # noqa: E402
from tests.support.overlap import overlapped_matches_predict  # noqa: E402
from tests.support.random_models_hf import natural_image  # noqa: E402
from verilabel import ImageItem, PredictContext  # noqa: E402
from verilabel.errors import ConfigError, ModelLoadError  # noqa: E402
from verilabel.labels import Classification, Detection  # noqa: E402
from verilabel.models import preprocess, registry  # noqa: E402
from verilabel.models.adapters import hf_clip, hf_common, hf_grounding_dino, hf_owl  # noqa: E402
from verilabel.models.checks import check_predictions  # noqa: E402
from verilabel.models.interface import LoadRequest  # noqa: E402
from verilabel.models.preprocess import to_batch  # noqa: E402

pytestmark = pytest.mark.torch

CLASSES = ("cat", "dog", "hot dog", "traffic_light", "car", "person")
OWL = {"owlvit": "owlvit-base-patch32", "owlv2": "owlv2-base-patch16-ensemble"}


def items(*shapes: tuple[int, int]) -> list[ImageItem]:
    return [ImageItem(i, f"img{i}.jpg", natural_image(h, w, seed=i)) for i, (h, w) in enumerate(shapes)]


def load(name: str, weights: Path, classes: tuple[str, ...] = CLASSES, **options: Any) -> Any:
    request = LoadRequest(weights=str(weights), device="cpu", classes=classes, options=options)
    return registry.load(registry.resolve(name), request)


def predict_checked(model: Any, images: list[ImageItem], context: PredictContext) -> list[list[Any]]:
    for image in images:
        image.prepared = model.prepare(image.array)
    return check_predictions(model.spec, context, images, model.predict(images, context))


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny saved models, built on first use."""
    folder = tmp_path_factory.mktemp("hf-weights")
    builders = {
        "clip": random_models_hf.save_clip,
        "siglip": random_models_hf.save_siglip,
        "owlvit": lambda path: random_models_hf.save_owl(path, "owlvit"),
        "owlv2": lambda path: random_models_hf.save_owl(path, "owlv2"),
        "grounding-dino": random_models_hf.save_grounding_dino,
        "mm-grounding-dino": lambda path: random_models_hf.save_grounding_dino(path, mm=True),
        "omdet": random_models_hf.save_omdet,
    }

    class Lazy(dict[str, Path]):
        def __missing__(self, key: str) -> Path:
            self[key] = builders[key](folder / key)
            return self[key]

    return Lazy()


# --- shared preprocessing and prompts -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("height", "width", "shortest", "longest"),
    [
        (480, 640, 224, None),
        (640, 480, 224, None),
        (333, 500, 800, 1333),
        (300, 1200, 800, 1333),
        (224, 300, 224, None),
    ],
)
def test_aspect_size_rounds_like_transformers(height, width, shortest, longest):
    from transformers.image_transforms import get_size_with_aspect_ratio

    assert preprocess.aspect_size(height, width, shortest, longest) == get_size_with_aspect_ratio(
        (height, width), shortest, longest
    )


@pytest.mark.parametrize(
    ("processor", "square"),
    [
        ("CLIPImageProcessor", False),
        ("SiglipImageProcessor", False),
        ("OwlViTImageProcessor", False),
        ("Owlv2ImageProcessor", True),
        ("GroundingDinoImageProcessor", False),
    ],
)
@pytest.mark.parametrize(("height", "width"), [(480, 640), (500, 375), (1200, 1600)])
def test_prepare_matches_the_image_processors(processor, square, height, width):
    """uint8 resize in numpy / OpenCV + normalisation on the device == the processor's pixel values, closely."""
    image_processor = getattr(transformers, processor)()
    config = hf_common.ImageConfig.from_processor(image_processor)
    image = natural_image(height, width)
    prepared = hf_common.prepare_image(hf_owl.pad_bottom_right_square(image) if square else image, config)
    assert prepared.dtype == np.uint8
    mine = to_batch([prepared], torch.device("cpu"), mean=config.mean, std=config.std)
    theirs = image_processor(images=image, return_tensors="pt")["pixel_values"]
    assert mine.shape == theirs.shape
    # a resize without antialiasing is 0.04 to 0.2 off; shrinking fine detail by 1.5x (1600 -> 1066 px),
    # OpenCV's area filter and torch's triangle filter differ by up to 0.055
    assert (mine - theirs).abs().mean() < (0.06 if height > 1000 else 0.03)


def test_prompt_ensembling_averages_normalised_templates_and_caches_classes():
    calls: list[list[str]] = []
    directions = {"cat": [1.0, 0.0], "dog": [0.0, 1.0]}

    def encode(prompts: list[str]) -> Any:
        calls.append(prompts)
        # "big" prompts point along the class direction at 10x the length: normalising first makes them equal
        rows = [directions.get(p.split()[-1], [1.0, 1.0]) if p.startswith("a ") else [3.0, 3.0] for p in prompts]
        return torch.tensor(rows) * torch.tensor([[10.0 if "big" in p else 1.0] for p in prompts])

    texts = hf_common.TextEmbeddings(encode, ("a big {}", "a {}", "other {}"))
    matrix = texts(("cat", "dog"))
    expected_cat = torch.nn.functional.normalize(torch.tensor([2.0 + 0.7071, 0.7071]), dim=0)
    assert torch.allclose(matrix[0], expected_cat, atol=1e-4)
    assert torch.allclose(matrix.norm(dim=1), torch.ones(2))
    assert len(calls) == 1 and len(calls[0]) == 6
    texts(("dog", "cat"))
    assert len(calls) == 1  # both classes cached
    texts(("cat", "bird_house"))
    assert calls[-1] == ["a big bird house", "a bird house", "other bird house"]  # only the new class, underscores read


def test_templates_must_hold_a_placeholder(weights):
    with pytest.raises(ConfigError, match="templates"):
        load("clip-vit-base-patch32", weights["clip"], templates=["a photo"])


# --- CLIP and SigLIP ------------------------------------------------------------------------------------------
def test_clip_classifies_through_the_registry(weights):
    model = load("clip-vit-base-patch32", weights["clip"])
    assert model.spec.zero_shot and model.spec.input_size == 32
    images = items((48, 80), (120, 60), (32, 32))
    context = PredictContext("classification", CLASSES, 0.0)
    results = predict_checked(model, images, context)
    assert images[0].prepared.shape == (32, 32, 3) and images[0].prepared.dtype == np.uint8
    probs = model.forward([i.prepared for i in images], CLASSES).softmax(-1)
    for (label,), row in zip(results, probs, strict=True):
        assert isinstance(label, Classification)
        scores = label.attributes["scores"]
        assert len(scores) == 5 and scores[0][0] == label.label
        assert [s for _, s in scores] == sorted((s for _, s in scores), reverse=True)
        assert label.confidence == pytest.approx(float(row.max()), abs=1e-4)
    assert torch.allclose(probs.sum(-1), torch.ones(3))


def test_clip_logits_match_the_transformers_model(weights):
    model = load("clip-vit-base-patch32", weights["clip"], templates=["a photo of a {}."])
    net = transformers.CLIPModel.from_pretrained(weights["clip"]).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(weights["clip"])
    prepared = [model.prepare(i.array) for i in items((48, 80), (64, 64))]
    classes = ("cat", "traffic_light", "dog")
    pixels = to_batch(prepared, torch.device("cpu"), mean=model._image.mean, std=model._image.std)
    tokens = tokenizer(
        ["a photo of a cat.", "a photo of a traffic light.", "a photo of a dog."], padding=True, return_tensors="pt"
    )
    with torch.inference_mode():
        expected = net(**tokens, pixel_values=pixels).logits_per_image
    assert torch.allclose(model.forward(prepared, classes), expected, atol=1e-4)


def test_clip_embeds_images_with_its_image_tower(weights):
    """``embed`` (the embeddings view): CLIP's own image features, unit length, one row per image."""
    model = load("clip-vit-base-patch32", weights["clip"])
    net = transformers.CLIPModel.from_pretrained(weights["clip"]).eval()
    images = items((48, 80), (64, 64), (90, 40))
    pixels = to_batch(
        [model.prepare(i.array) for i in images], torch.device("cpu"), mean=model._image.mean, std=model._image.std
    )
    with torch.inference_mode():
        features = net.get_image_features(pixel_values=pixels)
        features = getattr(features, "pooler_output", features)
        expected = torch.nn.functional.normalize(features, dim=-1).numpy()
    vectors = model.embed(images)
    assert vectors.shape == (3, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_siglip_scores_each_class_with_its_own_sigmoid(weights):
    model = load("siglip-base-patch16-224", weights["siglip"])
    assert model.spec.input_size == 32
    images = items((48, 80), (64, 64))
    context = PredictContext("classification", ("cat", "dog", "car"), 0.0)
    results = predict_checked(model, images, context)
    net = transformers.SiglipModel.from_pretrained(weights["siglip"]).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(weights["siglip"])
    prepared = [i.prepared for i in images]
    pixels = to_batch(prepared, torch.device("cpu"), mean=(0.5,) * 3, std=(0.5,) * 3)
    prompts = ["a photo of a cat.", "a photo of a dog.", "a photo of a car."]
    tokens = tokenizer(prompts, padding="max_length", max_length=64, return_tensors="pt")
    with torch.inference_mode():
        expected = net(**tokens, pixel_values=pixels).logits_per_image  # cosine * scale + bias
    logits = model.forward(prepared, context.classes)
    assert torch.allclose(logits, expected, atol=1e-4)
    for (label,), row in zip(results, expected.sigmoid(), strict=True):
        assert label.confidence == pytest.approx(float(row.max()), abs=1e-4)
        assert dict(label.attributes["scores"]) == pytest.approx(
            dict(zip(context.classes, row.tolist(), strict=True)), abs=1e-4
        )


class StubEncoder(hf_clip.ScaledCosine):
    """Logits as given: the post-processing alone is under test."""

    def __init__(self, sigmoid: bool) -> None:
        super().__init__(torch.tensor(0.0), torch.tensor(0.0) if sigmoid else None)

    def encode_text(self, prompts: list[str]) -> Any:
        raise AssertionError("no text is encoded")

    def encode_images(self, pixels: Any) -> Any:
        raise AssertionError("no image is encoded")


@pytest.mark.parametrize("sigmoid", [False, True])
def test_classifier_keeps_the_best_class_above_the_floor(sigmoid):
    entry = registry.resolve("clip-vit-base-patch32").entry
    config = hf_common.ImageConfig(mean=(0.5,) * 3, std=(0.5,) * 3, size=(8, 8))
    model = hf_clip.ZeroShotClassifier(entry, StubEncoder(sigmoid), config, "cpu", templates=("{}",), batch_size=2)
    classes = ("a", "b", "c", "d", "e", "f")
    logits = torch.tensor([[0.0, 3.0, 1.0, -1.0, 2.0, 0.5], [0.1, 0.0, 0.0, 0.0, 0.0, 0.0]])
    strong, weak = model.postprocess(logits, [], PredictContext("classification", classes, 0.5))
    (label,) = strong
    assert label.label == "b"
    assert [name for name, _ in label.attributes["scores"]] == ["b", "e", "c", "f", "a"]
    expected = logits.sigmoid() if sigmoid else logits.softmax(-1)
    assert label.confidence == pytest.approx(float(expected[0, 1]), abs=1e-6)
    if sigmoid:  # each class on its own: 0.525 for "a" (the first of the best)
        assert weak[0].label == "a" and weak[0].confidence == pytest.approx(float(torch.tensor(0.1).sigmoid()))
    else:
        assert weak == []  # a flat softmax: at most 0.18
    assert model.predict(items((8, 8)), PredictContext("classification", (), 0.0)) == [[]]


def test_nothing_loads_without_its_weights(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for name, repo in [
        ("clip-vit-base-patch32", "openai/clip-vit-base-patch32"),
        ("owlv2-base-patch16-ensemble", "google/owlv2-base-patch16-ensemble"),
        ("grounding-dino-tiny", "IDEA-Research/grounding-dino-tiny"),
        ("omdet-turbo-swin-tiny", "omlab/omdet-turbo-swin-tiny-hf"),
    ]:
        with pytest.raises(ModelLoadError) as info:
            registry.load(registry.resolve(name), LoadRequest(device="cpu"))
        assert repo in str(info.value) and "--weights" in str(info.value) and "downloads are off" in str(info.value)
    with pytest.raises(ModelLoadError, match="not found"):
        load("clip-vit-base-patch32", tmp_path / "nowhere")


def test_wrong_weights_are_refused(weights, tmp_path):
    with pytest.raises(ModelLoadError, match="not an image-text model"):
        load("clip-vit-base-patch32", weights["omdet"])
    with pytest.raises(ModelLoadError, match="not OWL-ViT or OWLv2"):
        load("owlv2-base-patch16-ensemble", weights["grounding-dino"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="save_pretrained"):
        load("grounding-dino-tiny", tmp_path / "empty")


# --- OWL-ViT and OWLv2 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["owlvit", "owlv2"])
def test_owl_detects_through_the_registry(weights, version):
    model = load(OWL[version], weights[version])
    images = items((48, 80), (100, 40))
    context = PredictContext("detection", ("cat", "dog"), 0.0)
    results = predict_checked(model, images, context)
    assert images[1].prepared.shape == (64, 64, 3)
    labels = [label for result in results for label in result]
    assert labels and all(isinstance(d, Detection) for d in labels)
    assert {d.label for d in labels} <= {"cat", "dog"}


@pytest.mark.parametrize("version", ["owlvit", "owlv2"])
def test_owl_forward_matches_the_transformers_model(weights, version):
    """The image tower and heads run with cached query embeddings give the model's own logits and boxes."""
    model = load(OWL[version], weights[version], templates=["a photo of a {}"])
    auto = transformers.AutoModelForZeroShotObjectDetection.from_pretrained(weights[version]).eval()
    processor = transformers.AutoProcessor.from_pretrained(weights[version])
    prepared = [model.prepare(i.array) for i in items((48, 80))]
    pixels = to_batch(prepared, torch.device("cpu"), mean=model._image.mean, std=model._image.std)
    text = processor(text=[["a photo of a cat", "a photo of a hot dog"]], return_tensors="pt")
    with torch.inference_mode():
        expected = auto(input_ids=text["input_ids"], attention_mask=text["attention_mask"], pixel_values=pixels)
    logits, boxes = model.forward(prepared, ("cat", "hot dog"))
    assert torch.allclose(logits, expected.logits, atol=1e-4)
    assert torch.allclose(boxes, expected.pred_boxes, atol=1e-5)


@pytest.mark.parametrize(("version", "expected"), [("owlv2", (0.2, 0.4, 0.1, 0.2)), ("owlvit", (0.2, 0.2, 0.1, 0.1))])
def test_owl_boxes_map_back_to_the_original_image(weights, version, expected):
    """OWLv2 boxes are relative to the bottom/right-padded square (the longer side), OWL-ViT's to the image."""
    model = load(OWL[version], weights[version], nms_iou=1.0)
    image = ImageItem(0, "wide.jpg", natural_image(50, 100))  # 100 wide, 50 high: OWLv2 pads it to 100 x 100
    logits = torch.full((1, 3, 2), -10.0)
    logits[0, 0, 1] = 2.0
    boxes = torch.tensor([[[0.25, 0.25, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2], [0.9, 0.9, 0.1, 0.1]]])
    (found,) = model.postprocess((logits, boxes), [image], PredictContext("detection", ("cat", "dog"), 0.1))
    (dog,) = found
    assert dog.label == "dog" and dog.confidence == pytest.approx(float(torch.tensor(2.0).sigmoid()))
    assert dog.box.as_tuple() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("version", ["owlvit", "owlv2"])
def test_owl_postprocessing_agrees_with_transformers(weights, version):
    model = load(OWL[version], weights[version], nms_iou=1.0, max_detections=1000)
    processor = transformers.AutoProcessor.from_pretrained(weights[version])
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 16, 3, generator=generator) * 2
    boxes = torch.rand(2, 16, 4, generator=generator) * 0.5 + 0.1
    images = items((50, 100), (90, 60))
    outputs = SimpleNamespace(logits=logits, pred_boxes=boxes)
    sizes = [(i.height, i.width) for i in images]
    theirs = processor.image_processor.post_process_object_detection(outputs, threshold=0.3, target_sizes=sizes)
    mine = model.postprocess((logits, boxes), images, PredictContext("detection", ("a", "b", "c"), 0.3))
    for found, expected, item in zip(mine, theirs, images, strict=True):
        # transformers leaves boxes unclipped, some wholly in OWLv2's padding: verilabel clips and drops those
        size = torch.tensor([item.width, item.height] * 2)
        xyxy = torch.minimum(expected["boxes"].clamp(min=0), size)
        inside = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        order = expected["scores"][inside].argsort(descending=True)
        assert found and len(found) == len(order)
        assert [d.label for d in found] == ["abc"[i] for i in expected["labels"][inside][order].tolist()]
        assert [d.confidence for d in found] == pytest.approx(expected["scores"][inside][order].tolist(), abs=1e-6)
        relative = [(b[0], b[1], b[0] + b[2], b[1] + b[3]) for b in (d.box.as_tuple() for d in found)]
        assert np.allclose(relative, (xyxy[inside][order] / size).numpy(), atol=1e-5)


def test_owl_merges_duplicate_boxes_of_a_class(weights):
    model = load("owlv2-base-patch16-ensemble", weights["owlv2"])
    logits = torch.full((1, 4, 2), -10.0)
    logits[0, 0, 0], logits[0, 1, 0], logits[0, 2, 1] = 3.0, 2.0, 1.0  # two cats on one spot, a dog on it too
    logits[0, 3, 1] = 5.0  # and a box gone NaN (an fp16 overflow, say): dropped
    boxes = torch.tensor([[[0.5, 0.5, 0.4, 0.4], [0.51, 0.5, 0.4, 0.4], [0.5, 0.5, 0.4, 0.4], [float("nan")] * 4]])
    image = ImageItem(0, "x", natural_image(64, 64))
    (found,) = model.postprocess((logits, boxes), [image], PredictContext("detection", ("cat", "dog"), 0.1))
    assert [(d.label, round(d.confidence, 3)) for d in found] == [("cat", 0.953), ("dog", 0.731)]
    unmerged = load("owlv2-base-patch16-ensemble", weights["owlv2"], nms_iou=1.0)
    (found,) = unmerged.postprocess((logits, boxes), [image], PredictContext("detection", ("cat", "dog"), 0.1))
    assert len(found) == 3


# --- Grounding DINO -------------------------------------------------------------------------------------------
def test_grounding_dino_detects_through_the_registry(weights):
    model = load("grounding-dino-tiny", weights["grounding-dino"])
    images = items((48, 80), (120, 60))
    context = PredictContext("detection", ("cat", "hot dog"), 0.0)
    results = predict_checked(model, images, context)
    assert images[0].prepared.shape == (96, 160, 3) and images[1].prepared.shape == (160, 80, 3)  # 96..160 px
    assert all(results) and {d.label for r in results for d in r} <= {"cat", "hot dog"}


def test_grounding_dino_prompt_is_what_the_processor_tokenizes(weights):
    processor = transformers.AutoProcessor.from_pretrained(weights["grounding-dino"])
    classes = ("cat", "Hot Dog", "traffic_light", "st. bernard")
    (prompt,) = hf_grounding_dino.build_prompts(processor.tokenizer, classes, 256)
    text = "cat. hot dog. traffic light. st bernard."
    assert list(prompt.input_ids) == processor(text=text, return_tensors="pt")["input_ids"][0].tolist()
    tokens = processor.tokenizer.convert_ids_to_tokens(list(prompt.input_ids))
    for index, name in enumerate(("cat", "hot dog", "traffic light", "st bernard")):
        words = [t for t, owner in zip(tokens, prompt.token_class, strict=True) if owner == index]
        assert processor.tokenizer.convert_tokens_to_string(words) == name


def test_grounding_dino_splits_prompts_longer_than_the_text_window(weights):
    model = load("grounding-dino-tiny", weights["grounding-dino"])  # a 32-token window
    classes = tuple(f"class{chr(97 + i)}" for i in range(12))
    prompts = model.prompts(classes)
    assert len(prompts) > 1 and all(len(p.input_ids) <= 32 for p in prompts)
    owners = [o for p in prompts for o in dict.fromkeys(p.token_class) if o >= 0]
    assert owners == list(range(12))
    results = predict_checked(model, items((48, 80)), PredictContext("detection", classes, 0.0))
    assert len(results[0]) == 20 * len(prompts)  # every query of every window
    assert model.predict(items((48, 80)), PredictContext("detection", (". ?",), 0.0)) == [[]]  # nothing to read


def test_grounding_dino_maps_tokens_to_the_class_they_spell(weights):
    """A box whose best token is ``dog`` in ``hot dog`` is a hot dog (transformers' text label: 'dog')."""
    model = load("grounding-dino-tiny", weights["grounding-dino"])
    processor = transformers.AutoProcessor.from_pretrained(weights["grounding-dino"])
    classes = ("cat", "hot dog", "traffic light")
    (prompt,) = model.prompts(classes)
    tokens = processor.tokenizer.convert_ids_to_tokens(list(prompt.input_ids))
    dog = max(i for i, owner in enumerate(prompt.token_class) if owner == 1)  # the last token of "hot dog"
    light = max(i for i, owner in enumerate(prompt.token_class) if owner == 2)
    dot = tokens.index(".")
    logits = torch.full((1, 3, 32), -10.0)
    logits[0, 0, dog], logits[0, 1, light], logits[0, 2, dot] = 2.0, 1.0, 4.0  # query 2 only lights a separator
    boxes = torch.tensor([[[0.25, 0.5, 0.1, 0.2], [0.5, 0.5, 1.0, 1.0], [0.5, 0.5, 0.2, 0.2]]])
    image = ImageItem(0, "x", natural_image(50, 100))
    (found,) = model.postprocess([(prompt, logits, boxes)], [image], PredictContext("detection", classes, 0.3))
    hot_dog, traffic_light = found
    assert hot_dog.label == "hot dog" and hot_dog.confidence == pytest.approx(float(torch.tensor(2.0).sigmoid()))
    assert hot_dog.box.as_tuple() == pytest.approx((0.2, 0.4, 0.1, 0.2), abs=1e-6)
    assert traffic_light.label == "traffic light" and traffic_light.box.as_tuple() == pytest.approx((0, 0, 1, 1))
    ids = torch.tensor([prompt.input_ids])
    outputs = SimpleNamespace(logits=logits[:, :2], pred_boxes=boxes[:, :2])
    (theirs,) = processor.post_process_grounded_object_detection(
        outputs, ids, threshold=0.3, text_threshold=0.3, target_sizes=[(50, 100)]
    )
    assert theirs["text_labels"] == ["dog", "light"]  # fragments: why verilabel maps tokens itself
    assert theirs["scores"].tolist() == pytest.approx([hot_dog.confidence, traffic_light.confidence])
    assert theirs["boxes"][0].tolist() == pytest.approx([20.0, 20.0, 30.0, 30.0], abs=1e-4)


@pytest.mark.parametrize("name", ["mm-grounding-dino-tiny", "llmdet-large"])
def test_mm_grounding_dino_and_llmdet_agree_with_transformers_post_processing(weights, name):
    """MM-Grounding-DINO and LLMDet checkpoints are MMGroundingDinoForObjectDetection: the Grounding DINO
    adapter loads and runs them, and reads their outputs as transformers' own post-processing does."""
    model = load(name, weights["mm-grounding-dino"])
    assert type(model._net).__name__ == "MMGroundingDinoForObjectDetection"
    image = items((60, 90))[0]
    classes = ("cat", "dog")
    assert all(predict_checked(model, [image], PredictContext("detection", classes, 0.0)))
    processor = transformers.AutoProcessor.from_pretrained(weights["mm-grounding-dino"])
    inputs = processor(images=image.array, text="cat. dog.", return_tensors="pt")
    (prompt,) = model.prompts(classes)
    assert list(prompt.input_ids) == inputs["input_ids"][0].tolist()
    with torch.no_grad():
        outputs = model._net(**inputs)
    # verilabel scores a box over its class tokens only (see the test above): silence the separators for both
    separators = torch.tensor([owner < 0 for owner in prompt.token_class])
    outputs.logits[..., : len(separators)][..., separators] = -1e4
    (ours,) = model.postprocess(
        [(prompt, outputs.logits, outputs.pred_boxes)], [image], PredictContext("detection", classes, 0.0)
    )
    (theirs,) = processor.post_process_grounded_object_detection(
        outputs, inputs["input_ids"], threshold=0.0, text_threshold=0.0, target_sizes=[(60, 90)]
    )
    assert len(ours) == len(theirs["scores"]) == 20  # every query, no NMS by default
    order = theirs["scores"].argsort(descending=True).tolist()
    assert [d.confidence for d in ours] == pytest.approx([theirs["scores"][i].item() for i in order], abs=1e-5)
    best_token = outputs.logits[0, :, : len(separators)].argmax(-1)  # each query's most probable word
    words = [processor.tokenizer.decode([prompt.input_ids[best_token[i]]]) for i in order]
    assert [d.label for d in ours] == words
    for detection, index in zip(ours, order, strict=True):
        x0, y0, x1, y1 = theirs["boxes"][index].tolist()
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, 90), min(y1, 60)
        assert detection.box.as_tuple() == pytest.approx((x0 / 90, y0 / 60, (x1 - x0) / 90, (y1 - y0) / 60), abs=1e-4)


def test_grounding_dino_pads_a_batch_and_masks_the_padding():
    padded, mask = hf_grounding_dino.pad_batch([np.full((4, 6, 3), 7, np.uint8), np.full((5, 3, 3), 9, np.uint8)])
    assert [p.shape for p in padded] == [(5, 6, 3)] * 2
    assert mask[0].sum() == 24 and mask[0, :4, :6].all() and mask[1].sum() == 15 and mask[1, :5, :3].all()
    assert padded[1][:, 3:].max() == 0 and padded[0][4:].max() == 0


# --- OmDet-Turbo ----------------------------------------------------------------------------------------------
def test_omdet_detects_through_the_registry(weights):
    model = load("omdet-turbo-swin-tiny", weights["omdet"])
    images = items((48, 80), (120, 60))
    context = PredictContext("detection", ("cat", "hot dog", "car"), 0.0)
    results = predict_checked(model, images, context)
    assert images[1].prepared.shape == (64, 64, 3) and model.spec.input_size == 64
    assert all(results) and {d.label for r in results for d in r} <= set(context.classes)


def test_omdet_forward_with_cached_text_matches_the_transformers_model(weights):
    model = load("omdet-turbo-swin-tiny", weights["omdet"])
    auto = transformers.AutoModelForZeroShotObjectDetection.from_pretrained(weights["omdet"]).eval()
    processor = transformers.AutoProcessor.from_pretrained(weights["omdet"])
    images = items((48, 80), (64, 64))
    prepared = [model.prepare(i.array) for i in images]
    classes = ("cat", "hot dog", "traffic light")
    inputs = processor(images=[i.array for i in images], text=[list(classes)] * 2, return_tensors="pt")
    inputs["pixel_values"] = to_batch(prepared, torch.device("cpu"), mean=model._image.mean, std=model._image.std)
    with torch.inference_mode():
        expected = auto(**inputs)
    coords, logits = model.forward(prepared, ("cat", "hot dog", "traffic_light"))
    assert torch.allclose(coords, expected.decoder_coord_logits, atol=1e-4)
    assert torch.allclose(logits, expected.decoder_class_logits, atol=1e-4)


def test_omdet_postprocessing_agrees_with_transformers(weights):
    model = load("omdet-turbo-swin-tiny", weights["omdet"], max_detections=1000)
    processor = transformers.AutoProcessor.from_pretrained(weights["omdet"])
    generator = torch.Generator().manual_seed(1)
    coords = torch.rand(2, 20, 4, generator=generator) * 0.4 + 0.2
    logits = torch.randn(2, 20, 3, generator=generator) * 2
    images = items((50, 100), (90, 60))
    outputs = SimpleNamespace(
        decoder_coord_logits=coords, decoder_class_logits=logits, classes_structure=torch.tensor([3, 3])
    )
    theirs = processor.post_process_grounded_object_detection(
        outputs, threshold=0.4, nms_threshold=0.5, target_sizes=[(i.height, i.width) for i in images]
    )
    mine = model.postprocess((coords, logits), images, PredictContext("detection", ("a", "b", "c"), 0.4))
    for found, expected, item in zip(mine, theirs, images, strict=True):
        assert found
        assert [d.label for d in found] == ["abc"[i] for i in expected["labels"].tolist()]
        assert [d.confidence for d in found] == pytest.approx(expected["scores"].tolist(), abs=1e-6)
        size = torch.tensor([item.width, item.height] * 2)
        relative = [(b[0], b[1], b[0] + b[2], b[1] + b[3]) for b in (d.box.as_tuple() for d in found)]
        assert np.allclose(relative, (expected["boxes"] / size).numpy(), atol=1e-5)


@pytest.mark.parametrize(
    ("name", "key", "task"),
    [
        ("clip-vit-base-patch32", "clip", "classification"),
        ("owlv2-base-patch16-ensemble", "owlv2", "detection"),
        ("grounding-dino-tiny", "grounding-dino", "detection"),
    ],
)
def test_split_predict_runs_overlapped_in_the_pipeline_with_the_same_labels(weights, tmp_path, name, key, task):
    model = load(name, weights[key])
    assert model.asynchronous is False  # on the CPU; True on a CUDA device
    arrays = [item.array for item in items((120, 160), (90, 70), (64, 64))]
    assert overlapped_matches_predict(model, arrays, PredictContext(task, CLASSES, 0.0), tmp_path)
