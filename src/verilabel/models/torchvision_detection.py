"""torchvision's COCO detectors (SSDlite, Faster R-CNN): batched, decoded and resized ahead of the model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from verilabel.labels import Box, Detection, Label
from verilabel.models.catalogue import CatalogueEntry, vocabulary_file
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext
from verilabel.models.registry import torch_hub_dir
from verilabel.models.torch_support import load_state_dict, resolve_device

# name -> (builder, input size handed to the model, default batch size)
ARCHITECTURES: dict[str, tuple[str, int | None, int]] = {
    "ssdlite": ("ssdlite320_mobilenet_v3_large", 320, 16),
    "faster-rcnn": ("fasterrcnn_resnet50_fpn", None, 4),
}


class TorchvisionDetector:
    def __init__(self, entry: CatalogueEntry, net: Any, device: Any, input_size: int | None, batch: int) -> None:
        self.spec = entry.spec(batch_size=batch, input_size=input_size)
        self._net = net
        self._device = device
        self._input_size = input_size
        self._names = vocabulary_file("coco-91")

    def prepare(self, image: np.ndarray) -> Any:
        """Runs in the decode pool: resize (PIL) and scale (numpy) to a float CHW tensor.

        No torch computation here on purpose: a torch op in a decode thread starts another intra-op thread
        pool, whose spinning threads steal the cores the model's forward runs on (measured: 65% -> 96% of the
        forward ceiling on 2 cores once removed).
        """
        import torch
        from PIL import Image

        if self._input_size:
            size = (self._input_size, self._input_size)
            image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        scaled = np.asarray(image, dtype=np.float32) * np.float32(1 / 255)
        return torch.from_numpy(scaled).permute(2, 0, 1)

    def forward(self, tensors: list[Any]) -> list[dict[str, Any]]:
        import torch

        with torch.inference_mode():
            return self._net([t.to(self._device, non_blocking=True) for t in tensors])  # type: ignore[no-any-return]

    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        tensors = [item.prepared if item.prepared is not None else self.prepare(item.array) for item in images]
        outputs = self.forward(tensors)
        wanted = set(context.classes)
        results: list[list[Label]] = []
        for tensor, out in zip(tensors, outputs, strict=True):
            height, width = int(tensor.shape[1]), int(tensor.shape[2])
            boxes = out["boxes"].float().cpu().numpy()
            scores = out["scores"].float().cpu().numpy()
            classes = out["labels"].cpu().numpy()
            labels: list[Label] = []
            for (x1, y1, x2, y2), score, cls in zip(boxes, scores, classes, strict=True):
                name = self._names[int(cls)]
                if score < context.min_confidence or name not in wanted:
                    continue
                box = Box.from_xyxy_pixels(float(x1), float(y1), float(x2), float(y2), width, height)
                if box.w > 0 and box.h > 0:
                    labels.append(Detection(name, box, float(score)))
            results.append(labels)
        return results


def build_network(
    family: str, *, num_classes: int = 91, score_thresh: float = 0.05, detections_per_img: int = 100
) -> Any:
    """The architecture with no weights (random init): the load path fills it from a state dict."""
    from torchvision.models import detection

    builder, _, _ = ARCHITECTURES[family]
    kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
    kwargs["box_detections_per_img" if family == "faster-rcnn" else "detections_per_img"] = detections_per_img
    if family == "faster-rcnn":
        kwargs["box_score_thresh"] = score_thresh
    else:
        kwargs["score_thresh"] = score_thresh
    return getattr(detection, builder)(**kwargs)


def load(request: LoadRequest, entry: CatalogueEntry) -> TorchvisionDetector:
    from torchvision.models import detection

    _, input_size, batch = ARCHITECTURES[entry.family]
    weights_enum = getattr(detection, entry.weights.removeprefix("torchvision:").split(".")[0])
    url = getattr(weights_enum, entry.weights.split(".")[-1]).url
    state = load_state_dict(request.weights, name=entry.name, url=url, cache_dir=torch_hub_dir())
    floor = request.min_confidence if request.min_confidence is not None else entry.default_confidence
    net = build_network(
        entry.family, score_thresh=floor, detections_per_img=int(request.options.get("detections_per_img", 100))
    )
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        from verilabel.errors import ModelLoadError

        raise ModelLoadError(f"the weights do not fit {entry.name!r}: {str(exc).splitlines()[0]}") from None
    device = resolve_device(request.device)
    net.eval().to(device)
    return TorchvisionDetector(entry, net, device, input_size, batch)
