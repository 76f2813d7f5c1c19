"""The contract between verilabel and a model: a frozen spec and a batched ``predict``.

A model is any object with:

- ``spec``: a ``ModelSpec`` (what it does, its vocabulary, its defaults);
- ``predict(images, context) -> list[list[Label]]``: one list of labels per input image, in order.

Rules the engine checks on every batch (``verilabel.models.checks``):

- exactly one label list per image;
- classification models return at most one ``Classification`` per image; detection models ``Detection`` s;
- every class is in ``context.classes`` (the vocabulary subset or the zero-shot prompts asked for);
- confidences are in [0, 1]; boxes lie inside the image; a mask's shape matches its box in the pixels of the full
  image (or of the decoded array, which the engine then scales up).

Optionally a model may define ``prepare(image) -> object``: the engine calls it in its decode pool, ahead of
the model, and hands the result back as ``ImageItem.prepared`` (resize / normalise off the critical path).
Use numpy / PIL / OpenCV there, not torch ops: each decode thread that runs a torch op gets its own intra-op
thread pool, and those spinning threads slow a CPU model's forward by a third.

A model whose device runs asynchronously (CUDA: a forward returns once its kernels are queued) may also set
``asynchronous = True`` and split ``predict`` in two: ``infer(images, context) -> raw`` queues the device work,
and ``to_labels(raw, images, context) -> list[list[Label]]`` waits for it and builds the labels. The engine
then calls ``to_labels`` in a thread of its own, so that the host's post-processing of one batch overlaps the
device's forward of the next (``predict`` must stay equal to ``to_labels(infer(...))``).

A model may also embed images: ``embed(images) -> ndarray`` of unit-length rows, one per image
(``verilabel dataset embed``: the 2-D maps of samples and label patches in the app).

A model may say what runs it in ``runtime`` (a ``verilabel.models.runtimes.RuntimeChoice``): the catalogue's
adapters hand their networks to ONNX Runtime on a CPU through ``runtimes.accelerate`` (``LoadRequest.runtime``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from verilabel.labels import Detection, Label

if TYPE_CHECKING:
    from verilabel.datasets.images import RGBImage

Task = Literal["classification", "detection", "segmentation", "keypoints"]
TASKS: tuple[Task, ...] = ("classification", "detection", "segmentation", "keypoints")


@dataclass(frozen=True)
class ModelSpec:
    """What a built model is: its name, tasks, vocabulary and defaults."""

    name: str
    tasks: tuple[Task, ...]
    zero_shot: bool
    vocabulary: tuple[str, ...] = ()
    default_confidence: float = 0.25
    batch_size: int = 8
    # Smallest side the model looks at; the decoder may skip detail beyond it (JPEG draft mode).
    input_size: int | None = None
    version: str = ""
    weights: str = ""

    def __post_init__(self) -> None:
        if not self.tasks or any(t not in TASKS for t in self.tasks):
            raise ValueError(f"spec {self.name!r}: tasks must be a non-empty subset of {TASKS}, got {self.tasks}")
        if not self.zero_shot and not self.vocabulary:
            raise ValueError(f"spec {self.name!r}: a fixed-vocabulary model needs its vocabulary")
        if not 0 <= self.default_confidence <= 1:
            raise ValueError(f"spec {self.name!r}: default_confidence must be in [0, 1]")
        if self.batch_size < 1:
            raise ValueError(f"spec {self.name!r}: batch_size must be >= 1")


@dataclass
class ImageItem:
    """One decoded image handed to a model. ``array`` is RGB uint8, possibly decoded at reduced scale (JPEG
    draft decoding, for models whose input is smaller); ``full_size`` is then the image's own (width, height).

    Boxes are relative, so the scale does not matter to them; masks do: a mask covers its box in the pixels of
    the full image (``full_width`` x ``full_height``). A model may return it in the array's pixels instead; the
    engine then scales it up to the full size."""

    sample_id: int
    path: str
    array: RGBImage
    prepared: Any = None
    full_size: tuple[int, int] | None = None

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    @property
    def height(self) -> int:
        return int(self.array.shape[0])

    @property
    def full_width(self) -> int:
        return self.full_size[0] if self.full_size else self.width

    @property
    def full_height(self) -> int:
        return self.full_size[1] if self.full_size else self.height


@dataclass(frozen=True)
class PredictContext:
    """What the engine asks of this batch: which classes (model names or prompts) and the score floor."""

    task: Task
    classes: tuple[str, ...]
    min_confidence: float
    options: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Model(Protocol):
    @property
    def spec(self) -> ModelSpec: ...

    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]: ...


class SplitPredict:
    """A base for models split into ``infer`` and ``to_labels`` (see above): ``predict`` is the two in a row, and
    ``prepared`` gives a batch's ``prepare`` results, computed here for images the engine did not prepare (a
    model without ``prepare`` gets the arrays themselves)."""

    def infer(self, images: Sequence[ImageItem], context: PredictContext) -> Any:
        raise NotImplementedError

    def to_labels(self, raw: Any, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        raise NotImplementedError

    def prepared(self, images: Sequence[ImageItem]) -> list[Any]:
        # Not declared on this base: the engine calls ``prepare`` in its decode pool whenever a model has one.
        prepare = getattr(self, "prepare", None)
        if prepare is None:
            return [item.array for item in images]
        return [item.prepared if item.prepared is not None else prepare(item.array) for item in images]

    def predict(self, images: Sequence[ImageItem], context: PredictContext) -> list[list[Label]]:
        return self.to_labels(self.infer(images, context), images, context)


@runtime_checkable
class PromptedSegmenter(Protocol):
    """A segmenter driven by boxes (SAM, SAM 2): one mask per given detection. verilabel composes it after a
    detector (``--model DETECTOR+SEGMENTER``) or after an existing label field (``field:NAME+SEGMENTER``)."""

    @property
    def spec(self) -> ModelSpec: ...

    def segment(self, images: Sequence[ImageItem], detections: Sequence[Sequence[Detection]]) -> list[list[Detection]]:
        """For each image, its detections with a ``mask`` added (same label, box and confidence; a detection
        whose mask comes out empty is dropped)."""
        ...


@dataclass(frozen=True)
class LoadRequest:
    """What a loader receives: where to find weights, the device, and the classes to prepare for."""

    weights: str | None = None
    device: str = "auto"
    classes: tuple[str, ...] = ()
    min_confidence: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # The run keeps at most this many labels per image (the most confident): a detector may stop at that many.
    max_labels: int | None = None
    # auto | torch | onnx (``verilabel.models.runtimes``), and the CPU threads the runtime may use (None: its share)
    runtime: str = "auto"
    threads: int | None = None

    def detection_limit(self, default: int, vocabulary: tuple[str, ...] = ()) -> int:
        """How many detections per image are worth building: the model's own cap, or the run's if lower. A fixed
        model (``vocabulary``) caps before its classes are filtered, so only when every class is asked for."""
        partial = bool(vocabulary) and not set(vocabulary) <= set(self.classes)
        return min(default, self.max_labels) if self.max_labels is not None and not partial else default
