"""Runs: create (validate, reserve the field, enqueue samples, start workers), watch, cancel, resume.

Statuses: ``queued`` -> ``generating`` -> ``in_review`` (or ``error`` / ``cancelled``); ``approved`` comes
from review. A run whose workers all died (killed, machine lost) still reads ``generating`` in the store;
``RunInfo.stalled`` tells it apart (dead pid on this host, or no heartbeat for ``STALE_AFTER``) and such a
run can be resumed.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, literal, select, update
from sqlalchemy.orm import Session

from verilabel.datasets.service import dataset_row, ensure_field
from verilabel.errors import ConflictError, NotFoundError
from verilabel.runs.config import RunRequest, ValidatedRun, check_still_free, validate
from verilabel.settings import Settings
from verilabel.store import Store
from verilabel.store.db import lock_row
from verilabel.store.schema import DatasetRow, RunLabelRow, RunRow, RunSampleRow, RunWorkerRow

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
    labels: int
    classes: int
    config: dict[str, Any]
    model_info: dict[str, Any]
    workers: list[WorkerInfo] = dataclasses.field(default_factory=list)
    timings: dict[str, Any] = dataclasses.field(default_factory=dict)
    failures: list[dict[str, Any]] = dataclasses.field(default_factory=list)

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
        return sum(w.rate for w in self.workers if w.alive)

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
                "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds, 1),
            },
            "error": self.error,
            "labels": self.labels,
            "classes": self.classes,
            "stalled": self.stalled,
            "resumable": self.resumable,
            "min_confidence": self.config.get("min_confidence"),
            "model_classes": self.config.get("model_classes"),
            "model_info": self.model_info,
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
        row.shard, row.pid, row.hostname, row.state, row.processed, alive, heartbeat, rate, dict(row.timings or {})
    )


def run_row(session: Session, run: str, dataset: str | None = None, *, lock: bool = False) -> RunRow:
    """Find a run by id, or by name (unique within a dataset; across datasets when unambiguous).

    ``lock`` (for a change that depends on the run's state) locks its row until the transaction ends and reads it
    afresh under the lock: on PostgreSQL a worker settling the run meanwhile is then waited for, not overwritten.
    """
    row = _find_run(session, run, dataset)
    if lock:
        locked = lock_row(session, row)
        if locked is None:
            raise NotFoundError(f"run {run!r} was just deleted (with its dataset)")
        return locked
    return row


def _find_run(session: Session, run: str, dataset: str | None) -> RunRow:
    row = session.get(RunRow, run)
    if row is not None:
        return row
    query = select(RunRow).where(RunRow.name == run)
    if dataset is not None:
        query = query.where(RunRow.dataset_id == dataset_row(session, dataset).id)
    rows = session.scalars(query).all()
    if len(rows) == 1:
        return rows[0]
    if len(rows) > 1:
        raise ConflictError(f"{len(rows)} runs are named {run!r}; use the run id ({', '.join(r.id for r in rows)})")
    raise NotFoundError(f"no run with id or name {run!r}; `verilabel run list DATASET` shows them")


def _info(session: Session, row: RunRow, *, failures: int = 20) -> RunInfo:
    counts = dict(
        session.execute(
            select(RunSampleRow.state, func.count()).where(RunSampleRow.run_id == row.id).group_by(RunSampleRow.state)
        ).all()
    )
    labels, classes = session.execute(
        select(func.count(), func.count(func.distinct(RunLabelRow.label))).where(RunLabelRow.run_id == row.id)
    ).one()
    at = now()
    workers = [
        _worker_info(w, at)
        for w in session.scalars(select(RunWorkerRow).where(RunWorkerRow.run_id == row.id).order_by(RunWorkerRow.shard))
    ]
    failed_rows = session.execute(
        select(RunSampleRow.sample_id, RunSampleRow.error)
        .where(RunSampleRow.run_id == row.id, RunSampleRow.state == "failed")
        .order_by(RunSampleRow.sample_id)
        .limit(failures)
    ).all()
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
        done=counts.get("done", 0),
        failed=counts.get("failed", 0),
        error=row.error,
        labels=labels,
        classes=classes,
        config=dict(row.config),
        model_info=dict(row.model_info or {}),
        workers=workers,
        timings=timings,
        failures=[{"sample_id": s, "error": e} for s, e in failed_rows],
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


def create_run(store: Store, request: RunRequest, *, start: bool = True) -> RunInfo:
    """Validate, then in one transaction: the run row, its reserved field, one pending row per target sample.
    Workers start in the background unless ``start=False``; this returns at once either way."""
    validated = validate(store, request)
    run_id = new_run_id()
    with store.write() as session:
        dataset_row(session, request.dataset, lock=True)  # creates and imports in one dataset take turns
        check_still_free(session, request, validated.dataset_id, validated.name)  # a rival may have been first
        _insert_run(session, validated, run_id)
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
            select(literal(run_id), ids.c.id, ids.c.id % request.workers, literal("pending")),
        )
    )
    total = session.scalar(select(func.count()).select_from(RunSampleRow).where(RunSampleRow.run_id == run_id))
    session.execute(update(RunRow).where(RunRow.id == run_id).values(total=total))


def logs_dir() -> Path:
    path = Settings.from_env().home / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_workers(store: Store, run_id: str, shards: range) -> list[int]:
    """Start one detached worker process per shard; they outlive this process."""
    env = {**os.environ, "VERILABEL_DATABASE_URL": store.url}
    pids = []
    for shard in shards:
        with open(logs_dir() / f"{run_id}-{shard}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "verilabel.runs.worker", run_id, str(shard)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        pids.append(proc.pid)
    return pids


def cancel_run(store: Store, run: str) -> RunInfo:
    with store.write() as session:
        row = run_row(session, run, lock=True)
        if row.status not in ACTIVE:
            raise ConflictError(f"run {row.name!r} is {row.status}; only queued or generating runs can be cancelled")
        info = _info(session, row, failures=0)
        if info.stalled:
            row.status, row.finished_at = "cancelled", now()  # nobody is left to see the request
        row.cancel_requested = True
        run_id = row.id
    return get_run(store, run_id)


def resume_run(
    store: Store, run: str, *, workers: int | None = None, retry_failed: bool = False, start: bool = True
) -> RunInfo:
    """Continue a run where it stopped: done samples are skipped; failed ones too unless ``retry_failed``."""
    with store.write() as session:
        row = run_row(session, run, lock=True)
        info = _info(session, row, failures=0)
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
        session.execute(
            update(RunSampleRow)
            .where(RunSampleRow.run_id == row.id, RunSampleRow.state.in_(states))
            .values(state="pending", error=None, shard=RunSampleRow.sample_id % count)
        )
        session.execute(delete(RunWorkerRow).where(RunWorkerRow.run_id == row.id))
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
