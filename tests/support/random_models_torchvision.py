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


def save(kind: Kind, directory: Path, size: Size = "tiny", *, seed: int = 0) -> tuple[str, Path]:
    """Save a random ``kind`` model of ``size`` under ``directory``; returns the catalogue name it stands in for
    and the weights file."""
    import torch

    torch.manual_seed(seed)
    name = MODELS[kind][size]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-random.pth"
    torch.save(_network(kind, name).state_dict(), path)  # type: ignore[attr-defined]
    return name, path
