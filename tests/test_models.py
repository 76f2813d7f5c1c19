"""Model interface, registry, output checks, and the offline packaged models on real images."""

from pathlib import Path

import numpy as np
import pytest

from verilabel import Box, Classification, Detection, ImageItem, Mask, ModelSpec, PredictContext
from verilabel.errors import ConfigError, ModelLoadError, ModelOutputError
from verilabel.models import registry
from verilabel.models.checks import check_predictions
from verilabel.models.interface import LoadRequest, SplitPredict

SPEC = ModelSpec("m", ("detection", "segmentation", "classification"), zero_shot=False, vocabulary=("cat", "dog"))


def item(width: int = 100, height: int = 50) -> ImageItem:
    return ImageItem(1, "x.png", np.zeros((height, width, 3), np.uint8))


def ctx(task: str = "detection", classes=("cat",)) -> PredictContext:
    return PredictContext(task, tuple(classes), 0.1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("outputs", "task", "message"),
    [
        ([], "detection", "1 images in, 0 results out"),
        ("nope", "detection", "1 images in, str out"),
        ([Detection("cat", Box(0, 0, 1, 1), 0.5)], "detection", "expected a list of labels"),
        ([[Classification("cat", 0.5), Classification("dog", 0.5)]], "classification", "at most one Classification"),
        ([[Classification("cat", 0.5)]], "detection", "returns Detection labels"),
        ([[Detection("bird", Box(0, 0, 1, 1), 0.5)]], "detection", "class 'bird' is neither"),
        ([[Detection("cat", Box(0, 0, 1, 1), None)]], "detection", "has no confidence"),
        ([[Detection("cat", Box(0, 0, 1, 1), 0.5)]], "segmentation", "needs a mask or polygon"),
        (
            [[Detection("cat", Box(0, 0, 0.5, 0.5), 0.5, mask=Mask(array=np.ones((50, 100), bool)))]],
            "segmentation",
            "mask of 'cat' is 100x50 px, but its box covers 50x25 px",
        ),
    ],
)
def test_output_checks_raise_one_precise_error(outputs, task, message):
    with pytest.raises(ModelOutputError, match="model 'm'") as info:
        check_predictions(SPEC, ctx(task), [item()], outputs)
    assert message in str(info.value)


def test_valid_outputs_pass_including_unrequested_vocabulary_classes():
    outputs = [[Detection("dog", Box(0, 0, 0.5, 0.5), 0.5, mask=Mask(array=np.ones((25, 50), bool)))]]
    assert check_predictions(SPEC, ctx("segmentation"), [item()], outputs) is outputs


def test_python_factories_resolve_with_their_spec():
    ref = registry.resolve("python:tests.support.blob_model:zero_shot")
    assert ref.zero_shot and ref.tasks == ("classification", "detection")
    model = registry.load(ref, LoadRequest())
    assert model.spec.name == "blobs-zero-shot"
    with pytest.raises(ConfigError, match=r"not `package.module:function`"):
        registry.resolve("python:nocolon")


def test_a_factory_returning_a_non_model_is_refused():
    ref = registry.ModelRef("x", ("detection",), False, ("a",), 0.5, "builtins:repr")
    with pytest.raises(ModelLoadError, match=r"lacks `spec`"):
        registry.load(ref, LoadRequest())


def test_plugins_register_catalogue_entries(monkeypatch):
    from dataclasses import replace
    from importlib import metadata

    from verilabel.models.catalogue import builtin_catalogue

    plugin = replace(builtin_catalogue()[0], name="plugin-face")

    class FakeEntryPoint:
        name = "plugin-face"

        def load(self):
            return plugin

    monkeypatch.setattr(
        registry, "entry_points", lambda group: [FakeEntryPoint()] if group == "verilabel.models" else []
    )
    assert registry.resolve("plugin-face").entry is plugin
    assert metadata  # the real entry_points function is what registry uses otherwise


def test_missing_dependency_names_the_extra(monkeypatch):
    entry = registry.resolve("mediapipe-face").entry
    assert entry is not None
    fake = entry.__class__(**{**entry.__dict__, "requires": ("not_a_real_module_xyz",)})
    with pytest.raises(ModelLoadError, match=r"pip install 'verilabel\[offline\]'"):
        registry.load(
            registry.ModelRef(fake.name, fake.tasks, False, fake.vocabulary, 0.5, fake.loader, fake), LoadRequest()
        )
    assert not registry.is_available(fake)


# --- offline packaged models on scikit-image's sample photos --------------------------------------------------


def photo(name: str) -> ImageItem:
    from skimage import data

    array = getattr(data, name)()
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return ImageItem(1, name, np.ascontiguousarray(array))


def run_model(name: str, images: list[ImageItem], **context: object):
    ref = registry.resolve(name)
    model = registry.load(ref, LoadRequest())
    task = context.pop("task", ref.tasks[0])
    prediction_context = PredictContext(
        task,
        tuple(context.pop("classes", ref.vocabulary)),  # type: ignore[arg-type]
        ref.default_confidence,
    )
    return check_predictions(model.spec, prediction_context, images, model.predict(images, prediction_context))


@pytest.mark.slow
def test_mediapipe_finds_the_astronauts_face_with_keypoints():
    (faces,), (none,) = (
        run_model("mediapipe-face", [photo("astronaut")]),
        run_model("mediapipe-face", [photo("coffee")]),
    )
    (face,) = faces
    assert face.label == "face" and face.confidence > 0.8
    assert 0.3 < face.box.x < 0.4 and 0.1 < face.box.y < 0.2 and 0.15 < face.box.w < 0.25
    assert face.keypoints is not None and face.keypoints.names[0] == "right_eye"
    assert none == []


@pytest.mark.slow
def test_rapidocr_reads_the_text_of_a_page():
    (labels,) = run_model("rapidocr-text", [photo("page")])
    texts = " ".join(label.attributes["text"] for label in labels)
    assert "segmentation" in texts.lower()
    assert all(label.polygon is not None and label.confidence > 0.5 for label in labels)


@pytest.mark.slow
def test_efficientnet_classifies_the_cat_and_honours_class_subsets():
    (labels,) = run_model("efficientnet-lite0-imagenet", [photo("chelsea")])
    (top,) = labels
    assert top.label in {"tabby", "tiger cat", "Egyptian cat"} and len(top.attributes["scores"]) == 5
    (subset,) = run_model("efficientnet-lite0-imagenet", [photo("chelsea")], classes=("espresso", "tabby"))
    assert subset[0].label == "tabby"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["opencv-haar-face", "opencv-hog-person"])
def test_opencv_classics_find_the_astronaut_and_survive_tiny_images(name):
    tiny = ImageItem(2, "tiny", np.zeros((15, 10, 3), np.uint8))
    found, nothing = run_model(name, [photo("astronaut"), tiny])
    assert found and nothing == []
    assert all(0.5 <= label.confidence <= 1 for label in found)


def test_decode_guards_against_decompression_bombs(tmp_path: Path):
    from PIL import Image

    from verilabel.datasets.images import decode
    from verilabel.errors import SampleError

    Image.new("1", (14_000, 13_000)).save(tmp_path / "bomb.png")  # 182 Mpx, a few KB on disk
    with pytest.raises(SampleError, match="decompression"):
        decode(tmp_path / "bomb.png")


def test_decode_uses_jpeg_draft_mode_but_keeps_orientation(tmp_path: Path):
    from PIL import Image

    from verilabel.datasets.images import decode

    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (1600, 800), "red").save(tmp_path / "big.jpg", exif=exif)
    full, draft = decode(tmp_path / "big.jpg"), decode(tmp_path / "big.jpg", draft_size=200)
    assert full.shape == (1600, 800, 3)
    assert draft.shape[0] / draft.shape[1] == 2 and 200 <= draft.shape[1] < 800


def test_decode_gives_rgb_for_every_mode_and_the_pixels_as_stored(tmp_path: Path):
    from PIL import Image

    from verilabel.datasets.images import decode

    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert np.array_equal(decode(tmp_path / "rgb.png"), rgb)
    for mode in ("L", "RGBA", "P", "I;16", "CMYK"):
        image = Image.fromarray(rgb).convert(mode)
        image.save(tmp_path / f"{mode[0]}.tiff")
        decoded = decode(tmp_path / f"{mode[0]}.tiff")
        assert decoded.dtype == np.uint8 and decoded.shape == (30, 40, 3), mode
        assert np.array_equal(decoded, np.asarray(image.convert("RGB"))), mode


class _Sizes(SplitPredict):
    """infer records what it was given; to_labels turns it into one classification per image."""

    def infer(self, images, context):
        return [np.asarray(p).shape for p in self.prepared(images)]

    def to_labels(self, raw, images, context):
        return [[Classification(f"{shape[1]}x{shape[0]}", 1.0)] for shape in raw]


class _HalvingSizes(_Sizes):
    def prepare(self, image):
        return image[::2, ::2]


def test_split_predict_prepares_what_the_engine_did_not_and_is_infer_then_to_labels():
    array = np.zeros((8, 6, 3), np.uint8)
    fresh, engine_prepared = ImageItem(1, "a", array), ImageItem(2, "b", array, prepared=np.zeros((1, 1, 3)))
    context = PredictContext("classification", ("any",), 0.0)
    assert [[c.label for c in labels] for labels in _HalvingSizes().predict([fresh, engine_prepared], context)] == [
        ["3x4"],
        ["1x1"],
    ]
    # No prepare: the engine finds none to run in its decode pool, and the arrays go to infer as they are.
    assert getattr(_Sizes(), "prepare", None) is None
    assert [labels[0].label for labels in _Sizes().predict([fresh], context)] == ["6x8"]
