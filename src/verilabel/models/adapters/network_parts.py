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


def vectorised_ssd_detections(net: Any) -> None:
    """Replace SSD's ``postprocess_detections`` (a Python loop over its 90 classes for each image: 70 ms of a
    16-image batch, a third of SSDlite's time once ONNX Runtime runs its network) with the same computation in
    a few batched operations per image: per class the ``topk_candidates`` best scores above ``score_thresh``,
    then batched NMS and the ``detections_per_img`` best. The detections are the same (the order among exactly
    equal scores aside)."""
    import types

    net.postprocess_detections = types.MethodType(_ssd_detections, net)


def _ssd_detections(
    self: Any, head_outputs: dict[str, torch.Tensor], image_anchors: list[torch.Tensor], image_shapes: list[Any]
) -> list[dict[str, torch.Tensor]]:
    from torchvision.ops import boxes as box_ops

    scores_all = torch.nn.functional.softmax(head_outputs["cls_logits"], dim=-1)
    detections = []
    for regression, scores, anchors, shape in zip(
        head_outputs["bbox_regression"], scores_all, image_anchors, image_shapes, strict=True
    ):
        boxes = box_ops.clip_boxes_to_image(self.box_coder.decode_single(regression, anchors), shape)
        foreground = scores[:, 1:]  # class 0 is the background
        anchor, label = torch.nonzero(foreground > self.score_thresh, as_tuple=True)
        score = foreground[anchor, label]
        # group by class, best first within each, and keep each class's first topk_candidates
        by_score = torch.argsort(score, descending=True, stable=True)
        order = by_score[torch.argsort(label[by_score], stable=True)]
        grouped = label[order]
        counts = torch.bincount(grouped, minlength=foreground.shape[1])
        rank = torch.arange(len(order), device=order.device) - (torch.cumsum(counts, 0) - counts)[grouped]
        order = order[rank < self.topk_candidates]
        boxes, score, label = boxes[anchor[order]], score[order], label[order] + 1
        keep = box_ops.batched_nms(boxes, score, label, self.nms_thresh)[: self.detections_per_img]
        detections.append({"boxes": boxes[keep], "scores": score[keep], "labels": label[keep]})
    return detections
