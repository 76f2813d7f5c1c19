"""A tiny embedder for embedding-map tests: an image's mean colour (plus a constant, unit length) as its vector.

With ``--weights DIR`` (``LoadRequest.weights``) the process embedding it dies on its second batch, once: the
first to get there leaves ``DIR/died`` behind and ``os._exit`` s, as a worker killed mid-shard would."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from verilabel.labels import Label
from verilabel.models.interface import ImageItem, LoadRequest, ModelSpec, PredictContext


class MeanColourEmbedder:
    spec = ModelSpec("mean-colour", ("classification",), zero_shot=True, batch_size=4, version="test")

    def __init__(self, die_once_in: str | None) -> None:
        self.marker = Path(die_once_in) / "died" if die_once_in else None
        self.calls = 0

    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        return [[] for _ in images]

    def embed(self, images: Sequence[ImageItem]) -> np.ndarray:
        self.calls += 1
        if self.marker is not None and self.calls == 2 and not self.marker.exists():
            self.marker.touch()
            os._exit(1)
        vectors = np.array([[*(item.array.reshape(-1, 3).mean(axis=0) / 255), 1.0] for item in images], np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def mean_colour(request: LoadRequest) -> MeanColourEmbedder:
    return MeanColourEmbedder(request.weights)
