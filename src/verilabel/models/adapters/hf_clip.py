"""Zero-shot image classification with transformers' image-text models: CLIP, SigLIP and SigLIP 2.

The class names become prompts, and each image gets the best-matching class. CLIP averages the text embeddings
of several prompt templates into one per class; SigLIP uses one template, its sigmoid scores being calibrated on
single prompts. Class embeddings are computed once per class and cached. CLIP's scores are a softmax over the
classes asked for; SigLIP's are sigmoids, each class scored on its own (they need not sum to one). A label carries
the top-5 ``[class, score]`` pairs in its ``scores`` attribute.

OpenCLIP (``open_clip``) reuses the classifier; the loading, image and text pieces are in ``hf_common``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from verilabel.errors import ModelLoadError
from verilabel.labels import Classification, Label
from verilabel.models.adapters.hf_common import (
    ForwardOnClasses,
    ImageConfig,
    TextEmbeddings,
    load_transformers,
    option,
    pooled,
    prepare_image,
    templates_option,
)
from verilabel.models.catalogue import CatalogueEntry
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext
from verilabel.models.preprocess import to_batch
from verilabel.models.torch_support import inference, is_asynchronous

# A few of the prompts OpenAI's CLIP paper ensembles for ImageNet: averaging them gains a point or more of
# zero-shot accuracy over "a photo of a {}." alone.
CLIP_TEMPLATES = (
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a photo of the large {}.",
    "a photo of the small {}.",
    "a cropped photo of a {}.",
    "a close-up photo of a {}.",
    "a bright photo of a {}.",
)
# SigLIP's sigmoid scores are calibrated on single prompts; an average of several shifts them.
SIGLIP_TEMPLATES = ("a photo of a {}.",)
TOP_K = 5  # [class, score] pairs kept in a label's ``scores`` attribute
DEFAULT_BATCH = 32


# --- options and loading (shared by the transformers adapters) ------------------------------------------------


# --- images --------------------------------------------------------------------------------------------------


# --- text ----------------------------------------------------------------------------------------------------


# --- the classifier ------------------------------------------------------------------------------------------
class ImageTextEncoder(Protocol):
    """The two towers of a CLIP-style model and how it turns cosine similarities into logits."""

    sigmoid: bool  # scores are per-class sigmoids (SigLIP), else a softmax over the classes (CLIP)

    def encode_text(self, prompts: list[str]) -> Any: ...

    def encode_images(self, pixels: Any) -> Any: ...

    def logits(self, images: Any, texts: Any) -> Any:
        """(images, classes) logits from unit-length image and class embeddings."""
        ...


class ScaledCosine:
    """Logits as CLIP and SigLIP make them: cosine similarity times a learnt scale, plus SigLIP's learnt bias
    (whose presence makes the scores sigmoids)."""

    def __init__(self, logit_scale: Any, logit_bias: Any | None) -> None:
        self._scale = float(logit_scale.detach().exp())
        self._bias = float(logit_bias.detach()) if logit_bias is not None else 0.0
        self.sigmoid = logit_bias is not None

    def logits(self, images: Any, texts: Any) -> Any:
        return images @ texts.T * self._scale + self._bias


class TransformersEncoder(ScaledCosine):
    """``ImageTextEncoder`` over a transformers ``CLIPModel`` / ``SiglipModel`` (or any model with the same API)."""

    def __init__(self, net: Any, tokenizer: Any, device: Any) -> None:
        super().__init__(net.logit_scale, getattr(net, "logit_bias", None))
        self._net, self._tokenizer, self._device = net, tokenizer, device
        # SigLIP was trained on text padded to its full length (and pools the last position); CLIP pools the EOS.
        self._padding: str | bool = "max_length" if self.sigmoid else True
        self._max_length = int(net.config.text_config.max_position_embeddings)

    def encode_text(self, prompts: list[str]) -> Any:
        tokens = self._tokenizer(
            prompts, padding=self._padding, truncation=True, max_length=self._max_length, return_tensors="pt"
        )
        inputs = {k: v.to(self._device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        with inference(self._device):
            return pooled(self._net.get_text_features(**inputs))

    def encode_images(self, pixels: Any) -> Any:
        return pooled(self._net.get_image_features(pixel_values=pixels))


class ZeroShotClassifier(ForwardOnClasses):
    """One ``Classification`` per image: the best class among those asked for, with the top-5 in ``scores``."""

    def __init__(
        self,
        entry: CatalogueEntry,
        encoder: ImageTextEncoder,
        image: ImageConfig,
        device: Any,
        *,
        templates: Sequence[str],
        batch_size: int,
        classes: tuple[str, ...] = (),
    ) -> None:
        self.spec = entry.spec(batch_size=batch_size, input_size=image.input_size)
        self._encoder, self._image, self._device = encoder, image, device
        self.asynchronous = is_asynchronous(device)
        self._texts = TextEmbeddings(encoder.encode_text, templates)
        self._classes = classes  # what forward() scores when not told (the run's classes, known at load)
        if classes:
            self._texts(classes)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Runs in the decode pool: resize (and crop) to the model's input, still uint8."""
        return prepare_image(image, self._image)

    def forward(self, prepared: list[np.ndarray], classes: tuple[str, ...] | None = None) -> Any:
        """(images, classes) logits: the image tower on the batch against the cached class embeddings."""
        classes = classes or self._classes
        if not classes:
            raise ValueError("forward() needs classes: pass them, or load the model with LoadRequest(classes=...)")
        texts = self._texts(classes)
        with inference(self._device):
            return self._encoder.logits(self._image_embeddings(prepared), texts)

    def embed(self, images: Sequence[ImageItem]) -> np.ndarray:
        """Unit-length image embeddings, one row per image (the tower that scores the classes)."""
        with inference(self._device):
            vectors = self._image_embeddings([self.prepare(item.array) for item in images])
        return np.asarray(vectors.cpu().numpy(), dtype=np.float32)

    def _image_embeddings(self, prepared: list[np.ndarray]) -> Any:
        """The image tower on a prepared batch, unit length (in the caller's inference mode)."""
        from torch.nn.functional import normalize

        pixels = to_batch(prepared, self._device, mean=self._image.mean, std=self._image.std)
        return normalize(self._encoder.encode_images(pixels).float(), dim=-1)

    def postprocess(self, logits: Any, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        probs = logits.float().sigmoid() if self._encoder.sigmoid else logits.float().softmax(dim=-1)
        return [self._classify(row, context) for row in probs.cpu().numpy()]

    @staticmethod
    def _classify(scores: np.ndarray, context: PredictContext) -> list[Label]:
        order = np.argsort(-scores, kind="stable")[:TOP_K]
        best = float(scores[order[0]])
        if best < context.min_confidence:
            return []
        top = [[context.classes[i], round(float(scores[i]), 4)] for i in order]
        return [Classification(context.classes[order[0]], min(best, 1.0), attributes={"scores": top})]


def load(request: LoadRequest, entry: CatalogueEntry) -> ZeroShotClassifier:
    net, processor, device = load_transformers(entry, request, "AutoModel")
    if not all(hasattr(net, attr) for attr in ("get_image_features", "get_text_features", "logit_scale")):
        raise ModelLoadError(
            f"{entry.name!r}: the weights hold a {type(net).__name__}, not an image-text model like CLIP or SigLIP"
        )
    if net.config.model_type == "siglip2":
        raise ModelLoadError(
            f"{entry.name!r}: SigLIP 2 NaFlex checkpoints (variable resolution) are not supported; use a "
            "fixed-resolution one such as google/siglip2-base-patch16-224"
        )
    encoder = TransformersEncoder(net, processor.tokenizer, device)
    return ZeroShotClassifier(
        entry,
        encoder,
        ImageConfig.from_processor(processor.image_processor),
        device,
        templates=templates_option(entry, request, SIGLIP_TEMPLATES if encoder.sigmoid else CLIP_TEMPLATES),
        batch_size=int(option(entry, request, "batch_size", DEFAULT_BATCH)),
        classes=request.classes,
    )
