"""Export a label field (approved or any) of a dataset, or of a view of it, to COCO, YOLO, Pascal VOC or
Label Studio.

Media are never copied: COCO ``file_name`` values are relative to the samples' common folder (recorded as
``info.images_root``); a YOLO export links each image into ``images/`` beside its ``labels/`` file, a VOC
export into ``JPEGImages/`` beside ``Annotations/``; Label Studio tasks point at the images through its local
file serving.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import select

from verilabel.datasets.service import dataset_row, find_field
from verilabel.datasets.views import View
from verilabel.errors import ConfigError
from verilabel.formats import coco, label_studio, voc, yolo
from verilabel.labels import Detection, Label
from verilabel.store import Store
from verilabel.store.convert import row_label
from verilabel.store.schema import LabelRow, SampleRow, SampleTagRow

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
    next_step: str = ""  # what the user does with the export, when the format needs more than opening a file

    def to_json(self) -> dict[str, Any]:
        out = {"format": self.format, "images": self.images, "labels": self.labels, "path": self.path}
        return out | ({"next_step": self.next_step} if self.next_step else {})


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
    exporter = EXPORTERS.get(fmt)
    if exporter is None:
        raise ConfigError("format", f"{fmt!r}: choose one of {', '.join(EXPORTERS)}")
    out_dir = Path(out).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    classes, samples = _samples_with_labels(store, dataset, field, view)
    return exporter(classes, samples, out_dir)


def _size(sample: ExportItem) -> tuple[int, int]:
    if sample.width is None or sample.height is None:
        raise ConfigError(
            "dataset",
            f"sample {sample.sample_id} ({sample.path}) has no known size (unreadable at import); "
            "fix or remove the file, then re-add the folder",
        )
    return sample.width, sample.height


def _common_folder(items: list[ExportItem]) -> str:
    return os.path.commonpath([os.path.dirname(s.path) for s in items]) if items else ""


def _export_coco(classes: list[str], samples: Iterator[ExportItem], out: Path) -> ExportSummary:
    items = list(samples)
    root = _common_folder(items)
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
        labels = _detections(sample, "YOLO")
        segments = any(lb.polygon or lb.mask for lb in labels)
        name = _link_image(sample, out / "images")
        lines = [yolo.label_line(lb, index[lb.label], segments=segments) for lb in labels]
        (out / "labels" / Path(name).with_suffix(".txt")).write_text("".join(line + "\n" for line in lines))
        images += 1
        labels_written += len(lines)
    data = {"path": str(out), "train": "images", "val": "images", "names": dict(enumerate(classes))}
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return ExportSummary("yolo", images, labels_written, str(out / "data.yaml"))


def _export_voc(classes: list[str], samples: Iterator[ExportItem], out: Path) -> ExportSummary:
    """Pascal VOC layout: ``Annotations/``, ``JPEGImages/`` (links), ``ImageSets/Main/all.txt``, ``labels.txt``."""
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    stems = []
    labels_written = 0
    for sample in samples:
        labels = _detections(sample, "VOC")
        width, height = _size(sample)
        name = _link_image(sample, out / "JPEGImages")
        stem = Path(name).stem
        (out / "Annotations" / f"{stem}.xml").write_bytes(voc.build_xml(name, width, height, labels, path=sample.path))
        stems.append(stem)
        labels_written += len(labels)
    (out / "ImageSets" / "Main" / "all.txt").write_text("".join(f"{stem}\n" for stem in stems))
    (out / "labels.txt").write_text("".join(f"{name}\n" for name in classes))
    return ExportSummary("voc", len(stems), labels_written, str(out / "Annotations"))


def _detections(sample: ExportItem, fmt: str) -> list[Detection]:
    labels = [label for label in sample.labels if isinstance(label, Detection)]
    if len(labels) != len(sample.labels):
        raise ConfigError("format", f"{fmt} export takes detection fields; this one holds classifications")
    return labels


def _link_image(sample: ExportItem, folder: Path) -> str:
    """Link the sample's image into ``folder`` under a name unique in the export (its sample id first)."""
    name = f"{sample.sample_id}_{Path(sample.path).name}"
    link = folder / name
    if not link.exists() and not link.is_symlink():
        link.symlink_to(sample.path)
    return name


def _export_label_studio(classes: list[str], samples: Iterator[ExportItem], out: Path) -> ExportSummary:
    """``tasks.json`` (one task per image, its labels as a prediction: pre-annotations to correct) and the
    ``label_config.xml`` of a project that shows them."""
    items = list(samples)
    folder = _common_folder(items)
    # Label Studio serves files below its document root only through a "Local files" storage, whose path must be
    # a subfolder of that root: the root is the images' common folder's parent.
    root = os.path.dirname(folder)
    tasks: list[dict[str, Any]] = []
    kinds: set[str] = set()
    labels_written = 0
    for sample in items:
        width, height = _size(sample)
        results = label_studio.to_results(sample.labels, width, height)
        kinds |= {r["type"] for r in results}
        scores = [label.confidence for label in sample.labels if label.confidence is not None]
        prediction: dict[str, Any] = {"model_version": "verilabel", "result": results}
        if scores:
            prediction["score"] = round(sum(scores) / len(scores), 4)
        relative = quote(os.path.relpath(sample.path, root))
        tasks.append(
            {
                "data": {label_studio.IMAGE: f"/data/local-files/?d={relative}"},
                "meta": {"verilabel_sample_id": sample.sample_id, "tags": sample.tags},
                "predictions": [prediction] if results else [],
            }
        )
        labels_written += len(results)
    (out / "tasks.json").write_text(json.dumps(tasks))
    (out / "label_config.xml").write_text(label_studio.label_config(classes, kinds or {"rectanglelabels"}))
    next_step = (
        f"run Label Studio with LOCAL_FILES_SERVING_ENABLED=true and LOCAL_FILES_DOCUMENT_ROOT={root}, create a "
        f"project with {out / 'label_config.xml'}, add a Local files storage for {folder}, then import "
        f"{out / 'tasks.json'}"
    )
    return ExportSummary("label-studio", len(tasks), labels_written, str(out / "tasks.json"), next_step)


Exporter = Callable[[list[str], Iterator[ExportItem], Path], ExportSummary]
EXPORTERS: dict[str, Exporter] = {
    "coco": _export_coco,
    "yolo": _export_yolo,
    "voc": _export_voc,
    "label-studio": _export_label_studio,
}
