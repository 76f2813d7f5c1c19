"""Image preprocessing shared by the torch adapters, split where the engine needs it split.

- In the decode pool (``Model.prepare``): resize to the model's input, still ``uint8`` HWC. numpy / OpenCV /
  PIL only: a torch op in a decode thread starts its own intra-op thread pool, which steals the cores the
  model's forward runs on.
- In the model's thread (``to_batch`` / ``to_tensors``): one ``uint8`` upload per batch, then the float
  conversion and normalisation as a single op on the device. A quarter of the bytes of a float upload, and on a
  CPU one vectorised op per batch instead of a numpy pass per image (measured: 6 ms -> 0.6 ms per 640x480 image).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from verilabel.datasets.jpeg import opencv

RGB_MEAN_IMAGENET = (0.485, 0.456, 0.406)
RGB_STD_IMAGENET = (0.229, 0.224, 0.225)


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of an RGB ``uint8`` array (no antialiasing: what torch's ``interpolate`` does inside
    torchvision's and transformers' own transforms). OpenCV when installed (5x faster), else PIL."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    cv2 = opencv()
    if cv2 is not None:
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)  # type: ignore[no-any-return]
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def resize_bilinear_antialiased(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize that low-pass filters when it shrinks: PIL's BILINEAR, which torchvision's
    ``antialias=True`` (its classification and segmentation presets) and transformers' SAM / SAM 2 processors
    reproduce. Against them on a 4000 x 3000 photo: a mean absolute difference of 0.002 in normalised units, where
    a plain bilinear resize differs by 0.25 (it aliases fine detail). A few ms more than OpenCV per image."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def resize_shorter(image: np.ndarray, shorter: int) -> np.ndarray:
    """Resize keeping the aspect ratio so the shorter side is ``shorter`` (torchvision's ``Resize(int)``: its
    rounding and its antialiasing)."""
    height, width = aspect_size(image.shape[0], image.shape[1], shorter)
    return resize_bilinear_antialiased(image, width, height)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    height, width = image.shape[:2]
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    return image[top : top + size, left : left + size]


def to_batch(
    images: Sequence[np.ndarray],
    device: Any,
    *,
    dtype: Any = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Any:
    """Same-size ``uint8`` HWC images -> one float NCHW tensor on ``device``, scaled to [0, 1] and
    optionally normalised. Runs in the model's thread."""
    import torch

    batch = torch.from_numpy(np.stack(images)).to(device)
    tensor = batch.permute(0, 3, 1, 2).to(dtype or torch.float32).div_(255)
    if mean is not None and std is not None:
        shape = (1, 3, 1, 1)
        tensor = tensor.sub_(torch.tensor(mean, device=tensor.device, dtype=tensor.dtype).view(shape))
        tensor = tensor.div_(torch.tensor(std, device=tensor.device, dtype=tensor.dtype).view(shape))
    return tensor.contiguous()


def to_tensors(images: Sequence[np.ndarray], device: Any) -> list[Any]:
    """``uint8`` HWC images of any sizes -> float CHW tensors in [0, 1] on ``device`` (a batch when they
    share one size, so it still costs one conversion)."""
    if len({image.shape for image in images}) == 1:
        return list(to_batch(images, device))
    return [to_batch([image], device)[0] for image in images]


def aspect_size(height: int, width: int, shortest: int, longest: int | None = None) -> tuple[int, int]:
    """(height, width) after a resize of the shorter side to ``shortest`` with the longer side at most
    ``longest``, rounded exactly as transformers' ``get_size_with_aspect_ratio`` (and torchvision's Resize)."""
    size, raw = shortest, None
    if longest is not None:
        low, high = float(min(height, width)), float(max(height, width))
        if high / low * size > longest:
            raw = longest * low / high
            size = round(raw)
    if (height <= width and height == size) or (width <= height and width == size):
        return height, width
    base = raw if raw is not None else size
    if width < height:
        return int(base * height / width), size
    return size, int(base * width / height)


def resize_antialiased(
    image: np.ndarray, width: int, height: int, *, cubic: bool = False, gaussian: bool = False
) -> np.ndarray:
    """Resize an RGB ``uint8`` array as transformers' processors do: torch's antialiased bilinear / bicubic, or
    (``gaussian``) OWLv2's Gaussian blur of sigma ``(factor - 1) / 2`` followed by a plain bilinear resize.

    With OpenCV, shrinking uses its area filter in place of torch's antialiasing: against CLIPImageProcessor on
    640x480 photos with fine detail, a mean absolute difference of 0.02 in normalised units (a plain bicubic
    resize: 0.05 to 0.12), in 2 ms. Without OpenCV, PIL (antialiased too, three times slower)."""
    in_h, in_w = image.shape[:2]
    if (in_w, in_h) == (width, height):
        return image
    shrinking = width < in_w or height < in_h
    try:
        import cv2
    except ImportError:  # OpenCV is optional
        from PIL import Image

        resample = Image.Resampling.BICUBIC if cubic else Image.Resampling.BILINEAR
        return np.asarray(Image.fromarray(image).resize((width, height), resample))
    if shrinking and gaussian:
        sigma_x, sigma_y = max(0.0, (in_w / width - 1) / 2), max(0.0, (in_h / height - 1) / 2)
        if sigma_x > 0 and sigma_y > 0:  # as OWLv2's processor: no blur unless both axes shrink
            size = (2 * math.ceil(3 * sigma_x) + 1, 2 * math.ceil(3 * sigma_y) + 1)
            image = cv2.GaussianBlur(image, size, sigmaX=sigma_x, sigmaY=sigma_y)
        method = cv2.INTER_LINEAR
    elif shrinking:
        method = cv2.INTER_AREA
    else:
        method = cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=method)  # type: ignore[no-any-return]


def center_crop_or_pad(image: np.ndarray, height: int, width: int, *, fill: int = 0) -> np.ndarray:
    """The centred ``height`` x ``width`` window, padded with ``fill`` where the image is smaller (offsets as
    transformers' and torchvision's ``center_crop``)."""
    in_h, in_w = image.shape[:2]
    if in_h < height or in_w < width:
        canvas = np.full((max(in_h, height), max(in_w, width), 3), fill, dtype=np.uint8)
        top, left = (canvas.shape[0] - in_h) // 2, (canvas.shape[1] - in_w) // 2
        canvas[top : top + in_h, left : left + in_w] = image
        image, in_h, in_w = canvas, canvas.shape[0], canvas.shape[1]
    top, left = int((in_h - height) / 2.0), int((in_w - width) / 2.0)
    return image[top : top + height, left : left + width]


def padded_batch(images: Sequence[np.ndarray], device: Any, *, mean: Sequence[float], std: Sequence[float]) -> Any:
    """``uint8`` HWC images of any sizes -> one normalised NCHW tensor, each image at the top-left, padded to
    the largest with zeros after normalisation (as the models were trained). One upload per batch."""
    height, width = max(image.shape[0] for image in images), max(image.shape[1] for image in images)
    if all(image.shape[:2] == (height, width) for image in images):
        return to_batch(images, device, mean=mean, std=std)
    canvas = np.zeros((len(images), height, width, 3), np.uint8)
    for i, image in enumerate(images):
        canvas[i, : image.shape[0], : image.shape[1]] = image
    batch = to_batch(list(canvas), device, mean=mean, std=std)
    return zero_padding(batch, [image.shape[:2] for image in images])


def zero_padding(batch: Any, sizes: Sequence[tuple[int, int]]) -> Any:
    """Zero what lies right of and below each image's (height, width) in a normalised NCHW batch: padding
    that is zero after normalisation, not black."""
    for i, (height, width) in enumerate(sizes):
        batch[i, :, height:, :] = 0
        batch[i, :, :height, width:] = 0
    return batch


PAD_VALUE = 114  # ultralytics' letterbox grey: the value the models were trained to see as "no image"


@dataclass(frozen=True)
class Letterbox:
    """Where an image of ``width`` x ``height`` lands in a ``size_w`` x ``size_h`` model input: resized (aspect kept)
    to ``new_w`` x ``new_h`` and pasted at ``(left, top)`` on grey, with ultralytics' rounding (``LetterBox``)."""

    width: int
    height: int
    size_w: int
    size_h: int
    new_w: int
    new_h: int
    left: int
    top: int

    @classmethod
    def of(cls, width: int, height: int, size_w: int, size_h: int | None = None) -> Letterbox:
        size_h = size_w if size_h is None else size_h
        ratio = min(size_w / width, size_h / height)
        new_w, new_h = max(round(width * ratio), 1), max(round(height * ratio), 1)
        left, top = round((size_w - new_w) / 2 - 0.1), round((size_h - new_h) / 2 - 0.1)
        return cls(width, height, size_w, size_h, new_w, new_h, left, top)

    @property
    def scale_x(self) -> float:
        """Input pixels per original pixel along x (exact: the resize went to ``new_w``, not ``width * ratio``)."""
        return self.new_w / self.width

    @property
    def scale_y(self) -> float:
        return self.new_h / self.height

    def apply(self, image: np.ndarray) -> np.ndarray:
        canvas = np.full((self.size_h, self.size_w, 3), PAD_VALUE, dtype=np.uint8)
        canvas[self.top : self.top + self.new_h, self.left : self.left + self.new_w] = resize(
            image, self.new_w, self.new_h
        )
        return canvas

    def to_original(self, xy: np.ndarray) -> np.ndarray:
        """Input-space ``(..., 2k)`` x, y columns (boxes as x1 y1 x2 y2, or points) -> original pixels."""
        out = np.asarray(xy, dtype=np.float64).copy()
        out[..., 0::2] = (out[..., 0::2] - self.left) / self.scale_x
        out[..., 1::2] = (out[..., 1::2] - self.top) / self.scale_y
        return out

    def mask_crop(
        self, logits: np.ndarray, rect: tuple[int, int, int, int], pixel_scale: tuple[float, float] = (1.0, 1.0)
    ) -> np.ndarray:
        """The mask over the pixel rectangle ``(x, y, w, h)``, sampled bilinearly from prototype-resolution mask
        logits (which cover the whole model input) at each of its pixels' centres, then thresholded at 0. The
        rectangle is in pixels of the letterboxed image, or of a larger one: ``pixel_scale`` is then that
        image's pixels per pixel of the rectangle's (a JPEG decoded at 1/4 for the model: masks at full size).

        Only the box is ever materialised at full resolution: a full-image mask per detection (what ultralytics
        builds) costs detections x H x W, gigabytes on large photos."""
        import cv2

        x, y, w, h = rect
        kx, ky = logits.shape[1] / self.size_w, logits.shape[0] / self.size_h
        # pixel centre (x + u + 0.5) -> letterboxed image's coordinate -> input -> prototype, centres at integers
        ax, ay = self.scale_x * kx * pixel_scale[0], self.scale_y * ky * pixel_scale[1]
        bx = ((x + 0.5) * pixel_scale[0] * self.scale_x + self.left) * kx - 0.5
        by = ((y + 0.5) * pixel_scale[1] * self.scale_y + self.top) * ky - 0.5
        warp = np.array([[ax, 0.0, bx], [0.0, ay, by]], dtype=np.float64)
        sampled = cv2.warpAffine(
            logits.astype(np.float32, copy=False),
            warp,
            (w, h),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        return np.asarray(sampled > 0)


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` uint8 model input of an RGB image (numpy / OpenCV only: runs in the decode pool)."""
    return Letterbox.of(image.shape[1], image.shape[0], size).apply(image)
