"""Runs: create (validate, reserve the field, enqueue samples, start workers), watch, cancel, resume.

Statuses: ``queued`` -> ``generating`` -> ``in_review`` (or ``error`` / ``cancelled``); ``approved`` comes
from review. A run whose workers all died (killed, machine lost) still reads ``generating`` in the store;
``RunInfo.stalled`` tells it apart (dead pid on this host, or no heartbeat for ``STALE_AFTER``) and such a
run can be resumed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, literal, select, update
from sqlalchemy.orm import Session

from verilabel import history
from verilabel.datasets.service import dataset_row, ensure_field
from verilabel.errors import ConflictError, NotFoundError
from verilabel.review import counts
from verilabel.review.counts import PROMOTED, REVIEW
from verilabel.runs import progress
from verilabel.settings import Settings
from verilabel.store import Store
from verilabel.store.db import lock_row
from verilabel.store.schema import (
    DatasetRow,
    LabelFieldRow,
    RunClassCountRow,
    RunLabelRow,
    RunRow,
    RunSampleRow,
    RunWorkerRow,
)

if TYPE_CHECKING:  # configs resolve models (the catalogue, numpy): only creating a run needs them
    from verilabel.runs.config import RunRequest, ValidatedRun

STALE_AFTER = timedelta(seconds=20)
ACTIVE = ("queued", "generating")
FINAL = ("in_review", "error", "cancelled", "approved")


def now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes even for timezone-aware columns; everything is stored in UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@dataclass
class WorkerInfo:
    shard: int
    pid: int | None
    hostname: str | None
    state: str
    processed: int
    alive: bool
    heartbeat_at: datetime | None
    rate: float
    timings: dict[str, Any]
    started_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "pid": self.pid,
            "hostname": self.hostname,
            "state": self.state,
            "processed": self.processed,
            "alive": self.alive,
            "rate": round(self.rate, 2),
            "heartbeat_at": self.heartbeat_at.isoformat() if self.heartbeat_at else None,
            "timings": self.timings,
        }


@dataclass
class RunInfo:
    id: str
    name: str
    dataset: str
    status: str
    task: str
    model: str
    field: str
    created_at: datetime
    queued_at: datetime
    total: int
    done: int
    failed: int
    error: str | None
    labels: int  # generated labels (review + approval set); once approved, the approved ones
    classes: int  # classes among ``labels``
    config: dict[str, Any]
    model_info: dict[str, Any]
    workers: list[WorkerInfo] = dataclasses.field(default_factory=list)
    timings: dict[str, Any] = dataclasses.field(default_factory=dict)
    failures: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    promoted: int = 0  # of ``labels``, in the approval set
    discarded: int | None = None  # once approved: the labels approval deleted

    @property
    def pending(self) -> int:
        return self.total - self.done - self.failed

    @property
    def stalled(self) -> bool:
        """Generating (or queued) in the store, but no worker is alive to do it."""
        return (
            self.status in ACTIVE
            and not any(w.alive for w in self.workers)
            and (bool(self.workers) or now() - self.queued_at > STALE_AFTER)
        )

    @property
    def resumable(self) -> bool:
        return self.stalled or (self.status in ("error", "cancelled") and self.pending + self.failed > 0)

    @property
    def rate(self) -> float:
        """Images per second now (0 when no worker runs)."""
        return sum(w.rate for w in self.workers if w.alive)

    @property
    def average_rate(self) -> float | None:
        """Images per second of the latest start (or resume) of the run, from its first worker's start to its
        last worker's latest heartbeat; None before any image was processed."""
        spans = [(w.started_at, w.heartbeat_at) for w in self.workers if w.started_at and w.heartbeat_at]
        processed = sum(w.processed for w in self.workers)
        if not spans or not processed:
            return None
        seconds = (max(end for _, end in spans) - min(start for start, _ in spans)).total_seconds()
        return processed / seconds if seconds > 0 else None

    @property
    def min_confidence(self) -> float | None:
        value = self.config.get("min_confidence")
        return None if value is None else float(value)

    @property
    def eta_seconds(self) -> float | None:
        return self.pending / self.rate if self.rate > 0 and self.pending else None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "dataset": self.dataset,
            "status": self.status,
            "task": self.task,
            "model": self.model,
            "field": self.field,
            "created_at": self.created_at.isoformat(),
            "progress": {
                "done": self.done,
                "failed": self.failed,
                "total": self.total,
                "pending": self.pending,
                "rate": round(self.rate, 2),
                "average_rate": None if self.average_rate is None else round(self.average_rate, 2),
                "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds, 1),
            },
            "error": self.error,
            "labels": self.labels,
            "promoted": self.promoted,
            "discarded": self.discarded,
            "classes": self.classes,
            "stalled": self.stalled,
            "resumable": self.resumable,
            "min_confidence": self.min_confidence,
            "model_classes": self.config.get("model_classes"),
            "model_info": self.model_info,
            "score": self.config.get("score", "model"),
            "timings": self.timings,
            "workers": [w.to_json() for w in self.workers],
            "failures": self.failures,
        }


def _process_alive(pid: int | None, started: datetime | None) -> bool:
    """The worker process still runs: the pid exists, is no zombie, and is not a newer process that reused it."""
    if pid is None or started is None:
        return False
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return bool(process.create_time() <= started.timestamp() + 5)
    except psutil.Error:
        return False


def _worker_info(row: RunWorkerRow, at: datetime) -> WorkerInfo:
    heartbeat = _aware(row.heartbeat_at)
    started = _aware(row.started_at)
    if row.state != "running":
        alive = False
    elif row.hostname == socket.gethostname():
        # Same host: the process table is the truth (a dead worker is seen at once; a live one whose heartbeat
        # is delayed by a long write elsewhere is not mistaken for dead).
        alive = _process_alive(row.pid, started)
    else:
        alive = heartbeat is not None and at - heartbeat < STALE_AFTER
    elapsed = (heartbeat - started).total_seconds() if heartbeat and started else 0.0
    rate = row.processed / elapsed if elapsed > 0 else 0.0
    return WorkerInfo(
        row.shard,
        row.pid,
        row.hostname,
        row.state,
        row.processed,
        alive,
        heartbeat,
        rate,
        dict(row.timings or {}),
        started,
    )


def run_row(session: Session, run: str, dataset: str | None = None, *, lock: bool = False) -> RunRow:
    """Find a run by id, by name or by the field it writes, each optionally as ``DATASET/NAME`` (a name or a
    field is unique within a dataset; across datasets it must be unambiguous).

    ``lock`` (for a change that depends on the run's state) locks its row until the transaction ends and reads it
    afresh under the lock: on PostgreSQL a worker settling the run meanwhile is then waited for, not overwritten.
    """
    row = _find_run(session, run, dataset)
    if lock:
        locked = lock_row(session, row)
        if locked is None:
            raise NotFoundError(f"run {run!r} was just deleted")
        return locked
    return row


def _find_run(session: Session, run: str, dataset: str | None) -> RunRow:
    row = session.get(RunRow, run)
    if row is not None and (dataset is None or row.dataset_id == dataset_row(session, dataset).id):
        return row
    scope, slash, short = run.rpartition("/")  # run names never hold a slash; dataset names may
    if slash:
        dataset = scope
    dataset_id = dataset_row(session, dataset).id if dataset is not None else None
    for column, what in ((RunRow.name, "named"), (RunRow.field, "writing field")):
        query = (
            select(RunRow, DatasetRow.name).join(DatasetRow, DatasetRow.id == RunRow.dataset_id).where(column == short)
        )
        if dataset_id is not None:
            query = query.where(RunRow.dataset_id == dataset_id)
        found = session.execute(query.order_by(RunRow.created_at, RunRow.id)).all()
        if len(found) == 1:
            return found[0][0]  # type: ignore[no-any-return]
        if found:
            choices = ", ".join(f"{name}/{r.name} (id {r.id})" for r, name in found)
            raise ConflictError(
                f"{len(found)} runs are {what} {short!r}: {choices}. Name one as DATASET/NAME or by its id."
            )
    where = f" in dataset {dataset!r}" if dataset is not None else ""
    raise NotFoundError(
        f"no run with id, name or field {short!r}{where}{_close_runs(session, short, dataset_id)}; "
        "`verilabel run list DATASET` shows them"
    )


def _close_runs(session: Session, name: str, dataset_id: int | None) -> str:
    import difflib

    query = select(RunRow.name).order_by(RunRow.created_at.desc()).limit(500)
    if dataset_id is not None:
        query = query.where(RunRow.dataset_id == dataset_id)
    close = difflib.get_close_matches(name, list(dict.fromkeys(session.scalars(query))), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _info(session: Session, row: RunRow, *, failures: int = 20) -> RunInfo:
    """Everything about a run from a handful of small reads: progress and label counts come from counters kept
    with the samples and labels (``run_progress``, ``run_class_counts``), never from counting a million rows."""
    done, failed = progress.totals(session, row.id)
    by_state = counts.summary(session, row.id)
    if row.status == "approved":
        labels, classes = by_state.get("approved", (0, 0))
        promoted, discarded = labels, by_state.get("discarded", (0, 0))[0]
    else:
        labels = sum(by_state.get(state, (0, 0))[0] for state in (REVIEW, PROMOTED))
        classes = int(
            session.scalar(
                select(func.count(func.distinct(RunClassCountRow.label))).where(
                    RunClassCountRow.run_id == row.id, RunClassCountRow.count > 0
                )
            )
            or 0
        )
        promoted, discarded = by_state.get(PROMOTED, (0, 0))[0], None
    at = now()
    workers = [
        _worker_info(w, at)
        for w in session.scalars(select(RunWorkerRow).where(RunWorkerRow.run_id == row.id).order_by(RunWorkerRow.shard))
    ]
    failed_rows = (
        session.execute(
            select(RunSampleRow.sample_id, RunSampleRow.error)
            .where(RunSampleRow.run_id == row.id, RunSampleRow.state == "failed")
            .order_by(RunSampleRow.sample_id)
            .limit(failures)
        ).all()
        if failures and failed
        else []
    )
    dataset = session.scalar(select(DatasetRow.name).where(DatasetRow.id == row.dataset_id)) or ""
    timings = _merge_timings([w.timings for w in workers]) or dict(row.timings or {})
    created, queued = _aware(row.created_at), _aware(row.queued_at)
    assert created is not None and queued is not None
    return RunInfo(
        id=row.id,
        name=row.name,
        dataset=dataset,
        status=row.status,
        task=row.task,
        model=row.model,
        field=row.field,
        created_at=created,
        queued_at=queued,
        total=row.total,
        done=done,
        failed=failed,
        error=row.error,
        labels=labels,
        classes=classes,
        config=dict(row.config),
        model_info=dict(row.model_info or {}),
        workers=workers,
        timings=timings,
        failures=[{"sample_id": s, "error": e} for s, e in failed_rows],
        promoted=promoted,
        discarded=discarded,
    )


def _merge_timings(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the per-stage seconds of all workers (each records its own); peak memory is the largest."""
    merged: dict[str, float] = {}
    for part in parts:
        for stage, value in part.items():
            if not isinstance(value, int | float):
                continue
            previous = merged.get(stage, 0.0)
            merged[stage] = round(max(previous, value) if stage == "peak_rss_mb" else previous + value, 3)
    return merged


def get_run(store: Store, run: str) -> RunInfo:
    with store.read() as session:
        return _info(session, run_row(session, run))


def list_runs(store: Store, dataset: str) -> list[RunInfo]:
    with store.read() as session:
        dataset_id = dataset_row(session, dataset).id
        rows = session.scalars(
            select(RunRow).where(RunRow.dataset_id == dataset_id).order_by(RunRow.created_at, RunRow.id)
        ).all()
        return [_info(session, row, failures=0) for row in rows]


def new_run_id() -> str:
    return f"{int(time.time()):x}{secrets.token_hex(4)}"


def create_run(store: Store, request: RunRequest, *, start: bool = True, actor: str | None = None) -> RunInfo:
    """Validate, then in one transaction: the run row, its reserved field, one pending row per target sample.
    Workers start in the background unless ``start=False``; this returns at once either way."""
    from verilabel.runs.config import check_still_free, validate

    validated = validate(store, request)
    run_id = new_run_id()
    with store.write() as session:
        dataset_row(session, request.dataset, lock=True)  # creates and imports in one dataset take turns
        check_still_free(session, request, validated.dataset_id, validated.name)  # a rival may have been first
        _insert_run(session, validated, run_id)
        history.record(
            session,
            "create",
            actor=actor,
            dataset_id=validated.dataset_id,
            run_id=run_id,
            name=validated.name,
            model=validated.model.name,
            field=request.field,
        )
    if start:
        start_workers(store, run_id, range(request.workers))
    return get_run(store, run_id)


def _insert_run(session: Session, validated: ValidatedRun, run_id: str) -> None:
    request = validated.request
    session.add(
        RunRow(
            id=run_id,
            dataset_id=validated.dataset_id,
            name=validated.name,
            status="queued",
            task=validated.task,
            model=validated.model.name,
            field=request.field,
            config=validated.config_json(),
            model_info={},
            timings={},
            total=0,
            workers=request.workers,
            error=None,
            cancel_requested=False,
            created_at=now(),
            queued_at=now(),
        )
    )
    session.flush()
    kind = "classification" if validated.task == "classification" else "detection"
    ensure_field(session, validated.dataset_id, request.field, kind, run_id=run_id)
    ids = validated.view.sample_ids_query(validated.dataset_id).subquery()
    session.execute(
        insert(RunSampleRow).from_select(
            ["run_id", "sample_id", "shard", "state"],
            select(literal(run_id), ids.c.id, ids.c.id % (request.shards or request.workers), literal("pending")),
        )
    )
    total = session.scalar(select(func.count()).select_from(RunSampleRow).where(RunSampleRow.run_id == run_id))
    session.execute(update(RunRow).where(RunRow.id == run_id).values(total=total))


def logs_dir() -> Path:
    path = Settings.from_env().home / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_workers(store: Store, run_id: str, shards: range) -> list[int]:
    """Start the run's executor in the background: one detached worker process per shard (local), or the Ray
    driver (``verilabel.runs.ray_executor``). They outlive this process."""
    with store.read() as session:
        row = session.get(RunRow, run_id)
        executor = "local" if row is None else row.config.get("executor", "local")
    commands = (
        [(["verilabel.runs.ray_executor", run_id], f"{run_id}-ray.log")]
        if executor == "ray"
        else [(["verilabel.runs.worker", run_id, str(shard)], f"{run_id}-{shard}.log") for shard in shards]
    )
    env = {**os.environ, "VERILABEL_DATABASE_URL": store.url}
    pids = []
    for command, log_name in commands:
        with open(logs_dir() / log_name, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", *command],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        pids.append(proc.pid)
    return pids


def cancel_run(store: Store, run: str, *, actor: str | None = None) -> RunInfo:
    with store.write() as session:
        row = run_row(session, run, lock=True)
        history.record(session, "cancel", actor=actor, dataset_id=row.dataset_id, run_id=row.id)
        if row.status not in ACTIVE:
            raise ConflictError(f"run {row.name!r} is {row.status}; only queued or generating runs can be cancelled")
        info = _info(session, row, failures=0)
        if info.stalled:
            row.status, row.finished_at = "cancelled", now()  # nobody is left to see the request
        row.cancel_requested = True
        run_id = row.id
    return get_run(store, run_id)


def resume_run(
    store: Store,
    run: str,
    *,
    workers: int | None = None,
    retry_failed: bool = False,
    start: bool = True,
    actor: str | None = None,
) -> RunInfo:
    """Continue a run where it stopped: done samples are skipped; failed ones too unless ``retry_failed``."""
    with store.write() as session:
        row = run_row(session, run, lock=True)
        info = _info(session, row, failures=0)
        alive = [w for w in info.workers if w.alive]
        if alive:
            # New workers beside old ones would do samples twice, and clearing orphan masks could delete files an
            # old worker is about to commit: the old ones must be gone first.
            pids = ", ".join(f"{w.pid} on {w.hostname}" for w in alive)
            raise ConflictError(
                f"run {row.name!r} cannot be resumed yet: {len(alive)} of its workers still run (pid {pids}). "
                + (
                    "They stop within seconds after an error or a cancel; resume then."
                    if row.status not in ACTIVE or row.cancel_requested
                    else f"It is still generating: follow it with `verilabel run watch {row.name}`."
                )
            )
        can_retry = retry_failed and info.failed > 0 and row.status in ("in_review", "error", "cancelled")
        if not (info.resumable or can_retry):
            reason = "its workers are still alive" if row.status in ACTIVE else f"it is {row.status}"
            if row.status == "in_review":
                reason += " with nothing left to do (pass --retry-failed to retry failed samples)"
            raise ConflictError(f"run {row.name!r} cannot be resumed: {reason}")
        count = workers or row.workers
        if not 1 <= count <= 64:
            raise ConflictError(f"workers must be in 1..64, got {count}")
        states = ("pending", "failed") if retry_failed else ("pending",)
        shards = count
        if row.config.get("executor") == "ray":  # many shards per worker: as before unless the workers changed
            from verilabel.runs.ray_executor import shard_count

            shards = (row.config.get("shards") or count) if count == row.workers else shard_count(count, info.pending)
            row.config = {**row.config, "workers": count, "shards": shards}
        session.execute(
            update(RunSampleRow)
            .where(RunSampleRow.run_id == row.id, RunSampleRow.state.in_(states))
            .values(state="pending", error=None, shard=RunSampleRow.sample_id % shards)
        )
        session.execute(delete(RunWorkerRow).where(RunWorkerRow.run_id == row.id))
        progress.recount(session, row.id)  # shards changed, failed samples may be pending again
        history.record(
            session, "resume", actor=actor, dataset_id=row.dataset_id, run_id=row.id, retry_failed=retry_failed
        )
        row.status, row.error, row.cancel_requested, row.workers, row.finished_at, row.queued_at = (
            "queued",
            None,
            False,
            count,
            None,
            now(),
        )
        run_id, mask_dir = row.id, row.config.get("mask_dir")
    if mask_dir:
        remove_orphan_masks(store, run_id, Path(mask_dir))
    if start:
        start_workers(store, run_id, range(count))
    return get_run(store, run_id)


@dataclass(frozen=True)
class DeleteResult:
    run: str
    labels: int
    masks: int
    field_freed: str | None

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "labels": self.labels, "masks": self.masks, "field_freed": self.field_freed}


def delete_run(store: Store, run: str, *, stop_timeout: float = 15.0, actor: str | None = None) -> DeleteResult:
    """Delete a run that is not approved: stop its live workers, then in ONE transaction remove its samples,
    labels and counters and free the label field it reserved; its mask files go after the commit.

    An approved run's labels belong to the dataset's field, so an approved run is never deleted. An analysis
    (``run analyze``) is deleted without touching the field it reviews."""
    with store.write() as session:
        row = run_row(session, run, lock=True)
        if row.status == "approved":
            raise ConflictError(
                f"run {row.name!r} is approved: its labels are field {row.field!r} of the dataset now and stay. "
                "Only runs not yet approved can be deleted."
            )
        row.cancel_requested = True  # workers on other machines stop at their next heartbeat
        run_id, name = row.id, row.name
    _stop_workers(store, run_id, stop_timeout)
    with store.write() as session:
        row = run_row(session, run_id, lock=True)
        still = [w for w in _info(session, row, failures=0).workers if w.alive]
        if still:
            raise ConflictError(
                f"run {name!r}: {len(still)} workers on other machines have not stopped yet "
                f"({', '.join(str(w.hostname) for w in still)}); they stop after their current batch: delete again then"
            )
        labels = int(session.scalar(select(func.count()).where(RunLabelRow.run_id == run_id)) or 0)
        mask_dir = row.config.get("mask_dir")
        field = session.scalar(
            select(LabelFieldRow).where(
                LabelFieldRow.dataset_id == row.dataset_id,
                LabelFieldRow.name == row.field,
                LabelFieldRow.run_id == run_id,  # reserved by this run (an analysis reviews a field it does not own)
            )
        )
        freed = None
        if field is not None:
            freed = field.name
            session.delete(field)
        history.record(
            session, "delete", actor=actor, dataset_id=row.dataset_id, run_id=run_id, name=name, labels=labels
        )
        session.delete(row)  # samples, labels, workers and counters go with it (ON DELETE CASCADE)
    masks = 0
    folder = Path(mask_dir) / run_id if mask_dir else None
    if folder is not None and folder.is_dir():
        masks = sum(1 for _ in folder.glob("*.png"))
        shutil.rmtree(folder, ignore_errors=True)
    return DeleteResult(name, labels, masks, freed)


def _stop_workers(store: Store, run_id: str, timeout: float) -> None:
    """SIGTERM this host's live workers of the run, SIGKILL those still alive after ``timeout`` seconds (a
    worker killed at any instant loses nothing: its open batch rolls back). Other hosts' workers see the
    cancel request at their next heartbeat."""
    import signal

    with store.read() as session:
        row = session.get(RunRow, run_id)
        workers = [] if row is None else _info(session, row, failures=0).workers
    local = [w for w in workers if w.alive and w.hostname == socket.gethostname() and w.pid is not None]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for worker in local:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(worker.pid, sig)  # type: ignore[arg-type]
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 5.0)
        while local and time.monotonic() < deadline:
            local = [w for w in local if _process_alive(w.pid, w.started_at)]
            if local:
                time.sleep(0.1)
        if not local:
            return


def remove_orphan_masks(store: Store, run_id: str, mask_dir: Path) -> int:
    """Delete mask files that no label references: written by a worker killed before its batch committed."""
    folder = mask_dir / run_id
    if not folder.is_dir():
        return 0
    with store.read() as session:
        referenced = set(
            session.scalars(
                select(RunLabelRow.mask_path).where(RunLabelRow.run_id == run_id, RunLabelRow.mask_path.is_not(None))
            )
        )
    orphans = [path for path in folder.glob("*.png") if str(path) not in referenced]
    for path in orphans:
        path.unlink(missing_ok=True)
    return len(orphans)


def wait_run(
    store: Store,
    run: str,
    *,
    timeout: float | None = None,
    poll: float = 0.5,
    on_progress: Callable[[RunInfo], None] | None = None,
) -> RunInfo:
    """Block until the run leaves queued/generating (or stalls, or ``timeout`` seconds pass)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        info = get_run(store, run)
        if on_progress:
            on_progress(info)
        if info.status not in ACTIVE or info.stalled:
            return info
        if deadline is not None and time.monotonic() > deadline:
            return info
        time.sleep(poll)
