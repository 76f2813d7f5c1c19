"""Datasets: create them from folders, COCO, YOLO or Pascal VOC; list, describe and query their samples.

Media files are never copied: a sample is an absolute path plus what the header says (width, height).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from verilabel.datasets import media
from verilabel.datasets.images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, iter_image_files, probe, too_large
from verilabel.datasets.views import View
from verilabel.errors import ConflictError, DatasetImportError, NotFoundError, SampleError
from verilabel.review import counts
from verilabel.store import Store
from verilabel.store.bulk import insert_rows
from verilabel.store.db import lock_row
from verilabel.store.schema import DatasetRow, LabelFieldRow, LabelRow, RunRow, SampleRow, SampleTagRow

if TYPE_CHECKING:  # labels and formats bring numpy: the read commands of the CLI do without them
    from verilabel.formats.label_studio import ExportedTask
    from verilabel.labels import Label

    ImportItem = tuple[Path, int | None, int | None, Sequence[Label], Sequence[str]]  # path, size, labels, tags

Progress = Callable[[int, int], None]
_CHUNK = 1000


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class DatasetInfo:
    id: int
    name: str
    created_at: datetime
    samples: int
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "samples": self.samples,
            "fields": self.fields,
            "tags": self.tags,
        }


@dataclass
class Sample:
    id: int
    path: str
    width: int | None
    height: int | None
    tags: list[str]
    metadata: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "width": self.width,
            "height": self.height,
            "tags": self.tags,
            "metadata": self.metadata,
        }


@dataclass
class ImportSummary:
    dataset: str
    added: int = 0
    already_present: int = 0
    labels: int = 0
    unreadable: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # regions of a kind the format import does not take
    unmatched: list[str] = field(default_factory=list)  # labelled items that match no sample of the dataset

    def to_json(self) -> dict[str, Any]:
        out = {
            "dataset": self.dataset,
            "added": self.added,
            "already_present": self.already_present,
            "labels": self.labels,
            "unreadable": self.unreadable,
            "skipped": self.skipped,
        }
        return out | ({"unmatched": self.unmatched} if self.unmatched else {})


def dataset_row(session: Session, name: str, *, lock: bool = False) -> DatasetRow:
    """The dataset named ``name``. ``lock`` makes writers that add samples, fields or tags take turns on it until
    the transaction ends (SQLite's writers always do; on PostgreSQL two imports would otherwise both pass their
    "not there yet" checks and collide on a unique constraint)."""
    row = session.scalar(select(DatasetRow).where(DatasetRow.name == name))
    if row is None:
        known = session.scalars(select(DatasetRow.name).order_by(DatasetRow.name).limit(20)).all()
        hint = f"known datasets: {', '.join(known)}" if known else "no dataset exists yet"
        raise NotFoundError(
            f"no dataset named {name!r} ({hint}). Create it with `verilabel dataset create {name} --from-dir DIR`."
        )
    if lock and lock_row(session, row) is None:
        raise NotFoundError(f"dataset {name!r} was just deleted")
    return row


def create_dataset(store: Store, name: str, *, exist_ok: bool = False) -> DatasetInfo:
    """An empty dataset. To create one with its images or labels in one step, pass ``create=True`` to
    ``add_images`` or an ``import_*`` function instead: a failed import then leaves no empty dataset behind."""
    with store.write() as session:
        _dataset_for_import(session, name, create=True, exist_ok=exist_ok)
    return dataset_info(store, name)


def _dataset_for_import(session: Session, name: str, *, create: bool, exist_ok: bool = False) -> DatasetRow:
    """The dataset that an import writes to, locked; with ``create``, made in the import's own transaction."""
    name = name.strip()
    if not name:
        raise ConflictError("a dataset needs a non-empty name")
    existing = session.scalar(select(DatasetRow).where(DatasetRow.name == name))
    if existing is None and create:
        row = DatasetRow(name=name, created_at=now())
        session.add(row)
        session.flush()
        return row
    if existing is not None and create and not exist_ok:
        raise ConflictError(
            f"dataset {name!r} already exists. Add images to it with "
            f"`verilabel dataset add {name} --from-dir DIR`, or pick another name."
        )
    return dataset_row(session, name, lock=True)  # writers that add samples, fields or tags take turns


def dataset_exists(store: Store, name: str) -> bool:
    with store.read() as session:
        return session.scalar(select(DatasetRow.id).where(DatasetRow.name == name.strip())) is not None


def delete_dataset(store: Store, name: str) -> None:
    with store.write() as session:
        session.execute(delete(DatasetRow).where(DatasetRow.id == dataset_row(session, name).id))


def _probe_all(paths: Sequence[str], summary: ImportSummary, progress: Progress | None) -> list[dict[str, Any]]:
    from concurrent.futures import ThreadPoolExecutor

    def one(path: str) -> dict[str, Any]:
        try:
            header = probe(path)
        except SampleError as exc:
            # Kept as a sample: the file may be fixed later, and a run records the failure against it.
            summary.unreadable.append(str(path))
            return {"path": str(path), "width": None, "height": None, "meta": {"import_error": str(exc)}}
        meta = {}
        if header.width * header.height > DEFAULT_MAX_PIXELS:
            # Its size is known (the header is read), but runs will not decode it unless their limit is raised.
            summary.unreadable.append(str(path))
            meta["import_error"] = too_large(path, header.width, header.height)
        return {"path": str(path), "width": header.width, "height": header.height, "meta": meta}

    rows = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        for i, row in enumerate(pool.map(one, paths), 1):
            rows.append(row)
            if progress and (i % 200 == 0 or i == len(paths)):
                progress(i, len(paths))
    return rows


def _insert_samples(session: Session, dataset_id: int, rows: Iterable[dict[str, Any]]) -> None:
    stamp = now()
    batch = [dict(r, dataset_id=dataset_id, created_at=stamp) for r in rows]
    for start in range(0, len(batch), _CHUNK):
        session.execute(insert(SampleRow), batch[start : start + _CHUNK])


def _existing_paths(session: Session, dataset_id: int) -> set[str]:
    return set(session.scalars(select(SampleRow.path).where(SampleRow.dataset_id == dataset_id)))


def add_images(
    store: Store, name: str, directory: str | Path, *, create: bool = False, progress: Progress | None = None
) -> ImportSummary:
    """Add every image under ``directory`` (recursively; a folder, or a bucket prefix such as s3://bucket/dir)
    that the dataset does not have yet. ``create``: the dataset is new, and made in the same transaction as its
    samples (nothing is left behind if this fails)."""
    if media.is_remote(str(directory)):
        found = media.list_images(str(directory), IMAGE_EXTENSIONS)
    else:
        root = Path(directory).expanduser().resolve()
        if not root.is_dir():
            raise DatasetImportError(f"not a folder: {root}. Pass the folder that holds the images.")
        found = [str(path) for path in iter_image_files(root)]
    return _add_found(store, name, found, create=create, progress=progress)


def add_listed(
    store: Store, name: str, list_file: str | Path, *, create: bool = False, progress: Progress | None = None
) -> ImportSummary:
    """Add the images a text file lists, one per line: local paths (relative to the file's folder) or URIs
    (``https://``, ``s3://``...); blank lines and ``#`` comments are skipped."""
    listing = Path(list_file).expanduser().resolve()
    try:
        lines = listing.read_text().splitlines()
    except OSError as exc:
        raise DatasetImportError(f"cannot read the list {listing}: {exc.strerror or exc}") from None
    found = []
    for line in (line.strip() for line in lines):
        if line and not line.startswith("#"):
            found.append(line if media.is_remote(line) else str((listing.parent / line).resolve()))
    if not found:
        raise DatasetImportError(f"{listing} lists no images: write one path or URI per line")
    return _add_found(store, name, list(dict.fromkeys(found)), create=create, progress=progress)


def _add_found(store: Store, name: str, found: list[str], *, create: bool, progress: Progress | None) -> ImportSummary:
    summary = ImportSummary(name)
    existing: set[str] = set()
    if not create:
        with store.read() as session:
            existing = _existing_paths(session, dataset_row(session, name).id)
    new_paths = []
    for path in found:
        if path in existing:
            summary.already_present += 1
        else:
            new_paths.append(path)
    rows = _probe_all(new_paths, summary, progress)
    with store.write() as session:
        dataset_id = _dataset_for_import(session, name, create=create).id
        # Checked again inside the write transaction: another process may have added some meanwhile.
        current = _existing_paths(session, dataset_id)
        fresh = [r for r in rows if r["path"] not in current]
        summary.already_present += len(rows) - len(fresh)
        _insert_samples(session, dataset_id, fresh)
        summary.added = len(fresh)
    return summary


def find_field(session: Session, dataset_id: int, field_name: str) -> LabelFieldRow | None:
    return session.scalar(
        select(LabelFieldRow).where(LabelFieldRow.dataset_id == dataset_id, LabelFieldRow.name == field_name)
    )


def ensure_field(
    session: Session, dataset_id: int, field_name: str, kind: str, run_id: str | None = None
) -> LabelFieldRow:
    row = find_field(session, dataset_id, field_name)
    if row is None:
        row = LabelFieldRow(dataset_id=dataset_id, name=field_name, kind=kind, run_id=run_id, created_at=now())
        session.add(row)
        session.flush()
    return row


def _import_labelled(
    store: Store, name: str, field_name: str, items: Sequence[ImportItem], *, create: bool = False
) -> ImportSummary:
    """Add samples with their labels and sample tags, in ONE transaction (with ``create``, the dataset too);
    samples already in the dataset get their labels added to the field. Image files that do not exist are
    added too, and reported as unreadable."""
    from verilabel.store.convert import label_columns

    summary = ImportSummary(name)
    summary.unreadable = [str(item[0]) for item in items if not item[0].exists()]
    with store.write() as session:
        dataset_id = _dataset_for_import(session, name, create=create).id
        if find_field(session, dataset_id, field_name) is not None:
            raise ConflictError(
                f"dataset {name!r} already has a label field {field_name!r}; import into "
                "another field with --field NAME"
            )
        field_row = ensure_field(session, dataset_id, field_name, "detection")
        ids = dict(
            session.execute(select(SampleRow.path, SampleRow.id).where(SampleRow.dataset_id == dataset_id)).all()
        )
        new = [(p, w, h) for p, w, h, _, _ in items if str(p) not in ids]
        _insert_samples(session, dataset_id, ({"path": str(p), "width": w, "height": h, "meta": {}} for p, w, h in new))
        summary.added, summary.already_present = len(new), len(items) - len(new)
        ids = dict(
            session.execute(select(SampleRow.path, SampleRow.id).where(SampleRow.dataset_id == dataset_id)).all()
        )
        rows = [
            dict(label_columns(label), sample_id=ids[str(path)], field_id=field_row.id)
            for path, _, _, labels, _ in items
            for label in labels
        ]
        for start in range(0, len(rows), _CHUNK):
            insert_rows(session, LabelRow, rows[start : start + _CHUNK])
        summary.labels = len(rows)
        _add_tags(session, dataset_id, {(ids[str(path)], tag) for path, _, _, _, tags in items for tag in tags})
    return summary


def _images_root(images_dir: str | Path) -> Path:
    root = Path(images_dir).expanduser().resolve()
    if not root.is_dir():
        raise DatasetImportError(f"images folder not found: {root}: pass --images the folder that holds them")
    return root


def import_coco(
    store: Store,
    name: str,
    coco_file: str | Path,
    images_dir: str | Path,
    *,
    field_name: str = "ground_truth",
    create: bool = False,
) -> ImportSummary:
    root = _images_root(images_dir)
    from verilabel.formats import coco

    images = coco.read_coco(Path(coco_file))
    items = [((root / i.file_name).resolve(), i.width, i.height, i.labels, i.tags) for i in images]
    return _import_labelled(store, name, field_name, items, create=create)


def import_label_studio(
    store: Store,
    name: str,
    export_file: str | Path,
    images_dir: str | Path,
    *,
    field_name: str = "ground_truth",
    create: bool = False,
) -> ImportSummary:
    """A Label Studio project's JSON export: each task's image (under ``images_dir`` where
    ``label_studio.image_candidates`` says, else anywhere below it by its unique file name) with the boxes,
    polygons, brushes (masks), keypoints and choices of its chosen annotation, who made them and when as label
    attributes. Regions of other types (ellipses, text...) are counted in ``skipped``. A task whose image cannot
    be found is an error naming it: nothing is imported."""
    root = _images_root(images_dir)
    from verilabel.formats import label_studio

    tasks = label_studio.read_export(Path(export_file))
    items: list[ImportItem] = []
    missing: list[str] = []
    unreadable: list[str] = []
    skipped: dict[str, int] = {}
    by_name: dict[str, list[Path]] | None = None  # every image under the folder by file name, built on need
    for task in tasks:
        candidates = label_studio.image_candidates(task.image, root)
        path = next((c.resolve() for c in candidates if c.is_file()), None)
        if path is None:  # anywhere below the folder, where one file only has that name
            if by_name is None:
                by_name = {}
                for found in iter_image_files(root):
                    by_name.setdefault(found.name, []).append(found)
            matches = {m.resolve() for c in candidates for m in by_name.get(c.name, [])}
            path = matches.pop() if len(matches) == 1 else None
        if path is None:
            missing.append(task.image)
            continue
        width, height = task.width, task.height
        if width is None or height is None:  # a task with no region records no size
            try:
                header = probe(path)
                width, height = header.width, header.height
            except SampleError:
                unreadable.append(str(path))  # kept as a sample, as every import keeps them
        items.append((path, width, height, task.labels, ()))
        for kind, count in task.skipped.items():
            skipped[kind] = skipped.get(kind, 0) + count
    if missing:
        raise DatasetImportError(
            f"{len(missing)} task images not found under {root}, e.g. {', '.join(missing[:3])}: pass --images the "
            "folder that holds them (for local files, Label Studio's LOCAL_FILES_DOCUMENT_ROOT)"
        )
    summary = _import_labelled(store, name, field_name, items, create=create)
    summary.unreadable += unreadable
    summary.skipped = skipped
    return summary


def import_label_studio_tasks(store: Store, name: str, field_name: str, tasks: Sequence[ExportedTask]) -> ImportSummary:
    """The labels of a Label Studio project's tasks (its JSON export, read by ``label_studio.read_export``) into a
    new field of an existing dataset, each task matched to its sample by its image reference
    (``label_studio.SampleMatcher``). Tasks that match no sample are listed in ``unmatched``; nothing is added
    to the dataset but labels."""
    from verilabel.formats import label_studio

    with store.read() as session:
        dataset_id = dataset_row(session, name).id
        rows = session.execute(
            select(SampleRow.id, SampleRow.path, SampleRow.width, SampleRow.height).where(
                SampleRow.dataset_id == dataset_id
            )
        ).all()
    matcher = label_studio.SampleMatcher({row.id: row.path for row in rows})
    samples = {row.id: row for row in rows}
    items: list[ImportItem] = []
    unmatched: list[str] = []
    skipped: dict[str, int] = {}
    for task in tasks:
        for kind, count in task.skipped.items():
            skipped[kind] = skipped.get(kind, 0) + count
        if not task.labels:
            continue
        sample = matcher.match(task.image)
        if sample is None:
            unmatched.append(task.image)
            continue
        row = samples[sample]
        items.append((Path(row.path), row.width, row.height, task.labels, ()))
    summary = _import_labelled(store, name, field_name, items)
    summary.skipped, summary.unmatched = skipped, unmatched
    return summary


def import_yolo(
    store: Store,
    name: str,
    directory: str | Path,
    *,
    field_name: str = "ground_truth",
    create: bool = False,
    progress: Progress | None = None,
) -> ImportSummary:
    root = Path(directory).expanduser().resolve()
    if not root.is_dir():
        raise DatasetImportError(f"not a folder: {root}. Pass the YOLO dataset root (with data.yaml).")
    from verilabel.formats import yolo

    names = yolo.read_class_names(root)
    images = [p for p in iter_image_files(root) if "images" in p.parts]
    if not images:
        raise DatasetImportError(f"no images under {root}/images (the YOLO layout is images/ beside labels/)")
    summary = ImportSummary(name)
    probed = _probe_all([str(p) for p in images], summary, progress)
    items: list[ImportItem] = [
        (Path(r["path"]), r["width"], r["height"], list(yolo.read_labels(Path(r["path"]), names)), ()) for r in probed
    ]
    result = _import_labelled(store, name, field_name, items, create=create)
    result.unreadable = summary.unreadable
    return result


def import_voc(
    store: Store, name: str, directory: str | Path, *, field_name: str = "ground_truth", create: bool = False
) -> ImportSummary:
    """A Pascal VOC folder: ``Annotations/*.xml`` beside ``JPEGImages/`` (the devkit layout), or XML files beside
    their images (LabelImg's). An image is looked for in ``JPEGImages/``, then beside its XML file, then at the
    path the file records; image sizes come from the XML files."""
    root = Path(directory).expanduser().resolve()
    if not root.is_dir():
        raise DatasetImportError(f"not a folder: {root}. Pass the VOC root (with Annotations/ and JPEGImages/).")
    from verilabel.formats import voc

    devkit = (root / "Annotations").is_dir()
    annotations = root / "Annotations" if devkit else root
    files = sorted(annotations.rglob("*.xml"))
    if not files:
        raise DatasetImportError(f"no .xml annotation files in {annotations}")
    items: list[ImportItem] = []
    for file in files:
        image = voc.read_xml(file)
        candidates = [root / "JPEGImages" / image.filename, file.parent / image.filename]
        if not devkit:
            candidates.reverse()
        if image.path:
            candidates.append(Path(image.path))
        path = next((c for c in candidates if c.exists()), candidates[0]).resolve()
        items.append((path, image.width, image.height, list(image.labels), ()))
    return _import_labelled(store, name, field_name, items, create=create)


def import_cvat(
    store: Store,
    name: str,
    xml_file: str | Path,
    images_dir: str | Path,
    *,
    field_name: str = "ground_truth",
    create: bool = False,
) -> ImportSummary:
    """A CVAT for images 1.1 XML file: each ``<image>`` (its name relative to ``images_dir``) with its boxes,
    polygons, masks, points, skeletons and tags; polylines, cuboids and ellipses are counted in ``skipped``. An
    image not found is an error naming it: nothing is imported."""
    root = _images_root(images_dir)
    from verilabel.formats import cvat_xml

    annotations = cvat_xml.read(Path(xml_file))
    items: list[ImportItem] = [
        ((root / image.name).resolve(), image.width, image.height, image.labels, ()) for image in annotations.images
    ]
    missing = [image.name for image, item in zip(annotations.images, items, strict=True) if not item[0].is_file()]
    if missing:
        raise DatasetImportError(
            f"{len(missing)} images of {xml_file} not found under {root}, e.g. {', '.join(missing[:3])}: pass "
            "--images the folder the <image name=...> values are relative to (the task's data, as uploaded to CVAT)"
        )
    summary = _import_labelled(store, name, field_name, items, create=create)
    summary.skipped = annotations.skipped
    return summary


def import_fiftyone(
    store: Store,
    name: str,
    fiftyone_dataset: str,
    fiftyone_field: str,
    *,
    field_name: str = "ground_truth",
    create: bool = False,
) -> ImportSummary:
    """A FiftyOne dataset's samples (their files where they are, their tags) with the labels of one of its fields;
    see ``verilabel.formats.fiftyone``."""
    from verilabel.formats import fiftyone

    read = fiftyone.read(fiftyone_dataset, fiftyone_field)
    items: list[ImportItem] = []
    for sample in read.samples:
        path, width, height = Path(sample.path), sample.width, sample.height
        if width is None or height is None:
            try:
                header = probe(path)
                width, height = header.width, header.height
            except SampleError:
                pass  # kept, reported unreadable
        items.append((path, width, height, sample.labels, tuple(sample.tags)))
    summary = _import_labelled(store, name, field_name, items, create=create)
    summary.skipped = read.skipped
    return summary


def _info(session: Session, row: DatasetRow) -> DatasetInfo:
    samples = session.scalar(select(func.count()).select_from(SampleRow).where(SampleRow.dataset_id == row.id))
    fields = {}
    for f in session.scalars(
        select(LabelFieldRow).where(LabelFieldRow.dataset_id == row.id).order_by(LabelFieldRow.name)
    ):
        count = session.scalar(select(func.count()).select_from(LabelRow).where(LabelRow.field_id == f.id))
        fields[f.name] = {"kind": f.kind, "labels": count, "run": f.run_id} | _pending_run(session, f.run_id)
    tags = dict(
        session.execute(
            select(SampleTagRow.tag, func.count())
            .join(SampleRow, SampleRow.id == SampleTagRow.sample_id)
            .where(SampleRow.dataset_id == row.id)
            .group_by(SampleTagRow.tag)
        ).all()
    )
    return DatasetInfo(row.id, row.name, row.created_at, samples or 0, fields, tags)


def _pending_run(session: Session, run_id: str | None) -> dict[str, Any]:
    """For a field whose run is not approved yet: that run's name, status and labels (which are not in the
    field until approval), so that an empty field is not mistaken for a run that found nothing."""
    if run_id is None:
        return {}
    run = session.get(RunRow, run_id)
    if run is None or run.status == "approved":
        return {}
    by_state = counts.summary(session, run_id)
    review, promoted = by_state.get(counts.REVIEW, (0, 0))[0], by_state.get(counts.PROMOTED, (0, 0))[0]
    return {"run_name": run.name, "run_status": run.status, "run_labels": review + promoted, "promoted": promoted}


def dataset_info(store: Store, name: str) -> DatasetInfo:
    with store.read() as session:
        return _info(session, dataset_row(session, name))


def list_datasets(store: Store) -> list[DatasetInfo]:
    with store.read() as session:
        return [_info(session, row) for row in session.scalars(select(DatasetRow).order_by(DatasetRow.name))]


def count_samples(store: Store, name: str, view: View | None = None) -> int:
    with store.read() as session:
        dataset_id = dataset_row(session, name).id
        ids = (view or View()).sample_ids_query(dataset_id).order_by(None).subquery()
        return int(session.scalar(select(func.count()).select_from(ids)) or 0)


def field_labels(store: Store, name: str, field_name: str, sample_ids: Sequence[int]) -> dict[int, list[Label]]:
    """The labels of a field on these samples (a page of a grid), per sample."""
    from verilabel.store.convert import row_label

    out: dict[int, list[Label]] = {sample_id: [] for sample_id in sample_ids}
    with store.read() as session:
        dataset_id = dataset_row(session, name).id
        field = find_field(session, dataset_id, field_name)
        if field is None:
            raise NotFoundError(f"dataset {name!r} has no label field {field_name!r}")
        rows = session.scalars(
            select(LabelRow)
            .where(LabelRow.field_id == field.id, LabelRow.sample_id.in_(list(sample_ids)))
            .order_by(LabelRow.sample_id, LabelRow.id)
        )
        for row in rows:
            out[row.sample_id].append(row_label(row))
    return out


def sample_ids(store: Store, name: str, view: View | None = None) -> list[int]:
    with store.read() as session:
        dataset_id = dataset_row(session, name).id
        return list(session.scalars((view or View()).sample_ids_query(dataset_id)))


def samples(store: Store, name: str, view: View | None = None, *, limit: int = 100, offset: int = 0) -> list[Sample]:
    with store.read() as session:
        dataset_id = dataset_row(session, name).id
        ids = (view or View()).sample_ids_query(dataset_id).limit(limit).offset(offset).subquery()
        rows = session.scalars(select(SampleRow).where(SampleRow.id.in_(select(ids.c.id))).order_by(SampleRow.id)).all()
        tags: dict[int, list[str]] = {}
        for sample_id, tag in session.execute(
            select(SampleTagRow.sample_id, SampleTagRow.tag).where(SampleTagRow.sample_id.in_([r.id for r in rows]))
        ):
            tags.setdefault(sample_id, []).append(tag)
        return [Sample(r.id, r.path, r.width, r.height, sorted(tags.get(r.id, [])), dict(r.meta or {})) for r in rows]


def tag_samples(
    store: Store, name: str, tags: Sequence[str], view: View | None = None, *, actor: str | None = None
) -> int:
    """Add tags to the samples of a view; returns how many (sample, tag) pairs were new."""
    from verilabel import history

    with store.write() as session:
        dataset_id = dataset_row(session, name, lock=True).id  # two taggers must not both add one pair
        ids = list(session.scalars((view or View()).sample_ids_query(dataset_id)))
        added = _add_tags(session, dataset_id, {(i, tag) for tag in tags for i in ids})
        history.record(session, "tag-samples", actor=actor, dataset_id=dataset_id, tags=list(tags), pairs=added)
        return added


def _add_tags(session: Session, dataset_id: int, pairs: set[tuple[int, str]]) -> int:
    """Insert the (sample id, tag) pairs the dataset does not have yet; returns how many were new."""
    added = 0
    for tag in sorted({tag for _, tag in pairs}):
        have = set(
            session.scalars(
                select(SampleTagRow.sample_id)
                .join(SampleRow, SampleRow.id == SampleTagRow.sample_id)
                .where(SampleRow.dataset_id == dataset_id, SampleTagRow.tag == tag)
            )
        )
        rows = [{"sample_id": i, "tag": tag} for i, t in sorted(pairs) if t == tag and i not in have]
        for start in range(0, len(rows), _CHUNK):
            session.execute(insert(SampleTagRow), rows[start : start + _CHUNK])
        added += len(rows)
    return added


def labels_of(store: Store, name: str, field_name: str, sample_id: int) -> list[Label]:
    from verilabel.store.convert import row_label

    with store.read() as session:
        dataset_id = dataset_row(session, name).id
        rows = session.scalars(
            select(LabelRow)
            .join(LabelFieldRow, LabelFieldRow.id == LabelRow.field_id)
            .where(
                LabelFieldRow.dataset_id == dataset_id,
                LabelFieldRow.name == field_name,
                LabelRow.sample_id == sample_id,
            )
            .order_by(LabelRow.id)
        ).all()
        return [row_label(r) for r in rows]


def samples_by_id(store: Store, ids: Sequence[int]) -> dict[int, Sample]:
    """These samples (ids that do not exist are left out), with their tags."""
    if not ids:
        return {}
    with store.read() as session:
        rows = session.scalars(select(SampleRow).where(SampleRow.id.in_(set(ids)))).all()
        tags: dict[int, list[str]] = {}
        for sample_id, tag in session.execute(
            select(SampleTagRow.sample_id, SampleTagRow.tag).where(SampleTagRow.sample_id.in_(set(ids)))
        ):
            tags.setdefault(sample_id, []).append(tag)
        return {
            r.id: Sample(r.id, r.path, r.width, r.height, sorted(tags.get(r.id, [])), dict(r.meta or {})) for r in rows
        }


def sample_paths(store: Store, ids: Sequence[int]) -> dict[int, str]:
    """The file path of each of these samples (ids that do not exist are left out)."""
    if not ids:
        return {}
    with store.read() as session:
        return dict(session.execute(select(SampleRow.id, SampleRow.path).where(SampleRow.id.in_(set(ids)))).all())


def read_id_file(path: str | Path) -> list[int]:
    """Sample ids from a file: a JSON list, or one id per line."""
    text = Path(path).read_text()
    try:
        values = json.loads(text) if text.lstrip().startswith("[") else text.split()
        return [int(v) for v in values]
    except (ValueError, TypeError):
        raise DatasetImportError(f"{path}: expected sample ids (a JSON list or one integer per line)") from None


def untag_samples(
    store: Store, name: str, tags: Sequence[str], view: View | None = None, *, actor: str | None = None
) -> int:
    """Remove tags from the samples of a view; returns how many (sample, tag) pairs were removed."""
    from verilabel import history

    with store.write() as session:
        dataset_id = dataset_row(session, name).id
        ids = (view or View()).sample_ids_query(dataset_id).order_by(None)
        result = session.execute(
            delete(SampleTagRow).where(SampleTagRow.tag.in_(list(tags)), SampleTagRow.sample_id.in_(ids))
        )
        removed = int(result.rowcount)  # type: ignore[attr-defined]
        history.record(session, "untag-samples", actor=actor, dataset_id=dataset_id, tags=list(tags), pairs=removed)
        return removed
