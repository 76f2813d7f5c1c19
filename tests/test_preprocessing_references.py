"""Each adapter's model input on a large photo against its reference library's own preprocessing (torchvision's
weight presets, transformers' processors): shrinking a 4000 x 3000 photo must antialias as they do, or fine detail
aliases into a different image than the model was trained on."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from tests.support.random_models_hf import natural_image  # noqa: E402
from verilabel.models import registry  # noqa: E402
from verilabel.models.preprocess import RGB_MEAN_IMAGENET, RGB_STD_IMAGENET, to_batch  # noqa: E402

pytestmark = pytest.mark.torch

PHOTO = natural_image(3000, 4000)  # smooth colour, a flat block and a band of fine stripes
TOLERANCE = 0.01  # mean absolute difference in normalised units; a plain bilinear resize is at 0.25-0.3


def normalised(prepared) -> torch.Tensor:
    return to_batch([prepared], "cpu", mean=RGB_MEAN_IMAGENET, std=RGB_STD_IMAGENET)[0]


def entry(name: str):
    found = registry.resolve(name).entry
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("name", "weights"),
    [
        ("resnet50-imagenet", torchvision.models.ResNet50_Weights.IMAGENET1K_V2),
        ("resnet18-imagenet", torchvision.models.ResNet18_Weights.IMAGENET1K_V1),
    ],
)
def test_classifier_input_matches_torchvisions_preset(name, weights):
    from verilabel.models.adapters.torchvision_classification import RESIZE, ImageNetClassifier

    model = entry(name)
    resize = int(model.options.get("resize", RESIZE))
    classifier = ImageNetClassifier(model, None, torch.device("cpu"), resize=resize)
    reference = weights.transforms()(torch.from_numpy(PHOTO).permute(2, 0, 1))
    ours = normalised(classifier.prepare(PHOTO))
    assert ours.shape == reference.shape
    assert (ours - reference).abs().mean() < TOLERANCE


def test_semantic_segmenter_input_matches_torchvisions_preset():
    from verilabel.models.adapters.torchvision_semantic import TorchvisionSemantic

    segmenter = TorchvisionSemantic(entry("deeplabv3-resnet50-voc"), None, torch.device("cpu"))
    weights = torchvision.models.segmentation.DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1
    reference = weights.transforms()(torch.from_numpy(PHOTO).permute(2, 0, 1))
    ours = normalised(segmenter.prepare(PHOTO))
    assert ours.shape == reference.shape
    assert (ours - reference).abs().mean() < TOLERANCE


@pytest.mark.parametrize(
    ("name", "processor"), [("sam-vit-base", "SamImageProcessor"), ("sam2.1-hiera-small", "Sam2ImageProcessor")]
)
def test_sam_input_matches_transformers_processor(name, processor):
    transformers = pytest.importorskip("transformers")
    from verilabel.models.adapters.hf_sam import SamSegmenter

    model = entry(name)
    model_type = "sam2" if model.family.startswith("sam2") else "sam"
    sam = SamSegmenter(model, None, torch.device("cpu"), model_type=model_type, input_size=1024, multimask=False)
    reference = getattr(transformers, processor)()(images=PHOTO, return_tensors="pt")["pixel_values"][0]
    prepared = sam.prepare(PHOTO)
    ours = normalised(prepared.pixels)[:, : prepared.height, : prepared.width]
    assert (ours - reference[:, : prepared.height, : prepared.width]).abs().mean() < TOLERANCE
