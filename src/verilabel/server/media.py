"""Images by sample id (never by a path from the client), thumbnails and label patches cached on disk.

A sample's file is served only if the dataset has it and its type is an image type: ``nosniff`` and an explicit
content type, so a file cannot be served as HTML. Thumbnails and patches are JPEGs cached under
``VERILABEL_HOME/thumbnails``, keyed by the sample and its file's modification time: an edited image gets a new
one, and the URL's ETag changes with it.

A sample in object storage (``s3://``, ``https://``...) is fetched once by the server, with its credentials, into
``VERILABEL_HOME/thumbnails/remote`` (keyed by the URI and the object's ETag or size and time) and served from
there: the browser never needs the bucket's credentials, and thumbnails and patches are cut from that copy.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sqlalchemy import select

from verilabel.datasets import media
from verilabel.datasets.images import crop_box
from verilabel.errors import NotFoundError, SampleError
from verilabel.store import Store
from verilabel.store.schema import RunLabelRow, SampleRow

MEDIA_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}
THUMBNAIL_SIZES = (128, 256, 512)


@dataclass(frozen=True)
class MediaFile:
    path: Path
    media_type: str
    version: str  # changes when the file does: the cache key and the ETag

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


def sample_file(store: Store, sample_id: int, cache: Path) -> MediaFile:
    with store.read() as session:
        path = session.scalar(select(SampleRow.path).where(SampleRow.id == sample_id))
    if path is None:
        raise NotFoundError(f"no sample {sample_id}")
    if media.is_remote(path):
        return _remote_copy(path, cache / "remote", f"sample {sample_id}")
    return _media(Path(path), f"sample {sample_id}")


def _remote_copy(uri: str, folder: Path, what: str) -> MediaFile:
    """The object at ``uri``, fetched once into ``folder`` (again when it changes)."""
    suffix = PurePosixPath(uri.partition("?")[0]).suffix.lower()
    media_type = MEDIA_TYPES.get(suffix)
    if media_type is None:
        raise NotFoundError(f"{what} is not an image file")
    try:
        found = media.info(uri)
        mark = found.get("ETag") or found.get("etag") or found.get("LastModified") or found.get("mtime") or ""
        version = hashlib.sha256(f"{uri}|{mark}|{found.get('size')}".encode()).hexdigest()[:24]
        target = folder / version[:2] / f"{version}{suffix}"
        if not target.is_file():
            _write_atomically(target, media.read_bytes(uri))
    except SampleError as exc:
        raise NotFoundError(f"the file of {what} cannot be read now: {exc}") from None
    return MediaFile(target, media_type, version)


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _media(path: Path, what: str) -> MediaFile:
    media_type = MEDIA_TYPES.get(path.suffix.lower())
    if media_type is None:
        raise NotFoundError(f"{what} is not an image file")
    try:
        stat = path.stat()
    except OSError:
        raise NotFoundError(f"the file of {what} is gone (moved or deleted): re-add its folder") from None
    return MediaFile(path, media_type, f"{stat.st_mtime_ns:x}-{stat.st_size:x}")


def thumbnail(store: Store, cache: Path, sample_id: int, size: int) -> MediaFile:
    """A JPEG of the sample at most ``size`` px on its longer side (EXIF orientation applied)."""
    if size not in THUMBNAIL_SIZES:
        raise NotFoundError(f"thumbnails come in sizes {', '.join(map(str, THUMBNAIL_SIZES))}")
    source = sample_file(store, sample_id, cache)
    target = cache / f"{sample_id % 256:02x}" / f"{sample_id}-{source.version}-{size}.jpg"
    if not target.is_file():
        _write_jpeg(target, _open(source.path, size), size)
    return MediaFile(target, "image/jpeg", f"{sample_id}-{source.version}-{size}")


def patch(store: Store, cache: Path, run_id: str, label_id: str, size: int = 256, margin: float = 0.15) -> MediaFile:
    """A JPEG of a generated label's box with a margin around it (``margin``: a fraction of the box on each side)."""
    with store.read() as session:
        found = session.execute(
            select(RunLabelRow.sample_id, RunLabelRow.x, RunLabelRow.y, RunLabelRow.w, RunLabelRow.h).where(
                RunLabelRow.run_id == run_id, RunLabelRow.id == label_id
            )
        ).first()
    if found is None:
        raise NotFoundError(f"run {run_id} has no label {label_id}")
    sample_id, x, y, w, h = found
    source = sample_file(store, sample_id, cache)
    target = cache / "patches" / run_id / f"{label_id}-{source.version}-{size}.jpg"
    if not target.is_file():
        image = _open(source.path, None)
        if x is None or y is None or w is None or h is None:  # a classification: the whole image
            bounds: tuple[int, ...] = (0, 0, *image.size)
        else:
            width, height = image.size
            bounds = crop_box((x, y, w, h), width, height, margin)
        _write_jpeg(target, image.crop(bounds), size)
    return MediaFile(target, "image/jpeg", f"{label_id}-{source.version}-{size}")


def _open(path: Path, size: int | None):  # type: ignore[no-untyped-def]
    """The image as displayed (EXIF orientation applied), in RGB; JPEGs decoded at a reduced scale when ``size``
    allows it."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            if size and img.format == "JPEG":
                img.draft("RGB", (size, size))
            img.load()
            return ImageOps.exif_transpose(img).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise SampleError(f"{path.name} cannot be read as an image ({exc})") from None


def _write_jpeg(target: Path, image, size: int) -> None:  # type: ignore[no-untyped-def]
    image.thumbnail((size, size))
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".part", delete=False) as part:
        image.save(part, "JPEG", quality=85)
    os.replace(part.name, target)  # readers never see half a file


def mask_png(store: Store, label_id: str, *, run_id: str | None = None, dataset_id: int | None = None) -> bytes:
    """A label's instance mask as a PNG over its box: opaque white where the mask is, transparent elsewhere (the
    app tints it in the class's colour). From a run's labels (``run_id``) or a dataset's (``dataset_id``)."""
    import io

    import numpy as np
    from PIL import Image

    from verilabel.store.convert import row_label
    from verilabel.store.schema import LabelFieldRow, LabelRow

    with store.read() as session:
        row: RunLabelRow | LabelRow | None
        if run_id is not None:
            row = session.scalar(select(RunLabelRow).where(RunLabelRow.run_id == run_id, RunLabelRow.id == label_id))
        else:
            row = session.scalar(
                select(LabelRow)
                .join(LabelFieldRow, LabelFieldRow.id == LabelRow.field_id)
                .where(LabelFieldRow.dataset_id == dataset_id, LabelRow.id == label_id)
            )
        label = row_label(row) if row is not None else None
    mask = getattr(label, "mask", None)
    if mask is None:
        raise NotFoundError(f"label {label_id} has no mask here")
    try:
        pixels = mask.load()
    except OSError:
        raise NotFoundError(f"the mask file of label {label_id} is gone") from None
    alpha = np.where(pixels, 255, 0).astype(np.uint8)
    rgba = np.dstack([np.full_like(alpha, 255)] * 3 + [alpha])
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, "PNG", optimize=False, compress_level=1)
    return buffer.getvalue()
