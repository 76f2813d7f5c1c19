"""Export a label field (approved or any) of a dataset, or of a view of it, to COCO, YOLO, Pascal VOC, Label
Studio or CVAT for images 1.1.

Media are never copied: COCO ``file_name`` values are relative to the samples' common folder (recorded as
``info.images_root``); a YOLO export links each image into ``images/`` beside its ``labels/`` file, a VOC
export into ``JPEGImages/`` beside ``Annotations/``; Label Studio tasks point at the images through its local
file serving.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from verilabel.datasets import media
from verilabel.datasets.service import dataset_row, find_field
from verilabel.datasets.views import View
from verilabel.errors import ConfigError, ConflictError
from verilabel.formats import coco, cvat_xml, label_studio, voc, yolo
from verilabel.labels import Detection, Label
from verilabel.store import Store
from verilabel.store.convert import row_label
from verilabel.store.schema import DatasetRow, LabelFieldRow, LabelRow, RunLabelRow, RunRow, SampleRow, SampleTagRow

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


@dataclass(frozen=True)
class ExportOptions:
    with_scores: bool = False  # YOLO: a trailing confidence column (ultralytics' training refuses it)


@dataclass(frozen=True)
class ExportSource:
    """What an exporter reads: the field's classes, and the samples of the view, streamed a page at a time
    (memory stays flat at a million labels)."""

    store: Store
    dataset_id: int
    field_id: int
    view: View
    classes: list[str]
    run_id: str | None = None  # the labels of this run under review (all of them), instead of the field's

    def _pages(self) -> Iterator[list[int]]:
        """The view's sample ids, a page at a time (keyset pagination: each page is one indexed query)."""
        last = -1
        while True:
            with self.store.read() as session:
                page = list(
                    session.scalars(self.view.sample_ids_query(self.dataset_id).where(SampleRow.id > last).limit(_PAGE))
                )
            if not page:
                return
            yield page
            last = page[-1]

    def paths(self) -> Iterator[str]:
        for page in self._pages():
            with self.store.read() as session:
                yield from session.scalars(select(SampleRow.path).where(SampleRow.id.in_(page)).order_by(SampleRow.id))

    def common_folder(self) -> str:
        """The deepest folder (or bucket prefix: ``s3://bucket/dir``) holding every sample (one pass over the
        paths, nothing kept); empty when they share none (local files and objects mixed)."""
        common: str | None = None
        for path in self.paths():
            folder = _parent(path)
            common = folder if common is None else _common(common, folder)
        return common or ""

    def sized_samples(self) -> Iterator[tuple[ExportItem, int, int]]:
        """The samples with their width and height. A sample unreadable at import has no size: without labels it
        is left out (nothing to export, and the formats need a size); with labels it is an error naming it."""
        for sample in self.samples():
            if sample.width is None or sample.height is None:
                if sample.labels:
                    raise ConfigError(
                        "dataset",
                        f"sample {sample.sample_id} ({sample.path}) has labels but no known size (unreadable at "
                        "import); fix or remove the file, then re-add the folder",
                    )
                continue
            yield sample, sample.width, sample.height

    def samples(self) -> Iterator[ExportItem]:
        for page in self._pages():
            with self.store.read() as session:
                rows = session.scalars(select(SampleRow).where(SampleRow.id.in_(page)).order_by(SampleRow.id))
                by_sample: dict[int, list[Label]] = {}
                table: Any = RunLabelRow if self.run_id is not None else LabelRow
                owner = (
                    RunLabelRow.run_id == self.run_id if self.run_id is not None else LabelRow.field_id == self.field_id
                )
                for row in session.scalars(select(table).where(owner, table.sample_id.in_(page)).order_by(table.id)):
                    by_sample.setdefault(row.sample_id, []).append(row_label(row))
                tags: dict[int, list[str]] = {}
                for sample_id, tag in session.execute(
                    select(SampleTagRow.sample_id, SampleTagRow.tag).where(SampleTagRow.sample_id.in_(page))
                ):
                    tags.setdefault(sample_id, []).append(tag)
                items = [
                    ExportItem(r.id, r.path, r.width, r.height, by_sample.get(r.id, []), sorted(tags.get(r.id, [])))
                    for r in rows
                ]
            yield from items


def field_source(store: Store, dataset: str, field: str, view: View | None = None) -> ExportSource:
    """The labels of a dataset's field (a field whose run is still under review is refused, with the fix)."""
    with store.read() as session:
        dataset_id = dataset_row(session, dataset).id
        field_row = find_field(session, dataset_id, field)
        if field_row is None:
            raise ConfigError("field", f"dataset {dataset!r} has no label field {field!r}")
        _check_approved(session, field_row)
        classes = sorted(
            set(session.scalars(select(LabelRow.label).where(LabelRow.field_id == field_row.id).distinct()))
        )
        return ExportSource(store, dataset_id, field_row.id, view or View(), classes)


def run_source(store: Store, run: str) -> ExportSource:
    """The labels of a run (by id, name or field, as ``DATASET/NAME`` where ambiguous): under review, all of
    them (review and promoted); approved, its field's."""
    from verilabel.runs.service import run_row

    with store.read() as session:
        row = run_row(session, run)
        dataset = session.get(DatasetRow, row.dataset_id)
        assert dataset is not None
        if row.status == "approved":
            return field_source(store, dataset.name, row.field)
        if row.status != "in_review":
            raise ConflictError(f"run {row.name!r} is {row.status}: it has no labels to read until it is in review")
        field_row = find_field(session, row.dataset_id, row.field)
        assert field_row is not None  # a run reserves its field when it is created
        classes = sorted(set(session.scalars(select(RunLabelRow.label).where(RunLabelRow.run_id == row.id).distinct())))
        return ExportSource(store, row.dataset_id, field_row.id, View(), classes, run_id=row.id)


def _check_approved(session: Session, field: LabelFieldRow) -> None:
    """A field whose run is not approved holds no labels yet: exporting it would write files without labels."""
    run = session.get(RunRow, field.run_id) if field.run_id else None
    if run is None or run.status == "approved":
        return
    if run.status == "in_review":
        fix = (
            f"promote the good ones and approve the run (`verilabel review approve {run.name} --yes`): the field "
            "then holds them and exports"
        )
    else:
        fix = f"the run is {run.status}; finish it (`verilabel run resume {run.name}`), review and approve it first"
    raise ConflictError(
        f"field {field.name!r} holds no labels yet: its labels are in run {run.name!r}. To export, {fix}."
    )


def export_field(
    store: Store,
    dataset: str,
    field: str,
    fmt: str,
    out: str | Path,
    *,
    view: View | None = None,
    with_scores: bool = False,
    overwrite: bool = False,
) -> ExportSummary:
    """Write ``field`` of the dataset (or of a view of it) in format ``fmt`` under ``out``. ``with_scores``: YOLO
    label lines end with the confidence (prediction format; for training, leave it off). ``fiftyone``: ``out`` is
    the name of the FiftyOne dataset to create (see ``export_to_fiftyone``)."""
    if fmt == "fiftyone":
        return export_to_fiftyone(store, dataset, field, str(out), view=view, overwrite=overwrite)
    exporter = EXPORTERS.get(fmt)
    if exporter is None:
        raise ConfigError("format", f"{fmt!r}: choose one of {', '.join([*EXPORTERS, 'fiftyone'])}")
    if overwrite:
        raise ConfigError("overwrite", "--overwrite is for FiftyOne datasets; files of other formats are replaced")
    if with_scores and fmt != "yolo":
        raise ConfigError("with_scores", f"--with-scores is for YOLO exports; {fmt} exports keep scores anyway")
    source = field_source(store, dataset, field, view)
    out_dir = Path(out).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    return exporter(source, out_dir, ExportOptions(with_scores=with_scores))


def export_to_fiftyone(
    store: Store, dataset: str, field: str, name: str, *, view: View | None = None, overwrite: bool = False
) -> ExportSummary:
    """``field`` of the dataset (or of a view) as a new persistent FiftyOne dataset ``name`` (in the FiftyOne
    database of this environment; ``overwrite`` replaces one of that name). See ``verilabel.formats.fiftyone``."""
    from verilabel.formats import fiftyone

    source = field_source(store, dataset, field, view)
    images, labels = fiftyone.export(source.samples(), field, name, overwrite=overwrite)
    return ExportSummary("fiftyone", images, labels, name, f"in Python: fiftyone.load_dataset({name!r})")


@contextlib.contextmanager
def _whole_file(path: Path) -> Iterator[IO[str]]:
    """A file written beside ``path`` and renamed to it once complete: a failed export leaves neither a truncated
    file nor its part behind."""
    partial = path.with_name(path.name + ".part")
    try:
        with partial.open("w") as file:
            yield file
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


class _JsonArray:
    """Writes a JSON array one element at a time."""

    def __init__(self, file: IO[str]) -> None:
        self.file, self.count = file, 0
        file.write("[")

    def add(self, value: Any) -> None:
        self.file.write(("," if self.count else "") + json.dumps(value))
        self.count += 1

    def close(self) -> None:
        self.file.write("]")


def _export_coco(source: ExportSource, out: Path, options: ExportOptions) -> ExportSummary:
    """Streamed: images go to the file as they come, annotations to a spool file appended at the end."""
    root = source.common_folder()
    category_ids = {name: index for index, name in enumerate(source.classes, 1)}
    path = out / "labels.json"
    with _whole_file(path) as document, tempfile.TemporaryFile("w+") as spool:
        info = {"description": "exported by verilabel", "images_root": root}
        categories = [{"id": i, "name": name} for name, i in category_ids.items()]
        document.write(f'{{"info": {json.dumps(info)}, "categories": {json.dumps(categories)}, "images": ')
        images, annotations = _JsonArray(document), _JsonArray(spool)
        for sample, width, height in source.sized_samples():
            image_id = images.count + 1
            images.add(coco.image_record(image_id, relative_to(sample.path, root), width, height, sample.tags))
            for label in sample.labels:
                if not isinstance(label, Detection):
                    raise ConfigError("format", "COCO export takes detection fields; this one holds classifications")
                annotations.add(
                    coco.detection_to_annotation(
                        label,
                        annotation_id=annotations.count + 1,
                        image_id=image_id,
                        category_id=category_ids[label.label],
                        width=width,
                        height=height,
                    )
                )
        images.close()
        annotations.close()
        document.write(', "annotations": ')
        spool.seek(0)
        shutil.copyfileobj(spool, document)
        document.write("}")
    return ExportSummary("coco", images.count, annotations.count, str(path))


def _export_yolo(source: ExportSource, out: Path, options: ExportOptions) -> ExportSummary:
    """The layout ultralytics trains on: ``images/`` (links) beside ``labels/``, and ``data.yaml``. Label lines
    carry no score unless ``with_scores`` (ultralytics counts an image whose lines have 6 columns as corrupt)."""
    import yaml

    classes = source.classes
    index = {name: i for i, name in enumerate(classes)}
    (out / "images").mkdir(exist_ok=True)
    (out / "labels").mkdir(exist_ok=True)
    images = labels_written = 0
    for sample in source.samples():
        labels = _detections(sample, "YOLO")
        segments = any(lb.polygon or lb.mask for lb in labels)
        name = _link_image(sample, out / "images")
        lines = [
            yolo.label_line(lb, index[lb.label], segments=segments, with_score=options.with_scores) for lb in labels
        ]
        (out / "labels" / Path(name).with_suffix(".txt")).write_text("".join(line + "\n" for line in lines))
        images += 1
        labels_written += len(lines)
    data = {"path": str(out), "train": "images", "val": "images", "names": dict(enumerate(classes))}
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return ExportSummary("yolo", images, labels_written, str(out / "data.yaml"))


def _export_voc(source: ExportSource, out: Path, options: ExportOptions) -> ExportSummary:
    """Pascal VOC layout: ``Annotations/``, ``JPEGImages/`` (links), ``ImageSets/Main/all.txt``, ``labels.txt``."""
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    stems = []
    labels_written = 0
    for sample, width, height in source.sized_samples():
        labels = _detections(sample, "VOC")
        name = _link_image(sample, out / "JPEGImages")
        stem = Path(name).stem
        (out / "Annotations" / f"{stem}.xml").write_bytes(voc.build_xml(name, width, height, labels, path=sample.path))
        stems.append(stem)
        labels_written += len(labels)
    (out / "ImageSets" / "Main" / "all.txt").write_text("".join(f"{stem}\n" for stem in stems))
    (out / "labels.txt").write_text("".join(f"{name}\n" for name in source.classes))
    return ExportSummary("voc", len(stems), labels_written, str(out / "Annotations"))


def _parent(path: str) -> str:
    if media.is_remote(path):
        scheme, _, rest = path.partition("://")
        return f"{scheme}://{posixpath.dirname(rest)}"
    return os.path.dirname(path)


def _common(a: str, b: str) -> str:
    """The common folder of two folders; a URI's keeps its ``scheme://`` (``os.path`` would fold the slashes)."""
    scheme_a, sep_a, rest_a = a.partition("://")
    scheme_b, sep_b, rest_b = b.partition("://")
    if bool(sep_a) != bool(sep_b) or (sep_a and scheme_a != scheme_b):
        return ""
    if not sep_a:
        return os.path.commonpath([a, b])
    return f"{scheme_a}://{posixpath.commonpath([rest_a, rest_b])}"


def relative_to(path: str, root: str) -> str:
    """``path`` relative to the export's common folder ``root`` (a URI stays whole when there is none)."""
    if not root:
        return path
    if media.is_remote(path):
        return posixpath.relpath(path.partition("://")[2], root.partition("://")[2])
    return os.path.relpath(path, root)


def _detections(sample: ExportItem, fmt: str) -> list[Detection]:
    labels = [label for label in sample.labels if isinstance(label, Detection)]
    if len(labels) != len(sample.labels):
        raise ConfigError("format", f"{fmt} export takes detection fields; this one holds classifications")
    return labels


def _link_image(sample: ExportItem, folder: Path) -> str:
    """Link the sample's image into ``folder`` under a name unique in the export (its sample id first); an image
    in object storage is downloaded there instead (training tools read local files)."""
    name = f"{sample.sample_id}_{PurePosixPath(sample.path).name}"
    link = folder / name
    if media.is_remote(sample.path):
        if not link.exists():
            link.write_bytes(media.read_bytes(sample.path))
    elif not link.exists() and not link.is_symlink():
        link.symlink_to(sample.path)
    return name


def _export_label_studio(source: ExportSource, out: Path, options: ExportOptions) -> ExportSummary:
    """``tasks.json`` (one task per image, its labels as a prediction: pre-annotations to correct), streamed, and
    the ``label_config.xml`` of a project that shows them."""
    folder = source.common_folder()
    # Label Studio serves files below its document root only through a "Local files" storage, whose path must be
    # a subfolder of that root: the root is the images' common folder's parent.
    root = os.path.dirname(folder)
    kinds: set[str] = set()
    points: list[str] = []  # keypoint names, in the order met
    labels_written = 0
    with _whole_file(out / "tasks.json") as file:
        tasks = _JsonArray(file)
        for sample, width, height in source.sized_samples():
            results = label_studio.to_results(sample.labels, width, height)
            kinds |= {r["type"] for r in results}
            for region in results:
                if region["type"] == "keypointlabels" and region["value"]["keypointlabels"][0] not in points:
                    points.append(region["value"]["keypointlabels"][0])
            scores = [label.confidence for label in sample.labels if label.confidence is not None]
            prediction: dict[str, Any] = {"model_version": "verilabel", "result": results}
            if scores:
                prediction["score"] = round(sum(scores) / len(scores), 4)
            tasks.add(
                {
                    "data": {label_studio.IMAGE: _label_studio_image(sample.path, root)},
                    "meta": {"verilabel_sample_id": sample.sample_id, "tags": sample.tags},
                    "predictions": [prediction] if results else [],
                }
            )
            labels_written += len(sample.labels)
        tasks.close()
    config = label_studio.label_config(source.classes, kinds or {"rectanglelabels"}, points)
    (out / "label_config.xml").write_text(config)
    next_step = (
        f"run Label Studio with LOCAL_FILES_SERVING_ENABLED=true and LOCAL_FILES_DOCUMENT_ROOT={root}, create a "
        f"project with {out / 'label_config.xml'}, add a Local files storage for {folder}, then import "
        f"{out / 'tasks.json'}"
    )
    return ExportSummary("label-studio", tasks.count, labels_written, str(out / "tasks.json"), next_step)


def _label_studio_image(path: str, root: str) -> str:
    """Where Label Studio finds a task's image: its local-files URL, or an object's URI as it is (a project with
    that bucket as cloud storage resolves it)."""
    if media.is_remote(path):
        return path
    return f"/data/local-files/?d={quote(os.path.relpath(path, root))}"


def _export_cvat(source: ExportSource, out: Path, options: ExportOptions) -> ExportSummary:
    """``annotations.xml`` in CVAT for images 1.1, streamed; image names relative to the samples' common folder
    (CVAT matches them to a task's files by name)."""
    root = source.common_folder()
    counted = {"labels": 0}

    def images() -> Iterator[tuple[str, int, int, list[Label]]]:
        for sample, width, height in source.sized_samples():
            counted["labels"] += len(sample.labels)
            yield relative_to(sample.path, root), width, height, sample.labels

    path = out / "annotations.xml"
    with _whole_file(path) as file:
        count = cvat_xml.write(file, images(), source.classes, "verilabel export")
    next_step = f"in CVAT: a task with the images of {root}, then Actions > Upload annotations > CVAT 1.1: {path}"
    return ExportSummary("cvat", count, counted["labels"], str(path), next_step)


Exporter = Callable[[ExportSource, Path, ExportOptions], ExportSummary]
EXPORTERS: dict[str, Exporter] = {
    "coco": _export_coco,
    "yolo": _export_yolo,
    "voc": _export_voc,
    "label-studio": _export_label_studio,
    "cvat": _export_cvat,
}
