"""torchvision's semantic segmenters (DeepLabV3, FCN; the 20 Pascal VOC classes) turned into instance labels:
one mask per connected region of each class, its confidence the region's mean class probability."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from typing import Any

import numpy as np

from verilabel.errors import ModelLoadError
from verilabel.labels import Detection, Label, Mask
from verilabel.models.catalogue import CatalogueEntry, vocabulary_file
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext, SplitPredict
from verilabel.models.postprocess import mask_detection
from verilabel.models.preprocess import RGB_MEAN_IMAGENET, RGB_STD_IMAGENET, padded_batch, resize_shorter
from verilabel.models.runtimes import Core, RuntimeChoice, TorchCore, accelerate
from verilabel.models.torch_support import (
    inference,
    is_asynchronous,
    load_state_dict,
    load_weights,
    resolve_device,
)

# builder -> default batch size
ARCHITECTURES: dict[str, int] = {
    "deeplabv3_resnet50": 4,
    "deeplabv3_resnet101": 4,
    "deeplabv3_mobilenet_v3_large": 8,
    "fcn_resnet50": 4,
    "fcn_resnet101": 4,
}
SIZE = 520  # torchvision's recipe: shorter side to 520
MIN_AREA = 0.001  # regions under this fraction of the image are speckle, not objects


# A region: its bounding box's top-left pixel (x, y) and its mask over that box.
Region = tuple[int, int, np.ndarray]


def _regions_opencv(mask: np.ndarray, min_pixels: float) -> Iterator[Region]:
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    for region in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[region])
        if area >= min_pixels:
            yield x, y, labels[y : y + h, x : x + w] == region


def _regions_scipy(mask: np.ndarray, min_pixels: float) -> Iterator[Region]:
    from scipy import ndimage

    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    for region, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
        crop = labels[rows, cols] == region
        if crop.sum() >= min_pixels:
            yield cols.start, rows.start, crop


@cache
def _region_finder() -> Callable[[np.ndarray, float], Iterator[Region]] | None:
    """The 8-connected regions of a mask with at least ``min_pixels`` pixels, by OpenCV, else SciPy."""
    for module, finder in (("cv2", _regions_opencv), ("scipy", _regions_scipy)):
        if importlib.util.find_spec(module) is not None:
            return finder
    return None


class TorchvisionSemantic(SplitPredict):
    def __init__(
        self,
        entry: CatalogueEntry,
        net: Any,
        device: Any,
        *,
        size: int = SIZE,
        batch: int = 4,
        min_area: float = MIN_AREA,
        core: Core | None = None,
        runtime: RuntimeChoice | None = None,
    ) -> None:
        self.spec = entry.spec(batch_size=batch, input_size=size)
        if core is None:
            from verilabel.models.adapters.network_parts import ClassLogits

            core = TorchCore(ClassLogits(net))
        self._core = core  # the network's class logits (its answer is a dict), or its ONNX Runtime session
        self.runtime = runtime or RuntimeChoice("torch")
        self._device = device
        self.asynchronous = is_asynchronous(device)
        self._size = size
        self._min_area = min_area
        self._names = vocabulary_file("voc")  # index-aligned: 0 is __background__

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Runs in the decode pool: shorter side to the model's size, still uint8 (see ``preprocess``)."""
        return resize_shorter(image, self._size)

    def forward(self, prepared: list[np.ndarray]) -> Any:
        """Class logits at the (padded) input resolution, N x C x H x W."""
        with inference(self._device):
            batch = padded_batch(prepared, self._device, mean=RGB_MEAN_IMAGENET, std=RGB_STD_IMAGENET)
            return self._core(batch)[0]

    def infer(self, images: Sequence[ImageItem], context: PredictContext) -> tuple[list[tuple[int, int]], Any]:
        """The model-input sizes (before batch padding) and the class logits."""
        prepared = self.prepared(images)
        return [image.shape[:2] for image in prepared], self.forward(prepared)

    def to_labels(
        self, raw: tuple[list[tuple[int, int]], Any], images: Sequence[ImageItem], context: PredictContext
    ) -> list[list[Label]]:
        sizes, logits = raw
        asked = set(context.classes)
        wanted = [i for i, name in enumerate(self._names) if i > 0 and name in asked]
        results: list[list[Label]] = []
        for i, (item, (height, width)) in enumerate(zip(images, sizes, strict=True)):
            valid = logits[i : i + 1, :, :height, :width]  # drop the batch padding
            classes, upsampled = self._pixel_classes(valid, item.height, item.width)
            regions: list[Detection | None] = list(self._regions(classes, upsampled, wanted, context.min_confidence))
            if (item.full_width, item.full_height) != (item.width, item.height):
                regions = [self._at_full_size(region, valid[0], item) for region in regions if region is not None]
            results.append([region for region in regions if region is not None])
        return results

    def _at_full_size(self, region: Detection, logits: Any, item: ImageItem) -> Detection | None:
        """A region found in a smaller decode, its mask made again over its box in the full image: the pixels
        where its class wins (the logits sampled at each full-size pixel) near the region itself (the region
        scaled up and widened by a pixel of the decode, so that separate regions of one class stay apart)."""
        import cv2

        assert region.mask is not None
        index = self._names.index(region.label)
        rect = region.box.to_pixels(item.full_width, item.full_height)
        input_per_full = (logits.shape[2] / item.full_width, logits.shape[1] / item.full_height)
        wins = class_wins(logits, index, rect, input_per_full)
        widened = cv2.dilate(region.mask.load().astype(np.uint8), np.ones((3, 3), np.uint8))
        near = cv2.resize(widened, (rect[2], rect[3]), interpolation=cv2.INTER_NEAREST) > 0
        crop = wins & near
        return Detection(region.label, region.box, region.confidence, mask=Mask(crop)) if crop.any() else None

    @staticmethod
    def _pixel_classes(logits: Any, height: int, width: int) -> tuple[np.ndarray, Any]:
        """Per pixel of the original image, the winning class, and the class logits there (upsampled bilinearly,
        as torchvision's own models upsample theirs). Probabilities are left to ``_regions``: a softmax over
        every pixel costs as much as the upsampling, and only the pixels of kept regions need one."""
        import torch
        import torch.nn.functional as F

        upsampled = F.interpolate(logits.float(), size=(height, width), mode="bilinear", align_corners=False)[0]
        return upsampled.max(dim=0).indices.to(torch.uint8).cpu().numpy(), upsampled

    def _regions(self, classes: np.ndarray, logits: Any, wanted: list[int], min_confidence: float) -> list[Detection]:
        """One detection per connected region of each wanted class, large and confident enough: its confidence
        is its pixels' mean probability of the class (a softmax over the class logits of its box only)."""
        find = _region_finder()
        assert find is not None  # load() checked
        min_pixels = self._min_area * classes.size
        present = np.bincount(classes.ravel(), minlength=len(self._names))
        labels: list[Detection] = []
        for index in (i for i in wanted if present[i] >= min_pixels):
            for x, y, crop in find(classes == index, min_pixels):
                h, w = crop.shape
                probability = logits[:, y : y + h, x : x + w].softmax(dim=0)[index].cpu().numpy()
                score = float(probability[crop].mean())
                if score < min_confidence:
                    continue
                full = np.zeros(classes.shape, bool)
                full[y : y + h, x : x + w] = crop
                found = mask_detection(self._names[index], score, full, (x, y, x + w, y + h))
                if found is not None:
                    labels.append(found)
        return labels


SAMPLES_PER_CHUNK = 1 << 24  # class logits sampled at once: 64 MiB of float32


def class_wins(logits: Any, index: int, rect: tuple[int, int, int, int], scale: tuple[float, float]) -> np.ndarray:
    """Over the pixel rectangle ``rect`` = (x, y, w, h) of an image, where class ``index`` has the highest of the
    C x H x W ``logits`` sampled bilinearly at each pixel's centre (``scale``: logit pixels per image pixel), as
    upsampling the logits to that image and taking the argmax would give, without the image-sized maps."""
    import torch
    import torch.nn.functional as F

    x, y, w, h = rect
    channels, height, width = logits.shape
    rows_per_chunk = max(1, SAMPLES_PER_CHUNK // max(1, channels * w))
    # grid_sample's frame (align_corners=False): -1 and 1 are the outer edges of the logit map
    gx = ((torch.arange(w, device=logits.device) + x + 0.5) * scale[0] / width * 2 - 1).float()
    out = np.empty((h, w), bool)
    for top in range(0, h, rows_per_chunk):
        rows = torch.arange(top, min(h, top + rows_per_chunk), device=logits.device)
        gy = ((rows + y + 0.5) * scale[1] / height * 2 - 1).float()
        grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None]
        sampled = F.grid_sample(logits[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        out[top : top + len(rows)] = (sampled[0].argmax(dim=0) == index).cpu().numpy()
    return out


def build_network(arch: str, *, num_classes: int = 21, aux_loss: bool = False) -> Any:
    """The architecture with random weights; ``aux_loss`` adds the training-only head the released checkpoints
    carry (the load path drops it)."""
    from torchvision.models import segmentation

    builder = getattr(segmentation, arch)
    return builder(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux_loss)


def load(request: LoadRequest, entry: CatalogueEntry) -> TorchvisionSemantic:
    if _region_finder() is None:
        raise ModelLoadError(
            f"{entry.name!r} splits its class map into regions with OpenCV or SciPy: "
            "`pip install opencv-python-headless` (or scipy)"
        )
    arch = entry.options["arch"]
    state = load_state_dict(entry.weights, request.weights, name=entry.name)
    # The auxiliary head only helps training; skipping it saves its share of every forward.
    state = {key: value for key, value in state.items() if not key.startswith("aux_classifier.")}
    net = build_network(arch)
    load_weights(net, state, entry.name)
    from verilabel.models.adapters.network_parts import ClassLogits

    device = resolve_device(request.device)
    net.eval().to(device)
    options = entry.options | request.options
    size = int(options.get("size", SIZE))
    # Images keep their aspect ratio (shorter side ``size``): height and width vary from batch to batch.
    core, runtime = accelerate(
        ClassLogits(net), request=request, device=device, name=entry.name, shape=(1, 3, size, size), dynamic=(0, 2, 3)
    )
    return TorchvisionSemantic(
        entry,
        net,
        device,
        size=size,
        batch=ARCHITECTURES[arch],
        min_area=float(options.get("min_area", MIN_AREA)),
        core=core,
        runtime=runtime,
    )
