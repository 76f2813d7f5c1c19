"""torchvision's ImageNet-1k classifiers (ResNet-18 to 152, ViT-B/16): the top-1 class among those asked for, with
the top-5 ``[class, probability]`` pairs as the attribute ``scores``.

``ImageNetClassifier`` is not tied to torchvision: any network that maps a normalised 224 x 224 crop to 1000
ImageNet logits uses it (``verilabel.models.offline.efficientnet_lite``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from verilabel.errors import ModelLoadError
from verilabel.labels import Classification, Label
from verilabel.models.catalogue import CatalogueEntry
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext, SplitPredict
from verilabel.models.preprocess import RGB_MEAN_IMAGENET, RGB_STD_IMAGENET, center_crop, resize_shorter, to_batch
from verilabel.models.runtimes import Core, RuntimeChoice, TorchCore, accelerate, unsupported
from verilabel.models.torch_support import (
    inference,
    is_asynchronous,
    load_state_dict,
    load_weights,
    resolve_device,
)

TOP_K = 5
RESIZE = 256  # torchvision's V1 weights; its V2 weights (ResNet-50/101/152) set ``options.resize = 232``
CROP = 224
BATCH = 32


def top_classification(
    probabilities: np.ndarray, names: Sequence[str], allowed: np.ndarray, min_confidence: float
) -> list[Label]:
    """The most probable of the ``allowed`` class indices, with the top-5 of them as ``scores``; nothing when
    it scores under ``min_confidence``. Probabilities stay those of the full softmax (not renormalised over
    the subset), so a confidence means the same whichever classes a run asks for."""
    if allowed.size == 0:
        return []
    order = allowed[np.argsort(-probabilities[allowed], kind="stable")[:TOP_K]]
    best = int(order[0])
    if probabilities[best] < min_confidence:
        return []
    scores = [[names[int(i)], round(float(probabilities[i]), 4)] for i in order]
    return [Classification(names[best], float(probabilities[best]), attributes={"scores": scores})]


class ImageNetClassifier(SplitPredict):
    def __init__(
        self,
        entry: CatalogueEntry,
        net: Any,
        device: Any,
        *,
        resize: int = RESIZE,
        crop: int = CROP,
        batch: int = BATCH,
        core: Core | None = None,
        runtime: RuntimeChoice | None = None,
        features: Callable[[Any], Core] | None = None,
    ) -> None:
        self.spec = entry.spec(batch_size=batch, input_size=resize)
        self._net = net
        self._core = core or TorchCore(net)  # the network, or its ONNX Runtime session (``runtimes``)
        self._features: Core | None = None  # the network without its last layer (``embed``), built on first use
        self._run_features = features or TorchCore  # the network, or its ONNX Runtime session (``runtimes``)
        self.runtime = runtime or RuntimeChoice("torch")
        self._device = device
        self.asynchronous = is_asynchronous(device)
        self._resize, self._crop = resize, crop
        self._index = {name: i for i, name in enumerate(self.spec.vocabulary)}

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Runs in the decode pool: shorter side to ``resize``, centre crop, still uint8 (see ``preprocess``)."""
        return center_crop(resize_shorter(image, self._resize), self._crop)

    def forward(self, prepared: list[np.ndarray]) -> Any:
        """Logits, one row per image."""
        with inference(self._device):
            return self._core(self._batch(prepared))[0]

    def _batch(self, prepared: list[np.ndarray]) -> Any:
        return to_batch(prepared, self._device, mean=RGB_MEAN_IMAGENET, std=RGB_STD_IMAGENET)

    def infer(self, images: Sequence[ImageItem], context: PredictContext) -> Any:
        return self.forward(self.prepared(images))

    def embed(self, images: Sequence[ImageItem]) -> np.ndarray:
        """Unit-length image embeddings: the pooled features the classifier's last linear layer reads."""
        from torch.nn.functional import normalize

        if self._features is None:
            self._features = self._run_features(without_last_linear(self._net))
        with inference(self._device):
            features = self._features(self._batch([self.prepare(item.array) for item in images]))[0]
            vectors = normalize(features.flatten(1).float(), dim=-1)
        return np.asarray(vectors.cpu().numpy(), dtype=np.float32)

    def to_labels(self, logits: Any, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        probabilities = logits.float().softmax(dim=1).cpu().numpy()
        allowed = np.array([self._index[c] for c in context.classes if c in self._index], dtype=np.int64)
        names = self.spec.vocabulary
        return [top_classification(row, names, allowed, context.min_confidence) for row in probabilities]


def without_last_linear(net: Any) -> Any:
    """A copy of ``net`` whose last ``Linear`` layer (the classifier: ResNet's ``fc``, ViT's ``heads.head``,
    EfficientNet's ``_fc``) passes its input through: the network's pooled features."""
    import copy

    import torch

    names = [name for name, module in net.named_modules() if isinstance(module, torch.nn.Linear)]
    if not names:
        raise ModelLoadError(f"{type(net).__name__} has no linear layer to take the features before")
    headless = copy.deepcopy(net)
    parent, _, attribute = names[-1].rpartition(".")
    setattr(headless.get_submodule(parent) if parent else headless, attribute, torch.nn.Identity())
    return headless.eval()


def build_network(arch: str, num_classes: int = 1000) -> Any:
    """The torchvision architecture with random weights: the load path fills it from a state dict."""
    from torchvision import models

    return getattr(models, arch)(weights=None, num_classes=num_classes)


def load(request: LoadRequest, entry: CatalogueEntry) -> ImageNetClassifier:
    state = load_state_dict(entry.weights, request.weights, name=entry.name)
    net = build_network(entry.options["arch"])
    load_weights(net, state, entry.name)
    device = resolve_device(request.device)
    net.eval().to(device)
    resize, crop = int(entry.options.get("resize", RESIZE)), int(entry.options.get("crop", CROP))
    return build(entry, net, request, device, resize=resize, crop=crop)


def build(
    entry: CatalogueEntry, net: Any, request: LoadRequest, device: Any, *, resize: int = RESIZE, crop: int = CROP
) -> ImageNetClassifier:
    """The classifier on ``net`` (eval, on ``device``), run by the runtime the request asks for."""
    if "onnx" not in entry.runtimes:  # a catalogue entry may keep a network on torch (``onnx = false``)
        runtime = unsupported(entry.name, request, "its catalogue entry keeps it on torch")
        return ImageNetClassifier(entry, net, device, resize=resize, crop=crop, runtime=runtime)
    shape = (1, 3, crop, crop)
    core, runtime = accelerate(net, request=request, device=device, name=entry.name, shape=shape)

    def features(headless: Any) -> Core:  # the same runtime for ``embed`` (its own export: the graph differs)
        settings = {"output": "features"}
        return accelerate(headless, request=request, device=device, name=entry.name, shape=shape, settings=settings)[0]

    return ImageNetClassifier(
        entry, net, device, resize=resize, crop=crop, core=core, runtime=runtime, features=features
    )
