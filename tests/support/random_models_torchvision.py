"""torchvision models with random weights, saved as state-dict files (offline): pass the file as ``--weights``.

- ``tiny``: the smallest architecture of each kind in the catalogue, for tests (ResNet-18, DeepLabV3
  MobileNetV3, SSDlite; Mask R-CNN has no smaller sibling).
- ``full``: the architectures benchmarks should time (ResNet-50, DeepLabV3 ResNet-50, Faster R-CNN R50-FPN,
  Mask R-CNN R50-FPN).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Size = Literal["tiny", "full"]
Kind = Literal["classification", "semantic", "detection", "instance"]

# kind -> size -> catalogue entry
MODELS: dict[str, dict[str, str]] = {
    "classification": {"tiny": "resnet18-imagenet", "full": "resnet50-imagenet"},
    "semantic": {"tiny": "deeplabv3-mobilenet-v3-voc", "full": "deeplabv3-resnet50-voc"},
    "detection": {"tiny": "ssdlite320-mobilenet-v3-coco", "full": "faster-rcnn-resnet50-fpn-coco"},
    "instance": {"tiny": "mask-rcnn-resnet50-fpn-coco", "full": "mask-rcnn-resnet50-fpn-coco"},
}


def _network(kind: Kind, name: str) -> object:
    from verilabel.models import registry

    entry = registry.resolve(name).entry
    assert entry is not None
    arch = entry.options["arch"]
    if kind == "classification":
        from verilabel.models.adapters.torchvision_classification import build_network

        return build_network(arch)
    if kind == "semantic":
        from verilabel.models.adapters.torchvision_semantic import build_network as build_semantic

        return build_semantic(arch, aux_loss=True)  # like the released checkpoints
    from verilabel.models.adapters.torchvision_detection import build_network as build_detector

    return build_detector(arch)


def save(
    kind: Kind, directory: Path, size: Size = "tiny", *, seed: int = 0, calibrated: bool = False
) -> tuple[str, Path]:
    """Save a random ``kind`` model of ``size`` under ``directory``; returns the catalogue name it stands in for
    and the weights file. ``calibrated``: batch-norm statistics from noise images (see ``calibrate``)."""
    import torch

    torch.manual_seed(seed)
    name = MODELS[kind][size]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-random{'-calibrated' if calibrated else ''}.pth"
    net = _network(kind, name)
    if calibrated:
        calibrate(kind, net)
    torch.save(net.state_dict(), path)  # type: ignore[attr-defined]
    return name, path


def calibrate(kind: Kind, net: object) -> None:
    """Batch-norm statistics from a few noise images instead of the fresh ones (mean 0, variance 1), which leave
    every anchor and pixel with alike features: scores would tie and tests could not tell right from wrong.
    Detectors run their backbone (and SSD its head) in training mode, without targets."""
    import torch

    modules = list(net.modules())  # type: ignore[attr-defined]
    for module in modules:
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batch
    size = {"classification": 224, "semantic": 256, "detection": 320, "instance": 320}[kind]
    images = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    images = (images - 0.45) / 0.25
    net.train()  # type: ignore[attr-defined]
    with torch.no_grad():
        if kind in ("classification", "semantic"):
            net(images)  # type: ignore[operator]
        else:
            features = net.backbone(images)  # type: ignore[attr-defined]
            head = getattr(net, "head", None)
            if head is not None:
                head(list(features.values()))
    net.eval()  # type: ignore[attr-defined]
