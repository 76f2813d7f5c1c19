"""Embeddings: 2-D maps of a dataset's samples, or of a run's label patches, where look-alikes sit together (the
app's embeddings view: a cluster of wrong labels is found, lassoed and undone or tagged at once).

``compute_embeddings`` embeds each sample (or each label's crop, with a margin) with a model that has ``embed``
(CLIP, SigLIP, OpenCLIP, the ImageNet classifiers' pooled features), a batch per transaction: an interrupted
computation loses at most its open batch and the next call goes on where it stopped. Once every point has its
vector, the set is projected to 2-D (PCA, or UMAP when installed) and the map is ready. Vectors are kept (float16),
so a new projection needs no model.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select, update

from verilabel.datasets.images import crop_box, decode_sized
from verilabel.datasets.service import dataset_row, now
from verilabel.errors import ConfigError, NotFoundError
from verilabel.models import registry
from verilabel.models.catalogue import CatalogueEntry
from verilabel.models.interface import ImageItem, LoadRequest
from verilabel.store import Store
from verilabel.store.schema import (
    EmbeddingPointRow,
    EmbeddingSetRow,
    LabelFieldRow,
    LabelRow,
    RunLabelRow,
    SampleRow,
)

METHODS = ("pca", "umap")
PAGE = 512
PATCH_MARGIN = 0.15  # of the box on each side, as the app's patches view crops
DECODE_THREADS = 4
# Adapters whose models have ``embed``: the zero-shot image-text classifiers and the ImageNet classifiers.
EMBEDDING_LOADERS = (
    "verilabel.models.adapters.hf_clip:",
    "verilabel.models.adapters.open_clip:",
    "verilabel.models.adapters.torchvision_classification:",
    "verilabel.models.offline.efficientnet_lite:",
)


@dataclass
class EmbeddingSummary:
    key: str
    embedded: int = 0
    skipped: int = 0  # embedded by an earlier, interrupted call
    projected: int = 0  # points on the map (0: not projected, e.g. nothing could be embedded)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, why)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "embedded": self.embedded,
            "skipped": self.skipped,
            "projected": self.projected,
            "failed": [{"path": p, "error": e} for p, e in self.failed],
        }


@dataclass(frozen=True)
class EmbeddingInfo:
    key: str
    kind: str  # samples | patches
    run: str | None  # the run whose labels were embedded (patches)
    model: str
    method: str
    points: int
    ready: bool  # projected: every point has its place on the map
    created_at: datetime
    error: str | None = None  # why the last computation stopped

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "run": self.run,
            "model": self.model,
            "method": self.method,
            "points": self.points,
            "ready": self.ready,
            "created_at": self.created_at.isoformat(),
            "error": self.error,
        }


def embeds(entry: CatalogueEntry) -> bool:
    """Whether the catalogue model has ``embed`` (its adapter is one of those that embed)."""
    return entry.loader.startswith(EMBEDDING_LOADERS)


def embedding_models() -> list[str]:
    return [e.name for e in registry.catalogue() if embeds(e)]


def compute_embeddings(
    store: Store,
    dataset: str,
    model: str,
    *,
    key: str | None = None,
    patches: str | None = None,
    method: str = "pca",
    weights: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    overwrite: bool = False,
    on_batch: Callable[[int], None] | None = None,
    executor: str = "local",
    ray: RayOptions | None = None,
) -> EmbeddingSummary:
    """Embed the samples of ``dataset`` (or, with ``patches=RUN``, the crops of that run's labels) under ``key``,
    then project them to 2-D. Resumable: points embedded by an earlier call under the same key are kept. An error
    that stops it is kept on the set (``EmbeddingInfo.error``) until the next call. ``executor="ray"`` embeds
    shards of the points as Ray tasks across a cluster (``verilabel.datasets.embeddings_ray``)."""
    if executor not in ("local", "ray"):
        raise ConfigError("executor", f"{executor!r}: use local or ray")
    if executor == "local" and ray is not None:
        raise ConfigError("executor", "Ray options (address, workers, GPUs per worker) need --executor ray")
    job = prepare_embeddings(
        store, dataset, model, key=key, patches=patches, method=method, weights=weights, overwrite=overwrite
    )
    try:
        task = ShardTask(store.url, job, model, weights, device, batch_size)
        if executor == "ray":
            from verilabel.datasets.embeddings_ray import embed_on_ray

            summary = embed_on_ray(store, task, ray or RayOptions(), on_batch)
        else:
            summary = embed_shard(task, on_batch=on_batch, store=store)
        summary.projected = project(store, job.set_id, method)
    except Exception as exc:
        _record_error(store, job.set_id, str(exc) or type(exc).__name__)
        raise
    return summary


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide ``compute_embeddings(executor="ray")`` runs (as ``run create --executor ray``)."""

    address: str | None = None  # auto, ray://..., or none: the cluster started here (or a one-machine Ray)
    workers: int = 1  # shards embedded at once
    gpus_per_worker: float | None = None  # none: 1 where the cluster has GPUs, else 0
    cpus_per_worker: float = 1.0


@dataclass(frozen=True)
class ShardTask:
    """What one process needs to embed a shard of a set's points: plain values, sent to Ray workers as they are."""

    database_url: str
    job: EmbeddingJob
    model: str
    weights: str | None
    device: str
    batch_size: int | None
    shard: int = 0
    shards: int = 1


def embed_shard(
    task: ShardTask, *, on_batch: Callable[[int], None] | None = None, store: Store | None = None
) -> EmbeddingSummary:
    """Embed the points of ``task.shard`` (samples whose id is ``shard`` mod ``shards``) not embedded yet: each
    batch commits its points in one transaction, so a process killed mid-shard loses its open batch only and the
    shard done again skips what is there."""
    if store is None:  # a Ray worker: its own connection, for this shard
        opened = Store.open(task.database_url)
        try:
            return embed_shard(task, on_batch=on_batch, store=opened)
        finally:
            opened.dispose()
    job = task.job
    built = registry.load(
        registry.resolve(task.model, task.weights), LoadRequest(weights=task.weights, device=task.device)
    )
    embed = getattr(built, "embed", None)
    if embed is None:
        raise ConfigError("model", f"{task.model!r} does not embed images; use one of {', '.join(embedding_models())}")
    summary = EmbeddingSummary(job.key)
    size = task.batch_size or built.spec.batch_size
    split = (task.shard, task.shards)
    items = _patch_items(store, job.run_id, split) if job.run_id else _sample_items(store, job.dataset_id, split)
    with ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="verilabel-embed") as pool:
        for page in _pages(items, size):
            todo = _not_done(store, job.set_id, page, summary)
            if not todo:
                continue
            decoded = list(pool.map(lambda item: _decode(item, built.spec.input_size), todo))
            ready = [(item, image) for item, image in zip(todo, decoded, strict=True) if isinstance(image, ImageItem)]
            summary.failed += [
                (item.path, why) for item, why in zip(todo, decoded, strict=True) if isinstance(why, str)
            ]
            if ready:
                vectors = embed([image for _, image in ready])
                _write_points(store, job.set_id, [item for item, _ in ready], vectors)
                summary.embedded += len(ready)
            if on_batch is not None:
                on_batch(len(todo))
    return summary


@dataclass(frozen=True)
class EmbeddingJob:
    dataset_id: int
    set_id: int
    key: str
    run_id: str | None


def prepare_embeddings(
    store: Store,
    dataset: str,
    model: str,
    *,
    key: str | None = None,
    patches: str | None = None,
    method: str = "pca",
    weights: str | None = None,
    overwrite: bool = False,
) -> EmbeddingJob:
    """Check what ``compute_embeddings`` is asked (nothing heavy is loaded) and open its set: a new one, or the one
    an earlier call left under ``key``."""
    if method not in METHODS:
        raise ConfigError("method", f"{method!r}: use one of {', '.join(METHODS)}")
    if method == "umap":
        _umap()  # missing library: say so before the model loads
    with store.read() as session:
        try:
            dataset_id = dataset_row(session, dataset).id
        except NotFoundError as exc:
            raise ConfigError("dataset", str(exc)) from None
        run_id, run_name = _patches_run(session, dataset, dataset_id, patches)
    key = key if key is not None else (f"{run_name}-patches" if run_name else "samples")
    if not key.strip() or key != key.strip() or "/" in key:
        raise ConfigError("key", f"{key!r}: name the embeddings with letters, digits, '-' or '_'")
    ref = registry.resolve(model, weights)
    if ref.stages or (ref.entry is not None and not embeds(ref.entry)):
        raise ConfigError("model", f"{model!r} does not embed images; use one of {', '.join(embedding_models())}")
    registry.check_obtainable(ref, weights)
    set_id = _open_set(store, dataset_id, key, "patches" if run_id else "samples", run_id, model, method, overwrite)
    return EmbeddingJob(dataset_id, set_id, key, run_id)


def start_embeddings(
    store: Store,
    dataset: str,
    model: str,
    *,
    key: str | None = None,
    patches: str | None = None,
    method: str = "pca",
    overwrite: bool = False,
) -> EmbeddingInfo:
    """``compute_embeddings`` in a background process (the app's "compute" button): checked and opened here, so
    that a wrong setting is refused at once; ``list_embeddings`` then follows it (points, ready, error)."""
    from verilabel.runs.service import logs_dir

    job = prepare_embeddings(store, dataset, model, key=key, patches=patches, method=method, overwrite=overwrite)
    command = [sys.executable, "-m", "verilabel", "dataset", "embed", dataset, "--model", model, "--key", job.key]
    command += ["--method", method] + (["--patches", job.run_id] if job.run_id else [])
    with open(logs_dir() / f"embed-{job.set_id}.log", "ab") as log:
        subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "VERILABEL_DATABASE_URL": store.url},
            start_new_session=True,
            close_fds=True,
        )
    with store.read() as session:
        return _one_set(session, dataset, job.key)[1]


def _record_error(store: Store, set_id: int, error: str) -> None:
    with store.write() as session:
        session.execute(update(EmbeddingSetRow).where(EmbeddingSetRow.id == set_id).values(error=error[:2000]))


@dataclass(frozen=True)
class _Item:
    sample_id: int
    path: str
    label_id: str = ""  # the embedded label (patches); "" for a whole sample, as stored
    box: tuple[float, float, float, float] | None = None  # relative x, y, w, h


def _patches_run(session: Any, dataset: str, dataset_id: int, patches: str | None) -> tuple[str | None, str | None]:
    if patches is None:
        return None, None
    from verilabel.runs.service import run_row

    try:
        run = run_row(session, patches, dataset)
    except NotFoundError as exc:
        raise ConfigError("patches", str(exc)) from None
    if run.dataset_id != dataset_id:
        raise ConfigError("patches", f"run {patches!r} labels another dataset")
    if run.task == "classification":
        raise ConfigError("patches", f"run {run.name!r} labels whole images (classification): embed the samples")
    return run.id, run.name


def _open_set(
    store: Store,
    dataset_id: int,
    key: str,
    kind: str,
    run_id: str | None,
    model: str,
    method: str,
    overwrite: bool,
) -> int:
    """The set to fill: a new one, or the one an earlier call left under ``key`` when it embeds the same things
    with the same model (``overwrite``: always a new one)."""
    with store.write() as session:
        found = session.scalars(
            select(EmbeddingSetRow).where(EmbeddingSetRow.dataset_id == dataset_id, EmbeddingSetRow.key == key)
        ).first()
        if found is not None:
            same = (found.kind, found.run_id, found.model) == (kind, run_id, model)
            if same and not overwrite:
                if found.method != method:
                    found.method, found.projected_at = method, None
                found.error = None
                return found.id
            if not overwrite:
                raise ConfigError(
                    "key",
                    f"embeddings {key!r} already exist ({found.kind}, model {found.model}): pass --overwrite to "
                    "compute them again, or choose another --key",
                )
            session.delete(found)
            session.flush()
        row = EmbeddingSetRow(
            dataset_id=dataset_id, key=key, kind=kind, run_id=run_id, model=model, method=method, created_at=now()
        )
        session.add(row)
        session.flush()
        return row.id


def _sample_items(store: Store, dataset_id: int, split: tuple[int, int] = (0, 1)) -> Iterator[_Item]:
    shard, shards = split
    last = -1
    while True:
        with store.read() as session:
            page = session.execute(
                select(SampleRow.id, SampleRow.path)
                .where(SampleRow.dataset_id == dataset_id, SampleRow.id > last, SampleRow.id % shards == shard)
                .order_by(SampleRow.id)
                .limit(PAGE)
            ).all()
        if not page:
            return
        yield from (_Item(sample_id, path) for sample_id, path in page)
        last = page[-1][0]


def _patch_items(store: Store, run_id: str, split: tuple[int, int] = (0, 1)) -> Iterator[_Item]:
    """The run's boxed labels in sample order (a sample's crops come from one decode)."""
    shard, shards = split
    last: tuple[int, str] = (-1, "")
    while True:
        with store.read() as session:
            page = session.execute(
                select(
                    RunLabelRow.sample_id,
                    RunLabelRow.id,
                    SampleRow.path,
                    RunLabelRow.x,
                    RunLabelRow.y,
                    RunLabelRow.w,
                    RunLabelRow.h,
                )
                .join(SampleRow, SampleRow.id == RunLabelRow.sample_id)
                .where(
                    RunLabelRow.run_id == run_id,
                    RunLabelRow.x.is_not(None),
                    RunLabelRow.sample_id % shards == shard,
                    (RunLabelRow.sample_id > last[0])
                    | ((RunLabelRow.sample_id == last[0]) & (RunLabelRow.id > last[1])),
                )
                .order_by(RunLabelRow.sample_id, RunLabelRow.id)
                .limit(PAGE)
            ).all()
        if not page:
            return
        for sample_id, label_id, path, x, y, w, h in page:
            yield _Item(sample_id, path, label_id, (x or 0.0, y or 0.0, w or 0.0, h or 0.0))
        last = (page[-1][0], page[-1][1])


def _pages(items: Iterator[_Item], size: int) -> Iterator[list[_Item]]:
    page: list[_Item] = []
    for item in items:
        page.append(item)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def _not_done(store: Store, set_id: int, page: Sequence[_Item], summary: EmbeddingSummary) -> list[_Item]:
    sample_ids = sorted({item.sample_id for item in page})
    with store.read() as session:
        done = set(
            session.execute(
                select(EmbeddingPointRow.sample_id, EmbeddingPointRow.label_id).where(
                    EmbeddingPointRow.embedding_id == set_id, EmbeddingPointRow.sample_id.in_(sample_ids)
                )
            ).all()
        )
    todo = [item for item in page if (item.sample_id, item.label_id) not in done]
    summary.skipped += len(page) - len(todo)
    return todo


def _decode(item: _Item, input_size: int | None) -> ImageItem | str:
    """The sample's image, or its crop for a label; the reason it cannot be read otherwise."""
    try:
        array, full = decode_sized(item.path, draft_size=None if item.box else input_size)
    except Exception as exc:  # unreadable, missing, too large: the reason names the problem
        return str(exc) or type(exc).__name__
    if item.box is not None:
        height, width = array.shape[:2]
        left, top, right, bottom = crop_box(item.box, width, height, PATCH_MARGIN)
        array = np.ascontiguousarray(array[top:bottom, left:right])
    return ImageItem(item.sample_id, item.path, array, full_size=None if item.box else full)


def _write_points(store: Store, set_id: int, items: Sequence[_Item], vectors: np.ndarray) -> None:
    rows = [
        {
            "embedding_id": set_id,
            "sample_id": item.sample_id,
            "label_id": item.label_id,  # "" for a sample: unique (set, sample, label) holds for both kinds
            "vector": np.asarray(vector, dtype=np.float16).tobytes(),
        }
        for item, vector in zip(items, vectors, strict=True)
    ]
    with store.write() as session:
        sample_ids = {row["sample_id"] for row in rows}
        present = set(session.scalars(select(SampleRow.id).where(SampleRow.id.in_(sample_ids))))
        done = set(  # a rival computation of the same key got there first (the unique index stops a closer race)
            session.execute(
                select(EmbeddingPointRow.sample_id, EmbeddingPointRow.label_id).where(
                    EmbeddingPointRow.embedding_id == set_id, EmbeddingPointRow.sample_id.in_(sample_ids)
                )
            ).all()
        )
        rows = [  # a sample deleted meanwhile: no point
            row for row in rows if row["sample_id"] in present and (row["sample_id"], row["label_id"]) not in done
        ]
        if rows:
            session.execute(insert(EmbeddingPointRow), rows)
        session.execute(update(EmbeddingSetRow).where(EmbeddingSetRow.id == set_id).values(projected_at=None))


def project(store: Store, set_id: int, method: str) -> int:
    """Place every point of the set on the 2-D map (unless it already is); returns the number of points."""
    with store.read() as session:
        row = session.get(EmbeddingSetRow, set_id)
        if row is None:
            raise NotFoundError("those embeddings were just deleted")
        if row.projected_at is not None:
            return int(session.scalar(select(func.count()).where(EmbeddingPointRow.embedding_id == set_id)) or 0)
        found = session.execute(
            select(EmbeddingPointRow.id, EmbeddingPointRow.vector)
            .where(EmbeddingPointRow.embedding_id == set_id)
            .order_by(EmbeddingPointRow.id)
        ).all()
    if not found:
        return 0
    vectors = np.stack([np.frombuffer(vector, dtype=np.float16) for _, vector in found]).astype(np.float32)
    places = _umap_2d(vectors) if method == "umap" else pca_2d(vectors)
    with store.write() as session:
        for start in range(0, len(found), 5000):
            session.execute(
                update(EmbeddingPointRow),
                [
                    {"id": point_id, "x": float(x), "y": float(y)}
                    for (point_id, _), (x, y) in zip(
                        found[start : start + 5000], places[start : start + 5000], strict=True
                    )
                ],
            )
        session.execute(update(EmbeddingSetRow).where(EmbeddingSetRow.id == set_id).values(projected_at=now()))
    return len(found)


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """The two principal components (signs fixed: each axis's largest loading positive, so a recomputation draws
    the same map)."""
    centred = vectors - vectors.mean(axis=0)
    if len(vectors) < 2:
        return np.zeros((len(vectors), 2), dtype=np.float32)
    # the D x D covariance, not an SVD of the N x D data: memory and time stay flat in N
    values, axes = np.linalg.eigh(centred.T @ centred)
    top = axes[:, np.argsort(values)[::-1][:2]]
    top *= np.sign(top[np.abs(top).argmax(axis=0), range(top.shape[1])])
    places = centred @ top
    if places.shape[1] < 2:  # one-dimensional vectors
        places = np.pad(places, ((0, 0), (0, 2 - places.shape[1])))
    return np.asarray(places, dtype=np.float32)


def _umap() -> Any:
    try:
        import umap
    except ImportError:
        raise ConfigError("method", "umap needs the umap-learn package: pip install 'verilabel[umap]'") from None
    return umap


def _umap_2d(vectors: np.ndarray) -> np.ndarray:
    if len(vectors) < 4:  # UMAP needs a few neighbours; a handful of points is mapped as well by PCA
        return pca_2d(vectors)
    import warnings

    reducer = _umap().UMAP(n_components=2, n_neighbors=min(15, len(vectors) - 1), metric="cosine", random_state=0)
    with warnings.catch_warnings():  # "n_jobs overridden by setting random_state": the seed is what we want
        warnings.simplefilter("ignore", UserWarning)
        return np.asarray(reducer.fit_transform(vectors), dtype=np.float32)


# --- reading -------------------------------------------------------------------------------------------------


def list_embeddings(store: Store, dataset: str, *, run: str | None = None) -> list[EmbeddingInfo]:
    """The dataset's embedding sets (only those of ``run``'s patches when given), oldest first."""
    from verilabel.runs.service import run_row

    with store.read() as session:
        dataset_id = dataset_row(session, dataset).id
        run_id = run_row(session, run, dataset).id if run is not None else None
        return [info for _, info in _sets(session, dataset_id, run_id=run_id)]


def _sets(
    session: Any, dataset_id: int, *, run_id: str | None = None, key: str | None = None
) -> list[tuple[EmbeddingSetRow, EmbeddingInfo]]:
    """The dataset's sets (of one run, or the one under ``key``), each with what a listing says of it."""
    from verilabel.store.schema import RunRow

    query = (
        select(EmbeddingSetRow, RunRow.name, func.count(EmbeddingPointRow.id))
        .outerjoin(RunRow, RunRow.id == EmbeddingSetRow.run_id)
        .outerjoin(EmbeddingPointRow, EmbeddingPointRow.embedding_id == EmbeddingSetRow.id)
        .where(EmbeddingSetRow.dataset_id == dataset_id)
        .group_by(EmbeddingSetRow.id, RunRow.name)
        .order_by(EmbeddingSetRow.created_at, EmbeddingSetRow.id)
    )
    if run_id is not None:
        query = query.where(EmbeddingSetRow.run_id == run_id)
    if key is not None:
        query = query.where(EmbeddingSetRow.key == key)
    return [
        (
            row,
            EmbeddingInfo(
                key=row.key,
                kind=row.kind,
                run=run_name,
                model=row.model,
                method=row.method,
                points=int(count),
                ready=row.projected_at is not None,
                created_at=row.created_at,
                error=row.error,
            ),
        )
        for row, run_name, count in session.execute(query).all()
    ]


def _one_set(session: Any, dataset: str, key: str) -> tuple[EmbeddingSetRow, EmbeddingInfo]:
    found = _sets(session, dataset_row(session, dataset).id, key=key)
    if not found:
        raise NotFoundError(f"dataset {dataset!r} has no embeddings {key!r}")
    return found[0]


def delete_embeddings(store: Store, dataset: str, key: str) -> None:
    with store.write() as session:
        dataset_id = dataset_row(session, dataset).id
        deleted = session.execute(
            delete(EmbeddingSetRow).where(EmbeddingSetRow.dataset_id == dataset_id, EmbeddingSetRow.key == key)
        )
        if not deleted.rowcount:  # type: ignore[attr-defined]
            raise NotFoundError(f"dataset {dataset!r} has no embeddings {key!r}")


@dataclass
class EmbeddingMap:
    """The points of a set, column by column (what the app draws): for patches, each label's class, confidence
    and whether it is promoted; for samples, the class of each sample's most confident label in ``field``."""

    info: EmbeddingInfo
    sample_ids: list[int]
    label_ids: list[str] | None
    x: list[float]
    y: list[float]
    class_names: list[str]
    classes: list[int]  # index into class_names; -1: none
    confidence: list[float | None] | None
    promoted: list[bool] | None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.info.to_json(),
            "sample_ids": self.sample_ids,
            "label_ids": self.label_ids,
            "x": self.x,
            "y": self.y,
            "class_names": self.class_names,
            "classes": self.classes,
            "confidence": self.confidence,
            "promoted": self.promoted,
        }


def embedding_map(store: Store, dataset: str, key: str, *, field: str | None = None) -> EmbeddingMap:
    """The projected points of the set ``key`` (none until it is projected)."""
    with store.read() as session:
        row, info = _one_set(session, dataset, key)
        set_id, run_id = row.id, row.run_id
        if not info.ready:  # being computed (or resumed): earlier places would show beside points not placed yet
            patches = info.kind == "patches"
            return EmbeddingMap(info, [], [] if patches else None, [], [], [], [], [] if patches else None, None)
        if info.kind == "patches":
            patch_rows = session.execute(
                select(
                    EmbeddingPointRow.sample_id,
                    EmbeddingPointRow.label_id,
                    EmbeddingPointRow.x,
                    EmbeddingPointRow.y,
                    RunLabelRow.label,
                    RunLabelRow.confidence,
                    RunLabelRow.review_state,
                )
                .join(  # labels gone (deleted, or approved into the dataset): off the map
                    RunLabelRow,
                    (RunLabelRow.run_id == run_id) & (RunLabelRow.id == EmbeddingPointRow.label_id),
                )
                .where(EmbeddingPointRow.embedding_id == set_id, EmbeddingPointRow.x.is_not(None))
                .order_by(EmbeddingPointRow.id)
            ).all()
            names = sorted({row.label for row in patch_rows})
            index = {name: i for i, name in enumerate(names)}
            return EmbeddingMap(
                info,
                [row.sample_id for row in patch_rows],
                [str(row.label_id) for row in patch_rows],
                *_unit_square([(row.x, row.y) for row in patch_rows]),
                names,
                [index[row.label] for row in patch_rows],
                [row.confidence for row in patch_rows],
                [row.review_state == "promoted" for row in patch_rows],
            )
        sample_rows = session.execute(
            select(EmbeddingPointRow.sample_id, EmbeddingPointRow.x, EmbeddingPointRow.y)
            .where(EmbeddingPointRow.embedding_id == set_id, EmbeddingPointRow.x.is_not(None))
            .order_by(EmbeddingPointRow.id)
        ).all()
        best = _best_classes(session, row.dataset_id, dataset, field) if field else {}
    names = sorted(set(best.values()))
    index = {name: i for i, name in enumerate(names)}
    return EmbeddingMap(
        info,
        [row.sample_id for row in sample_rows],
        None,
        *_unit_square([(row.x, row.y) for row in sample_rows]),
        names,
        [index[best[row.sample_id]] if row.sample_id in best else -1 for row in sample_rows],
        None,
        None,
    )


def _unit_square(places: Sequence[tuple[float | None, float | None]]) -> tuple[list[float], list[float]]:
    """The map scaled into [0, 1] on its longer side, centred on the shorter one, to 5 decimals (a compact JSON)."""
    if not places:
        return [], []
    xy = np.array(places, dtype=np.float64)
    low, span = xy.min(axis=0), xy.max(axis=0) - xy.min(axis=0)
    scale = float(span.max()) or 1.0
    xy = (xy - low + (scale - span) / 2) / scale
    return [round(float(v), 5) for v in xy[:, 0]], [round(float(v), 5) for v in xy[:, 1]]


def _best_classes(session: Any, dataset_id: int, dataset: str, field: str) -> dict[int, str]:
    """Per sample, the class of its most confident label in the dataset field ``field``."""
    field_id = session.scalar(
        select(LabelFieldRow.id).where(LabelFieldRow.dataset_id == dataset_id, LabelFieldRow.name == field)
    )
    if field_id is None:
        raise NotFoundError(f"dataset {dataset!r} has no label field {field!r}")
    best: dict[int, tuple[float, str]] = {}
    for sample_id, label, confidence in session.execute(
        select(LabelRow.sample_id, LabelRow.label, LabelRow.confidence).where(LabelRow.field_id == field_id)
    ):
        score = -1.0 if confidence is None else confidence
        if sample_id not in best or score > best[sample_id][0]:
            best[sample_id] = (score, label)
    return {sample_id: label for sample_id, (_, label) in best.items()}
