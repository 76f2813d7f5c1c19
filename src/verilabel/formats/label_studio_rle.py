"""Label Studio's brush RLE: how ``brushlabels`` regions hold a mask (``{"format": "rle", "rle": [bytes...]}``).

The mask is an RGBA image the size of the whole image, flattened (row-major, 4 bytes per pixel), packed as a bit
stream: a header (32 bits: the number of values; 5 bits: word size - 1; four 4-bit fields: the run-length field
sizes - 1), then chunks. A chunk starts with 1 bit (1: one value repeated, 0: literal values), 2 bits choosing a
run-length field size, the run length - 1 in that many bits, then the value (or each literal value) in word-size
bits. The stream is padded to whole bytes. Label Studio's editor draws a region where alpha is non-zero.

Writing uses repeat chunks only (masks are long runs); reading takes both kinds, as Label Studio's editor and its
SDK write them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

WORD_SIZE = 8
RUN_BITS = (3, 4, 8, 16)  # the field sizes Label Studio's own encoder uses
_HEADER = 32 + 5 + 4 * 4


def encode(mask: np.ndarray) -> list[int]:
    """An image-sized boolean mask as Label Studio brush RLE bytes (white RGBA where the mask is set)."""
    flat = np.repeat(np.asarray(mask, dtype=bool).ravel(), 4).astype(np.uint8) * 255
    bits = [f"{flat.size:032b}", f"{WORD_SIZE - 1:05b}", *(f"{n - 1:04b}" for n in RUN_BITS)]
    if flat.size:
        starts = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1))
        lengths = np.diff(np.concatenate((starts, [flat.size])))
        longest = 1 << RUN_BITS[-1]
        for value, length in zip(flat[starts].tolist(), lengths.tolist(), strict=True):
            while length:
                count = min(length, longest)
                size = next(i for i, n in enumerate(RUN_BITS) if count <= 1 << n)
                bits.append(f"1{size:02b}{count - 1:0{RUN_BITS[size]}b}{value:08b}")
                length -= count
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return list(int(stream, 2).to_bytes(len(stream) // 8, "big")) if stream else []


class _Bits:
    """Reads unsigned fields off a bit stream."""

    def __init__(self, data: bytes) -> None:
        self.bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
        self.at = 0

    def read(self, count: int) -> int:
        if self.at + count > self.bits.size:
            raise ValueError("the brush RLE ends in the middle of a value")
        field = self.bits[self.at : self.at + count]
        self.at += count
        return int("".join("1" if b else "0" for b in field.tolist()) or "0", 2)

    def words(self, count: int, size: int) -> np.ndarray:
        if self.at + count * size > self.bits.size:
            raise ValueError("the brush RLE ends in the middle of a value")
        field = self.bits[self.at : self.at + count * size].reshape(count, size).astype(np.int64)
        self.at += count * size
        return field @ (1 << np.arange(size - 1, -1, -1, dtype=np.int64))


def decode_values(rle: list[int] | bytes) -> np.ndarray:
    """The flattened values (RGBA bytes) a brush RLE holds."""
    stream = _Bits(bytes(rle))
    count = stream.read(32)
    word = stream.read(5) + 1
    sizes = [stream.read(4) + 1 for _ in range(4)]
    out = np.zeros(count, dtype=np.uint8)
    at = 0
    while at < count:
        repeat = stream.read(1)
        end = min(count, at + 1 + stream.read(sizes[stream.read(2)]))
        if repeat:
            out[at:end] = stream.read(word)
        else:
            out[at:end] = stream.words(end - at, word)
        at = end
    return out


def decode(rle: list[int] | bytes, width: int, height: int) -> np.ndarray:
    """A brush RLE as an image-sized boolean mask: the pixels whose alpha is non-zero."""
    values = decode_values(rle)
    if values.size != width * height * 4:
        raise ValueError(
            f"the brush RLE holds {values.size} values; a {width}x{height} image needs {width * height * 4}"
        )
    return values.reshape(height, width, 4)[:, :, 3] > 0


def brush_value(mask: np.ndarray, name: str) -> dict[str, Any]:
    """A ``brushlabels`` region's value: the image-sized mask, labelled ``name``."""
    return {"format": "rle", "rle": encode(mask), "brushlabels": [name]}
