"""The OpenCV JPEG path of decode gives exactly PIL's pixels, and leaves every doubtful file to PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from verilabel.datasets.images import decode, decode_sized
from verilabel.datasets.jpeg import decode_jpeg, frame_header
from verilabel.errors import SampleError


def photo(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(width * height)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 3) % 256, (yy * 5) % 256, ((xx + yy) // 2) % 256], -1)
    return (base + rng.integers(0, 32, base.shape)).clip(0, 255).astype(np.uint8)


def pil_reference(path: Path, draft_size: int | None) -> np.ndarray:
    with Image.open(path) as img:
        if draft_size:
            img.draft("RGB", (draft_size, draft_size))
        img.load()
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


CASES = {
    "plain": {},
    "progressive": {"progressive": True},
    "full-chroma": {"subsampling": 0},
    **{f"orientation-{o}": {"orientation": o} for o in range(2, 9)},
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("draft_size", [None, 100, 150, 333])
def test_opencv_decodes_what_pil_decodes_pixel_for_pixel(tmp_path: Path, case: str, draft_size: int | None):
    options = dict(CASES[case])
    exif = Image.Exif()
    exif[0x0112] = options.pop("orientation", 1)
    path = tmp_path / "photo.jpg"
    Image.fromarray(photo(643, 401)).save(path, quality=90, exif=exif, **options)  # odd sizes: scaled rounding
    fast = decode_jpeg(path, max_pixels=10**9, draft_size=draft_size)
    assert fast is not None  # the OpenCV path took it
    expected = pil_reference(path, draft_size)
    assert fast[0].shape == expected.shape and np.array_equal(fast[0], expected)
    assert np.array_equal(decode(path, draft_size=draft_size), expected)
    # both decoders report the full size as displayed (what masks are made at), whatever the draft scale
    displayed = (401, 643) if exif[0x0112] in (5, 6, 7, 8) else (643, 401)
    assert fast[1] == decode_sized(path, draft_size=draft_size)[1] == displayed


def test_greyscale_jpegs_come_out_rgb(tmp_path: Path):
    path = tmp_path / "grey.jpg"
    Image.fromarray(photo(120, 80)).convert("L").save(path)
    fast = decode_jpeg(path, max_pixels=10**9, draft_size=None)
    assert fast is not None and fast[0].shape == (80, 120, 3) and fast[1] == (120, 80)
    assert np.array_equal(fast[0], pil_reference(path, None))


def test_cmyk_truncated_and_non_jpeg_files_are_left_to_pil(tmp_path: Path):
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(photo(64, 48)).convert("CMYK").save(cmyk)
    assert frame_header(cmyk.read_bytes())[2] == 4  # type: ignore[index]
    assert decode_jpeg(cmyk, max_pixels=10**9, draft_size=None) is None
    assert np.array_equal(decode(cmyk), pil_reference(cmyk, None))
    small, full = decode_sized(cmyk, draft_size=16)  # PIL's draft decodes it at 1/2; the full size is kept
    assert small.shape[:2] == (24, 32) and full == (64, 48)

    truncated = tmp_path / "truncated.jpg"
    Image.fromarray(photo(300, 200)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:2000])
    assert decode_jpeg(truncated, max_pixels=10**9, draft_size=None) is None
    with pytest.raises(SampleError, match="truncated"):
        decode(truncated)

    png = tmp_path / "image.png"
    Image.fromarray(photo(20, 10)).save(png)
    assert decode_jpeg(png, max_pixels=10**9, draft_size=None) is None
    assert frame_header(b"\xff\xd8\xff\xe0\x00\x10" + bytes(30)) is None
    assert decode_jpeg(tmp_path / "missing.jpg", max_pixels=10**9, draft_size=None) is None
    with pytest.raises(SampleError, match="not found"):
        decode(tmp_path / "missing.jpg")


def test_the_pixel_limit_still_guards_jpegs(tmp_path: Path):
    path = tmp_path / "big.jpg"
    Image.fromarray(photo(200, 100)).save(path)
    assert frame_header(path.read_bytes())[:2] == (200, 100)  # type: ignore[index]
    with pytest.raises(SampleError, match="decompression-bomb"):
        decode(path, max_pixels=19_999)
