"""Reading image files: cheap header probes for import, guarded full decodes for runs.

Every failure of a decode becomes a ``SampleError`` whose message says what is wrong with the file, so a run
can record it against the sample and go on.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verilabel.datasets import media
from verilabel.datasets.jpeg import decode_jpeg
from verilabel.errors import SampleError

if TYPE_CHECKING:  # numpy loads with the first decode: listing files and probing headers need none of it
    import numpy as np
    import numpy.typing as npt

    RGBImage = npt.NDArray[np.uint8]


IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
# PIL's own decompression-bomb error threshold (2 x Image.MAX_IMAGE_PIXELS); a run may lower or raise it.
DEFAULT_MAX_PIXELS = 178_956_970
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height
_EXIF_ORIENTATION = 0x0112


def iter_image_files(root: Path) -> Iterator[Path]:
    """Image files under ``root``, recursively, in a stable order; hidden folders are skipped."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS and not name.startswith("."):
                yield Path(dirpath) / name


@dataclass(frozen=True)
class ImageHeader:
    width: int
    height: int
    format: str | None


def probe(path: str | os.PathLike[str]) -> ImageHeader:
    """Width and height as displayed (EXIF rotation applied), read from the header only: whatever the size (a
    header is harmless, decoding is what a size limit guards; see ``too_large``)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with _header_only():
            img = Image.open(_remote_header(str(path)) if media.is_remote(path) else path)
        with img:
            width, height = img.size
            orientation = _orientation(img)
            fmt = img.format
    except SampleError:
        raise
    except FileNotFoundError as exc:
        raise SampleError(f"file not found: {path}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise SampleError(f"not a readable image: {path} ({exc})") from exc
    if orientation in _TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    return ImageHeader(width, height, fmt)


def _remote_header(uri: str) -> io.BytesIO:
    """The start of a remote image, enough for its header; the whole object when the header runs past it (a
    JPEG whose EXIF block is large)."""
    from PIL import Image

    head = media.read_head(uri)
    if len(head) == media.HEAD_BYTES:
        try:
            with _header_only(), Image.open(io.BytesIO(head)) as img:
                _orientation(img)
        except Exception:
            return io.BytesIO(media.read_bytes(uri))
    return io.BytesIO(head)


def _orientation(img: Any) -> int:
    """The EXIF orientation from the header. A PNG's EXIF chunk may follow its pixels, and PIL's ``getexif``
    then decodes the whole image to find it: a PNG without EXIF before its pixels counts as upright."""
    if img.format == "PNG" and "exif" not in img.info:
        return 1
    return int(img.getexif().get(_EXIF_ORIENTATION, 1))


def too_large(path: str | os.PathLike[str], width: int, height: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """Why an image of this size is not decoded (the decompression-bomb guard), and the fix."""
    return (
        f"image is {width}x{height} = {width * height / 1e6:.0f} Mpx, above the limit of {max_pixels / 1e6:.0f} Mpx "
        f"(decompression-bomb guard): {path}. If it is genuine, raise the run's max_image_pixels."
    )


_PIL_LIMIT = threading.Lock()


@contextlib.contextmanager
def _header_only() -> Iterator[None]:
    """Open images without PIL's own decompression-bomb check, which raises on the header alone and knows only
    its global limit: verilabel checks sizes itself, against the limit of the run. PIL's setting is global, so
    it is lifted under a lock and restored at once (only opening the header runs inside)."""
    from PIL import Image

    with _PIL_LIMIT:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def decode(
    path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None
) -> RGBImage:
    """Decode to an RGB ``uint8`` array, EXIF orientation applied (see ``decode_sized``)."""
    return decode_sized(path, max_pixels=max_pixels, draft_size=draft_size)[0]


def decode_sized(
    path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None
) -> tuple[RGBImage, tuple[int, int]]:
    """Decode to an RGB ``uint8`` array, EXIF orientation applied, with the image's full size (width, height as
    displayed), which the array has unless it was decoded smaller.

    ``draft_size`` lets the JPEG decoder skip work by decoding at 1/2, 1/4 or 1/8 scale while both sides stay
    at least that large: models that resize to a small input lose nothing, and relative boxes are unaffected
    (masks are made at the full size). JPEGs go through OpenCV when it is installed (``verilabel.datasets.jpeg``:
    same pixels, no GIL held).
    """
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    # A remote object is read once, with retries (``verilabel.datasets.media``), then decoded from memory.
    data = media.read_bytes(str(path)) if media.is_remote(path) else None
    fast = decode_jpeg(path, max_pixels=max_pixels, draft_size=draft_size, data=data)
    if fast is not None:
        return fast

    try:
        with _header_only():
            img = Image.open(io.BytesIO(data) if data is not None else path)
        with img:
            width, height = img.size
            if width * height > max_pixels:
                raise SampleError(too_large(path, width, height, max_pixels))
            orientation = _orientation(img)  # from the header, as ``probe`` reads it: the two agree on the size
            if draft_size and img.format == "JPEG":
                img.draft("RGB", (draft_size, draft_size))
            img.load()
            # Each step only when needed: PIL's transpose and convert copy the image even when they change nothing.
            oriented = ImageOps.exif_transpose(img) if orientation != 1 else img
            rgb = oriented if oriented.mode == "RGB" else oriented.convert("RGB")
            full = (height, width) if orientation in _TRANSPOSED_ORIENTATIONS else (width, height)
            return np.asarray(rgb), full
    except SampleError:
        raise
    except FileNotFoundError as exc:
        raise SampleError(f"file not found: {path}. Was it moved or deleted?") from exc
    except IsADirectoryError as exc:
        raise SampleError(f"not a file: {path}") from exc
    except UnidentifiedImageError as exc:
        raise SampleError(f"not an image (unrecognised format): {path}") from exc
    except Image.DecompressionBombError as exc:
        raise SampleError(f"decompression bomb: {path} ({exc})") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        # PIL raises OSError for truncated and corrupt data ("image file is truncated", "broken data stream")
        raise SampleError(f"corrupt or truncated image: {path} ({exc})") from exc


def crop_box(box: tuple[float, float, float, float], width: int, height: int, margin: float) -> tuple[int, ...]:
    """Pixel bounds (left, top, right, bottom) of a relative box (x, y, w, h) grown by ``margin`` of its size on
    each side, inside the image and at least one pixel wide and high."""
    x, y, w, h = box
    left, top = max(0, int((x - w * margin) * width)), max(0, int((y - h * margin) * height))
    right = min(width, max(left + 1, round((x + w * (1 + margin)) * width)))
    bottom = min(height, max(top + 1, round((y + h * (1 + margin)) * height)))
    return min(left, width - 1), min(top, height - 1), right, bottom
