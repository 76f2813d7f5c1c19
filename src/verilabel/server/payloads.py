"""What the API reads and writes: request bodies (pydantic) and labels as JSON. Translation only: the rules live
in the services."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from verilabel.labels import Classification, Detection, Label

# Database ids are 32-bit integers: a larger one is a client's mistake (422), not a database error.
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]


class LabelFilter(BaseModel):
    """Which generated labels: every criterion given must hold (nothing given: all)."""

    model_config = ConfigDict(extra="forbid")

    min_confidence: float | None = Field(default=None, ge=0, le=1)
    max_confidence: float | None = Field(default=None, ge=0, le=1)
    below: float | None = Field(default=None, ge=0, le=1, description="confidence < below (a slider's open edge)")
    classes: list[str] = []
    sample_ids: list[Id] | None = None
    label_ids: list[str] | None = None
    tags: list[str] = []
    view: str | None = None

    def query(self) -> Any:
        from verilabel.datasets.views import parse_view
        from verilabel.review.service import LabelQuery

        return LabelQuery(
            min_confidence=self.min_confidence,
            max_confidence=self.max_confidence,
            below=self.below,
            classes=list(self.classes),
            sample_ids=self.sample_ids,
            view=parse_view(self.view) if self.view else None,
            label_ids=self.label_ids,
            tags=list(self.tags),
        )


class TagRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: list[str] = Field(min_length=1)
    remove: bool = False
    filter: LabelFilter = Field(default_factory=LabelFilter)


class SampleTags(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: list[str] = Field(min_length=1)
    remove: bool = False
    view: str | None = None
    sample_ids: list[Id] | None = None


class ApproveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allow_empty: bool = False


class RunCreate(BaseModel):
    """The fields of ``RunRequest`` a client may set (the same validation follows, with the CLI's messages).

    No path comes from a client: no ``--weights``, no mask location (segmentation masks go under the server's
    home), no ``python:`` model reference and no model options (some name files); those stay with the CLI."""

    model_config = ConfigDict(extra="forbid")

    task: str
    model: str
    field: str
    classes: list[str] = []
    aliases: list[str] = []
    negatives: list[str] = []
    min_confidence: float | None = None
    name: str | None = None
    view: str | None = None  # the samples to label: a view expression (none: all)
    sample_ids: list[Id] | None = None  # or an explicit selection
    workers: int = Field(default=1, ge=1, le=64)
    batch_size: int | None = Field(default=None, ge=1, le=4096)
    max_labels: int | None = Field(default=None, ge=1, le=100_000)
    device: str = "auto"
    runtime: str = "auto"


class EmbeddingCreate(BaseModel):
    """What ``verilabel dataset embed`` takes, less what names a file (``--weights``) or the server's hardware."""

    model_config = ConfigDict(extra="forbid")

    model: str
    patches: str | None = None  # a run: embed its labels' crops (none: the samples)
    key: str | None = None
    method: str = "pca"
    overwrite: bool = False


class RunControl(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workers: int | None = Field(default=None, ge=1, le=64)
    retry_failed: bool = False


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    role: str


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str


def label_json(label: Label) -> dict[str, Any]:
    """A label for the app: geometry relative to the image (boxes x, y, w, h from the top-left)."""
    out: dict[str, Any] = {
        "id": label.id,
        "kind": label.kind,
        "label": label.label,
        "confidence": label.confidence,
        "tags": list(label.tags),
        "attributes": label.attributes,
    }
    if isinstance(label, Detection):
        out["box"] = list(label.box.as_tuple())
        if label.polygon is not None:
            out["polygon"] = label.polygon.to_json()
        if label.keypoints is not None:
            out["keypoints"] = label.keypoints.to_json()
        out["mask"] = label.mask is not None
    else:
        assert isinstance(label, Classification)
    return out


def sample_json(sample_id: int, path: str, width: int | None, height: int | None, **extra: Any) -> dict[str, Any]:
    """A sample for the app: its file's name, never where it lives (media are served by sample id)."""
    return {"id": sample_id, "name": Path(path).name, "width": width, "height": height, **extra}
