"""The Ray executor (``run create --executor ray``): a run's shards labelled by Ray actors across a cluster.

A driver process (``python -m verilabel.runs.ray_executor RUN_ID``, started in the background like the local
workers) connects to the cluster and starts ``workers`` actors, each with the resources it needs (a GPU each
where the cluster has GPUs). Every actor is an ordinary ``Worker`` (``verilabel.runs.worker``): it registers,
heartbeats and loads the model once, then labels the shards the driver hands it one at a time, with the very
code the local executor runs. A run has many more shards than workers (8 per worker by default), handed out as
actors free up, so a slow node takes fewer of them.

Nothing is lost or doubled for the same reasons as locally: each batch commits its labels and sample states in
one transaction, and a sample no longer pending is never written again. An actor (or its node) that dies loses
only its open batch; the driver puts the shard back in the queue and starts a replacement, which labels what is
still pending. If the driver itself dies, its actors die with it and ``run resume`` starts again.

The driver registers as the run's coordinator (worker slot -1): the run stays alive while it hands out shards,
it stops on a cancel, and it settles the run's status once every actor has ended.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time
from collections import deque
from typing import Any

from sqlalchemy import func, select, update

from verilabel.errors import ConfigError, VerilabelError
from verilabel.runs.worker import Worker, single_threaded_opencv
from verilabel.store import Store
from verilabel.store.schema import RunSampleRow, RunWorkerRow

COORDINATOR = -1  # the driver's worker slot
SHARDS_PER_WORKER = 8  # at most: many shards balance slow and fast nodes...
MIN_SHARD_SAMPLES = 500  # ...but each shard starts its pipeline afresh (a batch or two of idle device): not tiny
MAX_LOST_WORKERS = 8  # replacements for actors that died, before the run gives up
RAY_HINT = "install it with `pip install 'verilabel[ray]'` on every node"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("executor", f"--executor ray needs Ray: {RAY_HINT}") from None
    return ray


def connect(address: str | None) -> Any:
    """Join the cluster at ``address`` (``auto``: the one ``ray start`` runs on this machine; ``ray://...``: a
    remote one), or start a local one-machine Ray when there is none and no address was given."""
    ray = import_ray()
    if not ray.is_initialized():
        ray.init(
            address=address or None,
            namespace="verilabel",
            log_to_driver=False,
            configure_logging=False,
            include_dashboard=False,
        )
    return ray


def alive_nodes(ray: Any) -> int:
    return sum(1 for node in ray.nodes() if node.get("Alive"))


def check_store(url: str, nodes: int) -> None:
    """Several machines share the run through its store: SQLite is one machine's file."""
    if nodes > 1 and url.startswith("sqlite"):
        raise ConfigError(
            "executor",
            f"the Ray cluster has {nodes} nodes, but the store is SQLite ({url}), a file on one machine: set "
            "VERILABEL_DATABASE_URL=postgresql+psycopg://... (every node must reach it), or run on one machine",
        )


def check_cluster(url: str, address: str | None) -> None:
    """At ``run create``: Ray is installed, the cluster answers, and the store suits it. Only a running cluster
    is checked (no address and none running: the driver will start a one-machine Ray)."""
    ray = import_ray()
    if not address and not os.environ.get("RAY_ADDRESS"):
        return
    try:
        connect(address)
        check_store(url, alive_nodes(ray))
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError("ray_address", f"cannot reach the Ray cluster at {address or 'auto'}: {exc}") from None
    finally:
        if ray.is_initialized():
            ray.shutdown()


def shard_count(workers: int, samples: int) -> int:
    """How many shards a run of ``samples`` on ``workers`` gets: 2 to 8 per worker, of 500 samples or more."""
    return max(workers * 2, min(workers * SHARDS_PER_WORKER, samples // MIN_SHARD_SAMPLES))


class ShardWorker:
    """A Ray actor: one ``Worker`` that loads the model once and labels every shard it is handed."""

    def __init__(self, database_url: str, run_id: str, slot: int) -> None:
        single_threaded_opencv()
        self.worker = Worker(Store.open(database_url), run_id, slot)
        self.worker.log_hint = f"the Ray worker's log on {os.uname().nodename} (`ray logs`)"

    def start(self) -> bool:
        return self.worker.start()

    def label(self, shard: int) -> bool:
        """True when the shard is done and the worker may take another; False: it stopped (cancel or error)."""
        return self.worker.label(shard) and not self.worker.stop.is_set()

    def end(self) -> None:
        if not self.worker.failed:
            self.worker.end()


class Driver:
    def __init__(self, store: Store, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        self.coordinator = Worker(store, run_id, COORDINATOR)
        self.coordinator.log_hint = f"verilabel home logs/{run_id}-ray.log"
        self.config = self.coordinator.config
        self.lost = 0

    def run(self) -> int:
        coordinator = self.coordinator
        if not coordinator.register():
            return 0
        coordinator.start_heartbeat()
        try:
            ray = connect(self.config.get("ray_address"))
            check_store(self.store.url, alive_nodes(ray))
            self.schedule(ray)
        except Exception as exc:
            coordinator._fail(exc)
            return 1
        coordinator.end()
        return 0

    def actor_class(self, ray: Any) -> Any:
        gpus = self.config.get("gpus_per_worker")
        if gpus is None:  # one GPU each where the cluster has GPUs
            gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        cpus = float(self.config.get("cpus_per_worker") or 1)
        return ray.remote(num_cpus=cpus, num_gpus=float(gpus), max_restarts=0, max_task_retries=0)(ShardWorker)

    def schedule(self, ray: Any) -> None:
        """Hand the pending shards to the actors as they free up; replace actors that die."""
        actor = self.actor_class(ray)
        queue = deque(self.pending_shards())
        stop = self.coordinator.stop
        actors: dict[int, Any] = {}
        calls: dict[Any, tuple[int, int | None]] = {}  # in flight: (slot, shard being labelled or None: starting)
        slots = itertools.count()

        def spawn() -> None:
            slot = next(slots)
            actors[slot] = actor.remote(self.store.url, self.run_id, slot)
            calls[actors[slot].start.remote()] = (slot, None)

        for _ in range(min(int(self.config.get("workers", 1)), len(queue))):
            spawn()
        while calls:
            if not queue and all(shard is None for _, shard in calls.values()):
                # replacements still waiting for resources, with nothing left to give them
                idle = {slot for slot, _ in calls.values()}
                for slot in idle:
                    ray.kill(actors.pop(slot))
                self.mark_gone(idle)
                break
            (ref,), _ = ray.wait(list(calls), num_returns=1)
            slot, shard = calls.pop(ref)
            try:
                carry_on = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                self.replace(slot, shard, queue, exc)
                actors.pop(slot, None)
                if queue and not stop.is_set():
                    spawn()
                continue
            if not carry_on:  # this actor stopped (a cancel, an error) or could not start (the model failed)
                if shard is None:
                    stop.set()
                continue
            if queue and not stop.is_set():
                next_shard = queue.popleft()
                calls[actors[slot].label.remote(next_shard)] = (slot, next_shard)
        ends = [handle.end.remote() for handle in actors.values()]
        for ref in ends:
            # one that died after its last shard has its samples committed; its row is marked below
            with contextlib.suppress(ray.exceptions.RayActorError):
                ray.get(ref)
        self.mark_gone(set(actors))

    def replace(self, slot: int, shard: int | None, queue: deque[int], exc: Exception) -> None:
        """An actor died (its process, or its node): its open batch rolled back; its shard goes back."""
        self.lost += 1
        print(f"worker {slot} lost ({type(exc).__name__}); shard {shard} back in the queue", file=sys.stderr)
        if shard is not None:
            queue.appendleft(shard)
        self.mark_gone({slot})
        if self.lost > MAX_LOST_WORKERS:
            raise VerilabelError(
                f"{self.lost} Ray workers died (the last: {type(exc).__name__}); the run stopped. See `ray status` "
                f"and the Ray logs, then `verilabel run resume {self.config.get('name', self.run_id)}`"
            )

    def mark_gone(self, slots: set[int]) -> None:
        """Worker rows of dead actors still ``running`` stop counting as alive (a remote row would for a while
        otherwise); rows the actors settled themselves keep their state."""
        with self.store.write() as session:
            session.execute(
                update(RunWorkerRow)
                .where(
                    RunWorkerRow.run_id == self.run_id,
                    RunWorkerRow.shard.in_(slots),
                    RunWorkerRow.state == "running",
                )
                .values(state="lost")
            )

    def pending_shards(self) -> list[int]:
        """Shards with pending samples, the fullest first."""
        with self.store.read() as session:
            rows = session.execute(
                select(RunSampleRow.shard, func.count())
                .where(RunSampleRow.run_id == self.run_id, RunSampleRow.state == "pending")
                .group_by(RunSampleRow.shard)
            ).all()
        return [shard for shard, _ in sorted(rows, key=lambda row: (-row[1], row[0]))]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m verilabel.runs.ray_executor RUN_ID", file=sys.stderr)
        return 2
    started = time.perf_counter()
    code = Driver(Store.open(), args[0]).run()
    print(f"driver done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
