"""The JPEG fast path of ``decode``: OpenCV decodes with the GIL released.

PIL spends about 300 us per image in Python (opening, marker parsing, the load loop) holding the GIL, which caps
one worker at a few thousand images/s however many decode threads it has: too few for a fast model on a GPU.
OpenCV's ``imdecode`` runs entirely in C without the GIL, uses the same libjpeg-turbo (pixel-identical output,
including reduced-scale decoding and EXIF orientation; tests compare them), and is 2-3x faster.

It only takes files it is sure about: complete 8-bit baseline or progressive JPEGs with 1 or 3 components
within the pixel limit. Anything else (CMYK, 12-bit, truncated, not a JPEG, OpenCV not installed, OpenCV
failing) returns None and goes to PIL, whose errors name the problem.
"""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

_START_OF_FRAME = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, 0xD8, *range(0xD0, 0xD8)}  # markers without a length field


@cache
def opencv() -> Any:
    """The ``cv2`` module, or None when OpenCV is not installed (it is optional)."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def frame_header(data: bytes) -> tuple[int, int, int, int] | None:
    """(width, height, components, bits) from a JPEG's start-of-frame segment, as stored (before EXIF
    orientation); None when no frame header is found."""
    at = 2  # after SOI
    end = len(data)
    while at + 4 <= end:
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _STANDALONE:
            at += 2
            continue
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if marker in _START_OF_FRAME:
            if at + 10 > end:
                return None
            bits = data[at + 4]
            height = int.from_bytes(data[at + 5 : at + 7], "big")
            width = int.from_bytes(data[at + 7 : at + 9], "big")
            return width, height, data[at + 9], bits
        if marker == 0xDA:  # start of scan before any frame header: malformed
            return None
        at += 2 + length
    return None


def draft_scale(width: int, height: int, draft_size: int | None) -> int:
    """The reduction PIL's ``draft`` picks: the largest of 8, 4, 2 that keeps both sides >= ``draft_size``."""
    if not draft_size:
        return 1
    fits = min(width // draft_size, height // draft_size)
    return next((scale for scale in (8, 4, 2) if fits >= scale), 1)


def decode_jpeg(
    path: str | os.PathLike[str], *, max_pixels: int, draft_size: int | None, data: bytes | None = None
) -> tuple[np.ndarray, tuple[int, int]] | None:
    """RGB ``uint8`` pixels of a JPEG decoded by OpenCV, EXIF orientation applied, with the image's full size
    (width, height, as displayed); None to let PIL decide. ``data``: the file's bytes, already read."""
    cv2 = opencv()
    if cv2 is None:
        return None
    if data is None:
        try:
            with open(path, "rb") as file:
                data = file.read(3)
                if data != b"\xff\xd8\xff":
                    return None  # not a JPEG: PIL reads it, and only PIL
                data += file.read()
        except OSError:
            return None
    elif not data.startswith(b"\xff\xd8\xff"):
        return None
    if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return None  # truncated: PIL says so
    header = frame_header(data)
    if header is None:
        return None
    width, height, components, bits = header
    if components not in (1, 3) or bits != 8 or width * height > max_pixels or width * height == 0:
        return None
    flag = {
        1: cv2.IMREAD_COLOR,
        2: cv2.IMREAD_REDUCED_COLOR_2,
        4: cv2.IMREAD_REDUCED_COLOR_4,
        8: cv2.IMREAD_REDUCED_COLOR_8,
    }[draft_scale(width, height, draft_size)]
    import numpy as np

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if bgr is None:
        return None
    # OpenCV applied the EXIF orientation: the array's aspect tells whether it swapped the sides.
    upright = (bgr.shape[1] >= bgr.shape[0]) == (width >= height)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (width, height) if upright else (height, width)
