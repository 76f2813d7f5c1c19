"""Box coordinates under half-precision autocast (what a CUDA forward runs in): backbones in bf16, box heads and
what decodes their outputs in fp32. bf16 keeps 8 significant bits: 637.3 px comes out as 636 (steps of 4 px from
512 to 1024), 25 px on a 4000 px photo once scaled back. CPU autocast exercises the same path without a GPU."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


from tests.support.random_models_hf import natural_image  # noqa: E402
from verilabel import ImageItem, PredictContext  # noqa: E402
from verilabel.models import registry, torch_support  # noqa: E402
from verilabel.models.interface import LoadRequest  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture
def autocast_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch_support, "AUTOCAST_DEVICE_TYPES", ("cuda", "cpu"))


class TinyDetector(torch.nn.Module):
    """A backbone, and a head that turns its features into box corners of a 640 px image."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = torch.nn.Linear(16, 16)
        self.head = torch.nn.Linear(16, 4)
        with torch.no_grad():
            self.head.weight.mul_(0.01)
            self.head.bias.copy_(torch.tensor([101.3, 250.7, 601.9, 637.3]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def test_box_heads_in_full_precision_keep_coordinates_within_half_a_pixel(autocast_on_cpu):
    inputs = torch.randn(64, 16)
    reference = TinyDetector()(inputs)  # fp32 throughout
    plain, kept = TinyDetector(), TinyDetector()
    torch_support.full_precision(kept.head)
    with torch_support.inference("cpu"):
        rounded, exact = plain(inputs), kept(inputs)
        assert plain.backbone(inputs).dtype == torch.bfloat16  # the backbone did run in half precision
    assert (rounded.float() - reference).abs().max() >= 1.0  # what bf16 does to a box head's coordinates
    assert exact.dtype == torch.float32 and (exact - reference).abs().max() < 0.5


def run_recording(model, net, modules: list[str], context) -> dict[str, set]:
    """Predict on a 640x480 photo under autocast, noting the dtypes each named module of ``net`` returned."""
    seen: dict[str, set] = {name: set() for name in modules}

    def tensors(value):
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from tensors(item)
        elif isinstance(value, tuple | list):
            for item in value:
                yield from tensors(item)

    def note(name):
        def hook(module, args, output):
            seen[name] |= {t.dtype for t in tensors(output) if t.is_floating_point()}

        return hook

    named = dict(net.named_modules())
    handles = [named[name].register_forward_hook(note(name)) for name in modules]
    try:
        model.predict([ImageItem(0, "a.jpg", natural_image(480, 640))], context)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def load(name, weights, **request):
    return registry.load(
        # torch's autocast is under test: the network stays on torch (not ONNX Runtime)
        registry.resolve(name, str(weights)),
        LoadRequest(weights=str(weights), device="cpu", runtime="torch", **request),
    )


def test_yolo_boxes_match_its_head_run_in_fp32_on_the_same_features(autocast_on_cpu, tmp_path, monkeypatch):
    pytest.importorskip("ultralytics")
    from tests.support.random_models_ultralytics import save_yolo

    model = load("yolo11n-coco", save_yolo(tmp_path, "detect", "tiny"), options={"imgsz": 640})
    head = model._net.model[-1]
    captured: dict[str, object] = {}

    def first(output):  # a head returns its decoded predictions, or them and its raw maps
        return output[0] if isinstance(output, tuple | list) else output

    head.register_forward_pre_hook(lambda module, args: captured.setdefault("features", args[0]))
    head.register_forward_hook(lambda module, args, output: captured.setdefault("predictions", first(output)))
    model.predict([ImageItem(0, "a.jpg", natural_image(480, 640))], PredictContext("detection", ("person",), 0.5))
    features = captured["features"]
    assert features[0].dtype == torch.bfloat16  # type: ignore[index]  # the backbone did run in bf16
    with torch.inference_mode():
        reference = first(head([f.float() for f in features]))  # type: ignore[union-attr]  # fp32, same features
    predictions = captured["predictions"]
    assert predictions.dtype == torch.float32  # type: ignore[union-attr]
    # decoded boxes (centre x, y, width, height) in input pixels, up to 640
    assert (predictions[:, :4] - reference[:, :4]).abs().max() < 0.5  # type: ignore[index]


@pytest.mark.parametrize(
    ("name", "build", "modules", "request_options"),
    [
        ("ssdlite320-mobilenet-v3-coco", "torchvision", ["head"], {"min_confidence": 0.0}),
        ("owlv2-base-patch16-ensemble", "owl", ["box_head"], {"classes": ("cat", "dog")}),
        (
            "grounding-dino-tiny",
            "grounding_dino",
            ["bbox_embed.0", "model.encoder_output_bbox_embed"],
            {"classes": ("cat", "dog")},
        ),
        (
            "omdet-turbo-swin-tiny",
            "omdet",
            ["decoder.encoder_bbox_head", "decoder.decoder_bbox_head.0"],
            {"classes": ("cat", "dog")},
        ),
    ],
)
def test_each_detectors_box_modules_run_in_fp32_under_autocast(
    autocast_on_cpu, tmp_path, name, build, modules, request_options
):
    if build == "torchvision":
        from tests.support.random_models_torchvision import save

        _, weights = save("detection", tmp_path, "tiny")
    else:
        pytest.importorskip("transformers")
        from tests.support import random_models_hf

        saver = getattr(random_models_hf, f"save_{build}")
        weights = saver(tmp_path / build, "owlv2", "tiny") if build == "owl" else saver(tmp_path / build, "tiny")
    model = load(name, weights, **request_options)
    classes = request_options.get("classes") or tuple(model.spec.vocabulary)
    seen = run_recording(model, model._net, modules, PredictContext("detection", classes, 0.0))
    for module in modules:
        assert seen[module] == {torch.float32}, (module, seen[module])


@pytest.mark.slow
def test_mask_rcnn_box_and_mask_heads_run_in_fp32_under_autocast(autocast_on_cpu):
    from verilabel.models.adapters import torchvision_detection as tvd

    torch.manual_seed(5)
    net = tvd.build_network("mask-rcnn", score_thresh=0.0, detections_per_img=5).eval()
    tvd._keep_box_masks(net)
    torch_support.full_precision(*tvd.box_heads(net))  # as load() does
    entry = registry.resolve("mask-rcnn-resnet50-fpn-coco").entry
    model = tvd.TorchvisionDetector(entry, net, torch.device("cpu"), None, 1)
    modules = ["rpn.head", "roi_heads.box_head", "roi_heads.box_predictor", "roi_heads.mask_predictor"]
    seen = run_recording(model, net, modules, PredictContext("segmentation", tuple(model.spec.vocabulary), 0.0))
    for module in modules:
        assert seen[module] == {torch.float32}, (module, seen[module])
