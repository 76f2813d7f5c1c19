"""Export a label field (approved or any) of a dataset, or of a view of it, to COCO or YOLO.

Media are never copied: COCO ``file_name`` values are relative to the samples' common folder (recorded as
``info.images_root``); a YOLO export links each image into ``images/`` beside its ``labels/`` file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from verilabel.datasets.service import dataset_row, find_field
from verilabel.datasets.views import View
from verilabel.errors import ConfigError
from verilabel.formats import coco, yolo
from verilabel.labels import Detection, Label
from verilabel.store import Store
from verilabel.store.convert import row_label
from verilabel.store.schema import LabelRow, SampleRow, SampleTagRow

FORMATS = ("coco", "yolo")
_PAGE = 1000


@dataclass(frozen=True)
class ExportItem:
    sample_id: int
    path: str
    width: int | None
    height: int | None
    labels: list[Label]
    tags: list[str]


@dataclass(frozen=True)
class ExportSummary:
    format: str
    images: int
    labels: int
    path: str

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "images": self.images, "labels": self.labels, "path": self.path}


def _samples_with_labels(
    store: Store, dataset: str, field: str, view: View | None
) -> tuple[list[str], Iterator[ExportItem]]:
    with store.read() as session:
        dataset_id = dataset_row(session, dataset).id
        field_row = find_field(session, dataset_id, field)
        if field_row is None:
            raise ConfigError("field", f"dataset {dataset!r} has no label field {field!r}")
        field_id = field_row.id
        classes = sorted(set(session.scalars(select(LabelRow.label).where(LabelRow.field_id == field_id).distinct())))
        ids = list(session.scalars((view or View()).sample_ids_query(dataset_id)))

    def pages() -> Iterator[ExportItem]:
        for start in range(0, len(ids), _PAGE):
            chunk = ids[start : start + _PAGE]
            with store.read() as session:
                samples = session.scalars(select(SampleRow).where(SampleRow.id.in_(chunk)).order_by(SampleRow.id))
                by_sample: dict[int, list[Label]] = {}
                for row in session.scalars(
                    select(LabelRow)
                    .where(LabelRow.field_id == field_id, LabelRow.sample_id.in_(chunk))
                    .order_by(LabelRow.id)
                ):
                    by_sample.setdefault(row.sample_id, []).append(row_label(row))
                tags: dict[int, list[str]] = {}
                for sample_id, tag in session.execute(
                    select(SampleTagRow.sample_id, SampleTagRow.tag).where(SampleTagRow.sample_id.in_(chunk))
                ):
                    tags.setdefault(sample_id, []).append(tag)
                for sample in samples:
                    yield ExportItem(
                        sample.id,
                        sample.path,
                        sample.width,
                        sample.height,
                        by_sample.get(sample.id, []),
                        sorted(tags.get(sample.id, [])),
                    )

    return classes, pages()


def export_field(
    store: Store, dataset: str, field: str, fmt: str, out: str | Path, *, view: View | None = None
) -> ExportSummary:
    if fmt not in FORMATS:
        raise ConfigError("format", f"{fmt!r}: choose one of {', '.join(FORMATS)}")
    out_dir = Path(out).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    classes, samples = _samples_with_labels(store, dataset, field, view)
    return (_export_coco if fmt == "coco" else _export_yolo)(classes, samples, out_dir)


def _size(sample: ExportItem) -> tuple[int, int]:
    if sample.width is None or sample.height is None:
        raise ConfigError(
            "dataset",
            f"sample {sample.sample_id} ({sample.path}) has no known size (unreadable at import); "
            "fix or remove the file, then re-add the folder",
        )
    return sample.width, sample.height


def _export_coco(classes: list[str], samples: Iterator[ExportItem], out: Path) -> ExportSummary:
    items = list(samples)
    root = os.path.commonpath([os.path.dirname(s.path) for s in items]) if items else ""
    images = []
    for sample in items:
        width, height = _size(sample)
        relative = os.path.relpath(sample.path, root)
        images.append(coco.CocoImage(relative, width, height, sample.labels, tags=sample.tags))
    document = coco.build_coco(images, classes)
    document["info"]["images_root"] = root
    path = out / "labels.json"
    path.write_text(json.dumps(document))
    return ExportSummary("coco", len(images), len(document["annotations"]), str(path))


def _export_yolo(classes: list[str], samples: Iterator[ExportItem], out: Path) -> ExportSummary:
    import yaml

    index = {name: i for i, name in enumerate(classes)}
    (out / "images").mkdir(exist_ok=True)
    (out / "labels").mkdir(exist_ok=True)
    images = labels_written = 0
    for sample in samples:
        labels = sample.labels
        if any(not isinstance(label, Detection) for label in labels):
            raise ConfigError("format", "YOLO export takes detection fields; this one holds classifications")
        segments = any(isinstance(lb, Detection) and (lb.polygon or lb.mask) for lb in labels)
        name = f"{sample.sample_id}_{Path(sample.path).name}"
        link = out / "images" / name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(sample.path)
        lines = [yolo.label_line(lb, index[lb.label], segments=segments) for lb in labels if isinstance(lb, Detection)]
        (out / "labels" / Path(name).with_suffix(".txt")).write_text("".join(line + "\n" for line in lines))
        images += 1
        labels_written += len(lines)
    data = {"path": str(out), "train": "images", "val": "images", "names": dict(enumerate(classes))}
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return ExportSummary("yolo", images, labels_written, str(out / "data.yaml"))
