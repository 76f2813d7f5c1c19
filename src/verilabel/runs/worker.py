"""A run's worker process: ``python -m verilabel.runs.worker RUN_ID SHARD``.

It labels the pending samples of its shard and nothing else. Each batch's labels and the ``done`` / ``failed``
states of its samples are committed in ONE transaction, so a SIGKILL at any instant leaves every sample either
finished with all its labels or pending with none: resume redoes exactly the unfinished ones.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib.util
import os
import resource
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any, cast

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from verilabel.errors import ModelLoadError, VerilabelError
from verilabel.labels import Detection, Label, Mask, mask_file_path, rle_encode
from verilabel.models import registry
from verilabel.models.interface import LoadRequest, Model, PredictContext, Task
from verilabel.models.runtimes import default_threads, runtime_of
from verilabel.review import counts
from verilabel.runs import progress
from verilabel.runs.pipeline import Outcome, Pipeline, PipelineOptions, StageTimer, WorkItem
from verilabel.runs.service import ACTIVE, _worker_info, now
from verilabel.store import Store
from verilabel.store.bulk import insert_rows
from verilabel.store.convert import label_columns
from verilabel.store.schema import RunLabelRow, RunRow, RunSampleRow, RunWorkerRow, SampleRow

HEARTBEAT_SECONDS = 1.0
PAGE = 512


class Worker:
    def __init__(self, store: Store, run_id: str, shard: int) -> None:
        self.store, self.run_id, self.shard = store, run_id, shard
        self.timer = StageTimer()
        self.stop = threading.Event()
        self.stop_reason = ""
        self.processed = 0
        self.failed = False
        self.data_shard = shard  # the shard being labelled: the local executor's own, or the one Ray handed over
        self.log_hint = f"verilabel home logs/{run_id}-{shard}.log"
        self._lock = threading.Lock()
        with store.read() as session:
            run = session.get(RunRow, run_id)
            if run is None:
                raise VerilabelError(f"run {run_id} does not exist")
            self.config: dict[str, Any] = dict(run.config)
            self.task = run.task

    # --- lifecycle -------------------------------------------------------------------------------------
    def register(self) -> bool:
        """Claim the shard and mark the run generating. False if the run is no longer active."""
        with self.store.write() as session:
            run = session.get(RunRow, self.run_id, with_for_update=True)
            if run is None or run.status not in ACTIVE or run.cancel_requested:
                return False
            existing = session.get(RunWorkerRow, (self.run_id, self.shard))
            if existing is not None and _worker_info(existing, now()).alive and existing.pid != os.getpid():
                return False  # another live process already owns this shard
            if existing is not None:
                session.delete(existing)
                session.flush()
            stamp = now()
            session.add(
                RunWorkerRow(
                    run_id=self.run_id,
                    shard=self.shard,
                    pid=os.getpid(),
                    hostname=socket.gethostname(),
                    state="running",
                    processed=0,
                    started_at=stamp,
                    heartbeat_at=stamp,
                    timings={},
                )
            )
            if run.status == "queued":
                run.status = "generating"
            run.started_at = run.started_at or stamp
        return True

    def start_heartbeat(self) -> None:
        self._heart = threading.Thread(target=self.heartbeat, name="verilabel-heartbeat", daemon=True)
        self._heart.start()

    def heartbeat(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                self._beat()
            except Exception:  # a busy database must not kill the worker; the next beat retries
                traceback.print_exc()

    def _beat(self, state: str | None = None) -> None:
        with self.store.write() as session:
            self._record(session, state)
            run = session.get(RunRow, self.run_id)
            if (run is None or run.cancel_requested or run.status == "error") and not self.stop.is_set():
                self.stop_reason = "error elsewhere" if run is not None and run.status == "error" else "cancelled"
                self.stop.set()

    def _record(self, session: Session, state: str | None = None) -> None:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
        values: dict[str, Any] = {
            "heartbeat_at": now(),
            "processed": self.processed,
            "timings": self.timer.snapshot() | {"peak_rss_mb": round(peak_mb, 1)},
        }
        if state:
            values["state"] = state
        session.execute(
            update(RunWorkerRow)
            .where(RunWorkerRow.run_id == self.run_id, RunWorkerRow.shard == self.shard)
            .values(**values)
        )

    def finish(self, state: str, error: str | None = None) -> None:
        """Record this worker's end and, if it is the last one standing, settle the run's status, in ONE
        transaction: a reader never sees every worker gone while the run still reads ``generating``."""
        with self.store.write() as session:
            run = session.get(RunRow, self.run_id, with_for_update=True)
            if run is None:
                return  # the run was deleted (`verilabel run delete`) while this worker stopped
            self._record(session, state)
            if error and run.status != "error":
                run.status, run.error = "error", error
            at = now()
            others = session.scalars(
                select(RunWorkerRow).where(RunWorkerRow.run_id == self.run_id, RunWorkerRow.shard != self.shard)
            ).all()
            if any(_worker_info(w, at).alive for w in others):
                return
            pending = session.scalar(
                select(RunSampleRow.sample_id)
                .where(RunSampleRow.run_id == self.run_id, RunSampleRow.state == "pending")
                .limit(1)
            )
            if run.status == "error":
                pass
            elif pending is None:
                run.status = "in_review"  # everything got done: a late cancel cancelled nothing
            elif run.cancel_requested:
                run.status = "cancelled"
            else:
                return  # some shard died or stopped: the run stays resumable
            run.finished_at = at
            run.timings = self.timer.snapshot()

    # --- work ------------------------------------------------------------------------------------------
    def pending_items(self, shard: int) -> Iterator[WorkItem]:
        """A shard's pending samples in id order, a page at a time (keyset pagination)."""
        last = -1
        while not self.stop.is_set():
            with self.store.read() as session:
                page = session.execute(
                    select(RunSampleRow.sample_id, SampleRow.path)
                    .join(SampleRow, SampleRow.id == RunSampleRow.sample_id)
                    .where(
                        RunSampleRow.run_id == self.run_id,
                        RunSampleRow.shard == shard,
                        RunSampleRow.state == "pending",
                        RunSampleRow.sample_id > last,
                    )
                    .order_by(RunSampleRow.sample_id)
                    .limit(PAGE)
                ).all()
            if not page:
                return
            for sample_id, path in page:
                yield WorkItem(sample_id, path)
            last = page[-1][0]

    def _store_mask(self, label: Label) -> Label:
        """A mask array becomes a PNG under the run's mask location, or inline RLE when the run has none (a
        detection run whose model also gives masks: they are kept, in the database)."""
        array = label.mask.array if isinstance(label, Detection) and label.mask is not None else None
        if array is None:
            return label
        assert isinstance(label, Detection)
        if not self.config.get("mask_dir"):
            label.mask = Mask(rle=rle_encode(array))
            return label
        from PIL import Image

        path = mask_file_path(self.config["mask_dir"], self.run_id, label.id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(array.astype("uint8") * 255).save(path, optimize=False, compress_level=1)
        label.mask = Mask(path=path)
        return label

    def write(self, outcomes: list[Outcome]) -> None:
        """One transaction: labels of finished samples + their states + the run's counters. Samples that are no
        longer pending (another process finished them) are skipped, so no label is ever written twice; the mask
        files of skipped samples are removed after the commit (nothing references them)."""
        prepared = [(o, [self._store_mask(label) for label in o.labels]) for o in outcomes]
        ids = [o.sample_id for o in outcomes]
        with self.store.write() as session:
            still_pending = set(
                session.scalars(
                    select(RunSampleRow.sample_id)
                    .where(
                        RunSampleRow.run_id == self.run_id,
                        RunSampleRow.sample_id.in_(ids),
                        RunSampleRow.state == "pending",
                    )
                    .with_for_update()
                )
            )
            rows = [
                dict(label_columns(label), run_id=self.run_id, sample_id=o.sample_id, review_state="review")
                for o, labels in prepared
                if o.sample_id in still_pending
                for label in labels
            ]
            if rows:
                insert_rows(session, RunLabelRow, rows)
                counts.add(
                    session, self.run_id, "review", counts.deltas_of((r["label"], r["confidence"]) for r in rows)
                )
            settled = [o for o in outcomes if o.sample_id in still_pending]
            if settled:
                session.execute(
                    update(RunSampleRow),
                    [
                        {
                            "run_id": self.run_id,
                            "sample_id": o.sample_id,
                            "state": "failed" if o.error else "done",
                            "error": o.error,
                        }
                        for o in settled
                    ],
                )
                failed = sum(1 for o in settled if o.error)
                progress.add(session, self.run_id, self.data_shard, len(settled) - failed, failed)
        for outcome, labels in prepared:
            if outcome.sample_id not in still_pending:
                _remove_mask_files(labels)

    def _count(self, n: int) -> None:
        with self._lock:
            self.processed += n

    def load_model(self) -> Model:
        ref = registry.resolve(self.config["model"])
        device = self.config.get("device", "auto")
        if device in ("auto", "cuda") and self.config.get("workers", 1) > 1:
            device = _gpu_for_shard(self.shard, device)
        runtime = self.config.get("runtime", "auto")
        if runtime == "onnx" and device == "auto":
            device = "cpu"  # ONNX Runtime runs on the CPU (validation refused any other device)
        request = LoadRequest(
            weights=self.config.get("weights"),
            device=device,
            classes=tuple(self.config["model_classes"]),
            min_confidence=self.config["min_confidence"],
            options=dict(self.config.get("model_options") or {}),
            max_labels=self.config.get("max_labels"),
            runtime=runtime,
            threads=default_threads(int(self.config.get("workers", 1))),
        )
        start = time.perf_counter()
        model = registry.load(ref, request)
        self.timer.add("load_model", time.perf_counter() - start)
        catalogued = ref.entry is not None or bool(ref.stages)
        with self.store.write() as session:
            run = session.get(RunRow, self.run_id)
            if run is not None and not run.model_info:
                spec = model.spec
                choice = runtime_of(model, catalogued=catalogued, requested=runtime)
                run.model_info = {
                    "name": spec.name,
                    "version": spec.version,
                    "weights": _weights_identity(ref, self.config.get("weights"), spec.weights),
                    "device": choice.device or device,
                    "batch_size": self._batch_size(model),
                    **choice.to_json(),
                }
        return model

    def _batch_size(self, model: Model) -> int:
        return int(self.config.get("batch_size") or model.spec.batch_size)

    def run(self) -> int:
        """The local executor: this process labels its own shard, then settles."""
        signal.signal(signal.SIGTERM, self._on_sigterm)
        if not self.start():
            return 1 if self.failed else 0
        if self.label(self.shard):
            self.end()
        return 1 if self.failed else 0

    def start(self) -> bool:
        """Claim the worker's slot, start its heartbeat and load the model. False when the run is no longer
        active, or the model failed to load (the run is then in error)."""
        if not self.register():
            return False
        self.start_heartbeat()
        try:
            self.model = self.load_model()
            _share_cores(self.config.get("device", "auto"), int(self.config.get("workers", 1)))
        except Exception as exc:
            self._fail(exc)
            return False
        return True

    def label(self, shard: int) -> bool:
        """Label the pending samples of a data shard (the local executor: its own; Ray: each one it is handed).
        False when the worker failed and settled; True otherwise, ``stop`` set if it must not go on."""
        model = self.model
        context = PredictContext(
            task=cast(Task, self.task),
            classes=tuple(self.config["model_classes"]),
            min_confidence=float(self.config["min_confidence"]),
        )
        threads = self.config.get("decode_threads") or _default_decode_threads(self.config.get("device", "auto"))
        options = PipelineOptions(
            batch_size=self._batch_size(model),
            decode_threads=threads,
            max_pixels=int(self.config["max_image_pixels"]),
            draft_size=model.spec.input_size,
            min_confidence=float(self.config["min_confidence"]),
            to_dataset=self.config["to_dataset"],
            max_labels=self.config.get("max_labels"),
            negatives=tuple(self.config.get("negative_classes", ())),
        )
        self.data_shard = shard
        try:
            start = time.perf_counter()
            Pipeline(model, context, options, self.timer, self.stop, self._count).run(
                self.pending_items(shard), self.write
            )
            self.timer.add("wall", time.perf_counter() - start)
        except Exception as exc:
            self._fail(exc)
            return False
        return True

    def end(self) -> None:
        """Stop the heartbeat and settle: this worker's end, and the run's status if it is the last one."""
        interrupted = self.stop.is_set() and self.stop_reason == "signal"
        self.stop.set()
        self._heart.join(timeout=5)
        self.finish("stopped" if interrupted else "finished")

    def _fail(self, exc: BaseException) -> None:
        """Settle as failed: a verilabel error says what to fix; anything else is a crash, its trace in the log."""
        self.stop.set()
        self.failed = True
        if isinstance(exc, ModelLoadError | VerilabelError):
            self.finish("failed", error=str(exc))
            return
        traceback.print_exc()
        self.finish(
            "failed",
            error=f"worker {self.shard} crashed: {type(exc).__name__}: {exc} (log: {self.log_hint})",
        )

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.stop_reason = "signal"
        self.stop.set()


def _remove_mask_files(labels: list[Label]) -> None:
    for label in labels:
        if isinstance(label, Detection) and label.mask is not None and label.mask.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(label.mask.path)


def _weights_identity(ref: registry.ModelRef, override: str | None, spec_weights: str) -> str:
    from verilabel.models import weights

    source = ref.entry.weights if ref.entry is not None else spec_weights
    try:
        return weights.identity(source, override)
    except OSError:
        return override or source


def _on_gpu(device: str) -> bool:
    torch = sys.modules.get("torch")  # imported by the model if it runs on torch
    return device != "cpu" and torch is not None and bool(torch.cuda.is_available())


def _default_decode_threads(device: str) -> int:
    """On a GPU the CPU cores have nothing to do but decode: use them all. On a CPU they run the model too."""
    cpus = os.cpu_count() or 2
    return min(32, cpus) if _on_gpu(device) else min(4, max(2, cpus))


def _share_cores(device: str, workers: int) -> None:
    """Several workers running a torch model on the CPU split the cores between them: each with torch's default
    of every core, their spinning thread pools fight (2 workers on 2 cores ran 8x slower than one)."""
    torch = sys.modules.get("torch")
    if workers > 1 and torch is not None and not _on_gpu(device):
        torch.set_num_threads(default_threads(workers))


def _gpu_for_shard(shard: int, device: str) -> str:
    """Several workers on several GPUs: one GPU each, round robin."""
    try:
        import torch

        count = torch.cuda.device_count()
    except ImportError:
        return device
    return f"cuda:{shard % count}" if count > 1 else device


def single_threaded_opencv() -> None:
    """The decode pool is the parallelism: OpenCV's own pool inside each decode thread would oversubscribe."""
    if importlib.util.find_spec("cv2") is not None:
        import cv2

        cv2.setNumThreads(1)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m verilabel.runs.worker RUN_ID SHARD", file=sys.stderr)
        return 2
    faulthandler.enable()  # a native crash (segfault in a decoder or model) still leaves a trace in the log
    # A worker that seems stuck: `kill -USR1 PID` writes every thread's stack to its log, and it goes on.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    single_threaded_opencv()
    store = Store.open()
    return Worker(store, args[0], int(args[1])).run()


if __name__ == "__main__":
    sys.exit(main())
