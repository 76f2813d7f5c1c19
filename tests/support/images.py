"""Synthetic images for tests: noisy backgrounds with coloured rectangles at known places."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def blob_image(seed: int, width: int = 160, height: int = 120) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(90, 160, size=(height, width, 3), dtype=np.uint8)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    for index in rng.choice(3, size=int(rng.integers(1, 4)), replace=False):
        w, h = int(rng.integers(8, width // 2)), int(rng.integers(8, height // 2))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        image[y : y + h, x : x + w] = colours[index]
    return image


def write_blob_images(folder: Path, count: int, *, start: int = 0, fmt: str = "png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        path = folder / f"img_{i:05d}.{fmt}"
        Image.fromarray(blob_image(i)).save(path)
        paths.append(path)
    return paths


def header_only_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` with no pixel data: a decompression-bomb stand-in that
    costs nothing to write."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path
