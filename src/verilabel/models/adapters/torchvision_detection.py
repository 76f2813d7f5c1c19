"""torchvision's COCO detectors and instance segmenters (SSDlite, Faster R-CNN, Mask R-CNN): batched, decoded
and resized ahead of the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from verilabel.labels import Detection, Label, Mask
from verilabel.models.catalogue import CatalogueEntry, vocabulary_file
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext, SplitPredict
from verilabel.models.postprocess import box_detection, paste_mask_crop
from verilabel.models.preprocess import resize, to_tensors
from verilabel.models.runtimes import RuntimeChoice, accelerate
from verilabel.models.torch_support import (
    full_precision,
    inference,
    is_asynchronous,
    load_state_dict,
    load_weights,
    resolve_device,
)

# name -> (builder, input size handed to the model, default batch size)
ARCHITECTURES: dict[str, tuple[str, int | None, int]] = {
    "ssdlite": ("ssdlite320_mobilenet_v3_large", 320, 16),
    "faster-rcnn": ("fasterrcnn_resnet50_fpn", None, 4),
    "faster-rcnn-v2": ("fasterrcnn_resnet50_fpn_v2", None, 4),
    "mask-rcnn": ("maskrcnn_resnet50_fpn", None, 4),
    "mask-rcnn-v2": ("maskrcnn_resnet50_fpn_v2", None, 4),
}
MASK_THRESHOLD = 0.5  # torchvision's masks are per-pixel probabilities
MASKS = "box_masks"  # Mask R-CNN's M x M mask probabilities per box, unpasted (see ``_keep_box_masks``)


class TorchvisionDetector(SplitPredict):
    def __init__(
        self,
        entry: CatalogueEntry,
        net: Any,
        device: Any,
        input_size: int | None,
        batch: int,
        runtime: RuntimeChoice | None = None,
    ) -> None:
        self.spec = entry.spec(batch_size=batch, input_size=input_size)
        self.runtime = runtime or RuntimeChoice("torch")
        self._net = net
        self._device = device
        self.asynchronous = is_asynchronous(device)
        self._input_size = input_size
        self._names = vocabulary_file("coco-91")

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Runs in the decode pool: the resize to the model's input, still uint8 (see ``preprocess``)."""
        if self._input_size:
            return resize(image, self._input_size, self._input_size)
        return image

    def forward(self, images: list[np.ndarray]) -> list[dict[str, Any]]:
        with inference(self._device):
            return self._net(to_tensors(images, self._device))  # type: ignore[no-any-return]

    def infer(self, images: Sequence[ImageItem], context: PredictContext) -> tuple[list[tuple[int, int]], list[Any]]:
        """The model-input sizes and the network's outputs (torchvision's detectors sync inside, in their NMS)."""
        prepared = self.prepared(images)
        return [image.shape[:2] for image in prepared], self.forward(prepared)

    def to_labels(
        self, raw: tuple[list[tuple[int, int]], list[Any]], images: Sequence[ImageItem], context: PredictContext
    ) -> list[list[Label]]:
        sizes, outputs = raw
        wanted = set(context.classes)
        with_masks = context.task == "segmentation"
        results: list[list[Label]] = []
        for item, (height, width), out in zip(images, sizes, outputs, strict=True):
            keep = out["scores"] >= context.min_confidence
            boxes = out["boxes"][keep].float().cpu().numpy()
            scores = out["scores"][keep].float().cpu().numpy()
            classes = out["labels"][keep].cpu().numpy()
            masks = out[MASKS][keep][:, 0].float().cpu().numpy() if with_masks else None
            # mask pixels: the full image's, whose scale to the model's input may differ from 1
            scale = (width / item.full_width, height / item.full_height)
            labels: list[Label] = []
            for i, (xyxy, score, cls) in enumerate(zip(boxes, scores, classes, strict=True)):
                name = self._names[int(cls)]
                if name not in wanted:
                    continue
                corners = (float(xyxy[0]), float(xyxy[1]), float(xyxy[2]), float(xyxy[3]))
                found = box_detection(name, float(score), corners, width, height)
                if found is not None and masks is not None:
                    rect = found.box.to_pixels(item.full_width, item.full_height)
                    crop = paste_mask_crop(masks[i], corners, rect, scale, MASK_THRESHOLD)
                    found = Detection(name, found.box, found.confidence, mask=Mask(crop)) if crop.any() else None
                if found is not None:
                    labels.append(found)
            results.append(labels)
        return results


def _keep_box_masks(net: Any) -> None:
    """Mask R-CNN hands back each detection's mask pasted into an image-sized canvas (detections x H x W
    probabilities: gigabytes on large photos). Keep the network's own M x M mask per box instead, under
    ``MASKS``: ``to_labels`` pastes each into its box only, at the full image's resolution."""
    transform = net.transform
    postprocess = transform.postprocess

    def boxes_only(result: list[dict[str, Any]], image_shapes: Any, original_sizes: Any) -> list[dict[str, Any]]:
        masks = [prediction.pop("masks", None) for prediction in result]
        result = postprocess(result, image_shapes, original_sizes)  # boxes back in the input's pixels
        for prediction, mask in zip(result, masks, strict=True):
            if mask is not None:
                prediction[MASKS] = mask
        return result

    transform.postprocess = boxes_only


def box_heads(net: Any) -> list[Any]:
    """The modules whose outputs become box coordinates (and masks): kept in fp32 under autocast."""
    roi_heads = getattr(net, "roi_heads", None)
    if roi_heads is None:  # SSD, SSDlite: one head for classes and boxes
        return [net.head]
    masks = [roi_heads.mask_head, roi_heads.mask_predictor] if roi_heads.mask_predictor is not None else []
    return [net.rpn.head, roi_heads.box_head, roi_heads.box_predictor, *masks]


def build_network(
    family: str, *, num_classes: int = 91, score_thresh: float = 0.05, detections_per_img: int = 100
) -> Any:
    """The architecture with no weights (random init): the load path fills it from a state dict."""
    from torchvision.models import detection

    builder, _, _ = ARCHITECTURES[family]
    kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
    rcnn = "rcnn" in family
    kwargs["box_detections_per_img" if rcnn else "detections_per_img"] = detections_per_img
    if rcnn:
        kwargs["box_score_thresh"] = score_thresh
    else:
        kwargs["score_thresh"] = score_thresh
    return getattr(detection, builder)(**kwargs)


def load(request: LoadRequest, entry: CatalogueEntry) -> TorchvisionDetector:
    family = entry.options["arch"]
    _, input_size, batch = ARCHITECTURES[family]
    state = load_state_dict(entry.weights, request.weights, name=entry.name)
    floor = request.min_confidence if request.min_confidence is not None else entry.default_confidence
    net = build_network(
        family,
        score_thresh=floor,
        detections_per_img=request.detection_limit(
            int(request.options.get("detections_per_img", 100)), entry.vocabulary
        ),
    )
    load_weights(net, state, entry.name)
    if "mask" in family:
        _keep_box_masks(net)
    device = resolve_device(request.device)
    net.eval().to(device)
    if getattr(net, "roi_heads", None) is None:  # SSD: its per-class loop, batched (same detections)
        from verilabel.models.adapters.network_parts import vectorised_ssd_detections

        vectorised_ssd_detections(net)
    runtime = _choose_runtime(net, request, device, entry.name, input_size)
    full_precision(*box_heads(net))
    return TorchvisionDetector(entry, net, device, input_size, batch, runtime)


# R-CNN inputs vary (shorter side 800, padded to a multiple of 32): the export's example is small, to export fast
RCNN_EXAMPLE = 320


def _choose_runtime(net: Any, request: LoadRequest, device: Any, name: str, input_size: int | None) -> RuntimeChoice:
    """Hand the network's heavy part to the runtime the request asks for, in place: SSD's backbone and head as one
    session (its head is 40% of its compute), R-CNN's backbone and FPN (proposals and RoI heads stay in torch).
    torchvision's own transform, anchors and post-processing run either way."""
    import torch

    from verilabel.models.adapters.network_parts import (
        BackboneAndHead,
        Features,
        OnnxBackboneAndHead,
        OnnxFeatures,
        StashedHead,
    )

    single_stage = getattr(net, "roi_heads", None) is None
    if single_stage:
        size = input_size or 320
        core, runtime = accelerate(
            BackboneAndHead(net.backbone, net.head), request=request, device=device, name=name, shape=(1, 3, size, size)
        )
        if runtime.name == "onnx":
            with torch.no_grad():
                grids = [tuple(f.shape[-2:]) for f in net.backbone(torch.zeros(1, 3, size, size)).values()]
            features = OnnxBackboneAndHead(core, grids)
            net.backbone, net.head = features, StashedHead(features)
        return runtime
    features_of = Features(net.backbone)
    example = (1, 3, RCNN_EXAMPLE, RCNN_EXAMPLE)
    core, runtime = accelerate(features_of, request=request, device=device, name=name, shape=example, dynamic=(0, 2, 3))
    if runtime.name == "onnx":
        with torch.no_grad():
            names = list(net.backbone(torch.zeros(1, 3, 64, 64)).keys())
        net.backbone = OnnxFeatures(core, names, net.backbone.out_channels)
    return runtime
