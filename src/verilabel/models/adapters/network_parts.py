"""The parts of networks that ``verilabel.models.runtimes`` exports (torchvision's, ultralytics'), and their
stand-ins once ONNX Runtime runs them. Each part maps one batch tensor to a tuple of tensors; the stand-ins sit
in the network's own slots (``backbone``, ``head``), so that torchvision's transform, anchors and
post-processing run unchanged."""

from __future__ import annotations

from typing import Any

import torch

from verilabel.models.runtimes import Core


class ClassLogits(torch.nn.Module):
    """A semantic segmenter (DeepLabV3, FCN) from the batch to its class logits alone (torchvision's answer is
    a dict)."""

    def __init__(self, net: Any) -> None:
        super().__init__()
        self.net = net

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.net(batch)["out"]  # type: ignore[no-any-return]


class BackboneAndHead(torch.nn.Module):
    """SSD's backbone and head, from the normalised batch to class logits and box regressions."""

    def __init__(self, backbone: Any, head: Any) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(list(self.backbone(batch).values()))
        return out["cls_logits"], out["bbox_regression"]


class OnnxBackboneAndHead(torch.nn.Module):
    """In SSD's ``backbone`` slot: runs backbone and head at once, keeps the head's outputs for ``StashedHead``
    and hands SSD empty feature maps of the right sizes for its anchor generator."""

    def __init__(self, core: Core, grids: list[tuple[int, int]]) -> None:
        super().__init__()
        self.core, self.grids = core, grids
        self.outputs: dict[str, torch.Tensor] | None = None

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        logits, regression = self.core(batch)
        self.outputs = {"cls_logits": logits, "bbox_regression": regression}
        return {str(i): batch.new_empty((batch.shape[0], 0, h, w)) for i, (h, w) in enumerate(self.grids)}


class StashedHead(torch.nn.Module):
    """In SSD's ``head`` slot: the outputs the ONNX session computed along with the backbone."""

    def __init__(self, features: OnnxBackboneAndHead) -> None:
        super().__init__()
        self._features = [features]  # a list: not registered as a submodule (it is already the backbone)

    def forward(self, feature_maps: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        features = self._features[0]
        outputs, features.outputs = features.outputs, None
        if outputs is None:
            raise RuntimeError("StashedHead ran without its backbone")
        return outputs


class Features(torch.nn.Module):
    """An R-CNN backbone (ResNet and FPN) from the padded batch to its feature maps, in order."""

    def __init__(self, backbone: Any) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.backbone(batch).values())


class OnnxFeatures(torch.nn.Module):
    """In an R-CNN's ``backbone`` slot: the feature maps from the ONNX session, named as torchvision names them."""

    def __init__(self, core: Core, names: list[str], out_channels: int) -> None:
        super().__init__()
        self.core, self.names, self.out_channels = core, names, out_channels

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.core(batch), strict=True))


class YoloPredictions(torch.nn.Module):
    """An ultralytics YOLO from the letterboxed batch to its decoded predictions, and its mask prototypes for a
    segmenter (the raw per-level maps it also returns are left out)."""

    def __init__(self, net: Any) -> None:
        super().__init__()
        self.net = net

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(batch)
        first = out[0] if isinstance(out, tuple | list) else out
        if isinstance(first, tuple | list):  # segmenters: ((predictions, protos), raw head outputs)
            return first[0], first[1]
        return (first,)
