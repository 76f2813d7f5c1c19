"""The OpenCLIP zero-shot classifier through the real loading path, on tiny random-weight models saved in the
layout of OpenCLIP's hub repositories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from tests.support import random_models_hf  # noqa: E402
from tests.support.random_models_hf import natural_image  # noqa: E402
from verilabel import ImageItem, PredictContext  # noqa: E402
from verilabel.errors import ModelLoadError  # noqa: E402
from verilabel.labels import Classification  # noqa: E402
from verilabel.models import registry  # noqa: E402
from verilabel.models.adapters import hf_clip, hf_common  # noqa: E402
from verilabel.models.adapters.open_clip import image_config  # noqa: E402
from verilabel.models.checks import check_predictions  # noqa: E402
from verilabel.models.interface import LoadRequest  # noqa: E402
from verilabel.models.preprocess import to_batch  # noqa: E402

pytestmark = pytest.mark.torch

NAME = "openclip-vit-b-32-laion2b"
CLASSES = ("cat", "dog", "hot dog", "car", "person", "traffic_light")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_models_hf.save_open_clip(tmp_path_factory.mktemp("open-clip") / "tiny")


def items(*shapes: tuple[int, int]) -> list[ImageItem]:
    return [ImageItem(i, f"img{i}.jpg", natural_image(h, w, seed=i)) for i, (h, w) in enumerate(shapes)]


def load(weights: Path, classes: tuple[str, ...] = CLASSES, **options: Any) -> Any:
    request = LoadRequest(weights=str(weights), device="cpu", classes=classes, options=options)
    return registry.load(registry.resolve(NAME), request)


def normalised(prepared: list[np.ndarray]) -> Any:
    return to_batch(prepared, torch.device("cpu"), mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD)


def reference(weights: Path, prompts: list[str], pixels: Any) -> Any:
    """Logits computed with OpenCLIP alone: normalised features, times the learnt scale (plus any bias)."""
    net = open_clip.create_model_from_pretrained(f"local-dir:{weights}", return_transform=False).eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{weights}")
    with torch.inference_mode():
        images = torch.nn.functional.normalize(net.encode_image(pixels), dim=-1)
        texts = torch.nn.functional.normalize(net.encode_text(tokenizer(prompts)), dim=-1)
        bias = net.logit_bias if getattr(net, "logit_bias", None) is not None else 0.0
        return images @ texts.T * net.logit_scale.exp() + bias


def test_classifies_through_the_registry(weights):
    model = load(weights)
    assert model.spec.zero_shot and model.spec.input_size == 32
    images = items((48, 80), (120, 60))
    for image in images:
        image.prepared = model.prepare(image.array)
        assert image.prepared.shape == (32, 32, 3) and image.prepared.dtype == np.uint8
    context = PredictContext("classification", CLASSES, 0.0)
    results = check_predictions(model.spec, context, images, model.predict(images, context))
    for (label,) in results:
        assert isinstance(label, Classification)
        assert len(label.attributes["scores"]) == 5 and label.attributes["scores"][0] == [
            label.label,
            round(label.confidence, 4),
        ]
    narrow = model.predict(images, PredictContext("classification", ("car", "person"), 0.0))
    assert {label.label for (label,) in narrow} <= {"car", "person"}
    assert model.predict(images, PredictContext("classification", CLASSES, 0.99)) == [[], []]  # softmax of 6


def test_logits_match_open_clip(weights):
    model = load(weights, templates=["a photo of a {}."])
    prepared = [model.prepare(i.array) for i in items((48, 80), (64, 64))]
    pixels = to_batch(
        prepared, torch.device("cpu"), mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD
    )
    expected = reference(weights, ["a photo of a cat.", "a photo of a traffic light."], pixels)
    assert torch.allclose(model.forward(prepared, ("cat", "traffic_light")), expected, atol=1e-4)


def test_prompt_templates_are_averaged(weights):
    """The default CLIP templates: one embedding per class, the mean of its normalised prompt embeddings."""
    model = load(weights)
    prepared = [model.prepare(i.array) for i in items((48, 80))]
    pixels = to_batch(
        prepared, torch.device("cpu"), mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD
    )
    net = open_clip.create_model_from_pretrained(f"local-dir:{weights}", return_transform=False).eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{weights}")
    with torch.inference_mode():
        image = torch.nn.functional.normalize(net.encode_image(pixels), dim=-1)
        rows = []
        for name in ("cat", "dog"):
            prompts = [t.format(name) for t in hf_clip.CLIP_TEMPLATES]
            per_prompt = torch.nn.functional.normalize(net.encode_text(tokenizer(prompts)), dim=-1)
            rows.append(torch.nn.functional.normalize(per_prompt.mean(0), dim=0))
        expected = image @ torch.stack(rows).T * net.logit_scale.exp()
    assert torch.allclose(model.forward(prepared, ("cat", "dog")), expected, atol=1e-4)


def test_a_model_with_a_logit_bias_scores_with_sigmoids(tmp_path):
    weights = random_models_hf.save_open_clip(tmp_path / "siglip", logit_bias=-2.0)
    model = load(weights)
    images = items((48, 80), (64, 64))
    prepared = [model.prepare(i.array) for i in images]
    pixels = to_batch(
        prepared, torch.device("cpu"), mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD
    )
    expected = reference(weights, ["a photo of a cat.", "a photo of a dog."], pixels)  # the one SigLIP template
    assert torch.allclose(model.forward(prepared, ("cat", "dog")), expected, atol=1e-4)
    results = model.predict(images, PredictContext("classification", ("cat", "dog"), 0.0))
    for (label,), row in zip(results, expected.sigmoid(), strict=True):
        assert label.confidence == pytest.approx(float(row.max()), abs=1e-4)


@pytest.mark.parametrize(
    ("mode", "height", "width"),
    [
        ("shortest", 480, 640),
        ("shortest", 500, 375),
        ("squash", 480, 640),
        ("longest", 300, 640),
        ("longest", 640, 500),
    ],
)
def test_preprocessing_follows_the_model_config(mode, height, width):
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    config = {"size": 224, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "resize_mode": mode, "fill_color": 128}
    transform = image_transform_v2(PreprocessCfg(**config), is_train=False)
    image = natural_image(height, width)
    settings = image_config(config)
    prepared = hf_common.prepare_image(image, settings)
    assert prepared.shape == (224, 224, 3) and prepared.dtype == np.uint8
    mine = to_batch([prepared], torch.device("cpu"), mean=settings.mean, std=settings.std)[0]
    theirs = transform(Image.fromarray(image))
    assert (mine - theirs).abs().mean() < 0.03
    if mode == "longest" and height < width:  # letterboxed: grey bands above and below
        assert (prepared[:10] == 128).all() and (prepared[-10:] == 128).all()


def test_missing_weights_fail_fast_naming_the_repository(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelLoadError) as info:
        registry.load(registry.resolve(NAME), LoadRequest(device="cpu"))
    message = str(info.value)
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in message and "--weights" in message
    with pytest.raises(ModelLoadError, match="not found"):
        load(tmp_path / "nowhere")


def test_a_directory_without_an_open_clip_config_is_refused(tmp_path):
    random_models_hf.save_clip(tmp_path / "transformers-format")
    with pytest.raises(ModelLoadError, match=r"open_clip_config\.json"):
        load(tmp_path / "transformers-format")


def test_prepared_items_are_used_as_given(weights):
    model = load(weights)
    image = ImageItem(0, "x", natural_image(40, 40))
    image.prepared = np.zeros((32, 32, 3), np.uint8)
    (from_prepared,) = model.predict([image], PredictContext("classification", ("cat", "dog"), 0.0))
    image.prepared = None
    (from_array,) = model.predict([image], PredictContext("classification", ("cat", "dog"), 0.0))
    assert from_prepared[0].attributes != from_array[0].attributes
