"""Embedding maps on a Ray cluster (``dataset embed --executor ray``): the set's points split into shards, each
embedded by a Ray task with the resources it needs (a GPU each where the cluster has GPUs), running the very code
of the local path (``embeddings.embed_shard``).

Tasks are pulled as workers free up (``workers`` at a time, 4 shards each), so a slow node takes fewer. A task
whose worker process or node dies is retried by Ray; it skips the points already committed (one transaction per
batch, one point per sample and label), so nothing is lost or doubled. The caller projects the map once every
shard is done.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from verilabel.datasets.embeddings import EmbeddingSummary, RayOptions, ShardTask, embed_shard
from verilabel.errors import VerilabelError
from verilabel.runs.ray_executor import alive_nodes, check_store, connect
from verilabel.runs.worker import single_threaded_opencv
from verilabel.store import Store

SHARDS_PER_WORKER = 4
TASK_RETRIES = 3  # a worker process or node lost mid-shard: the shard again, from what is committed


def _embed_remote_shard(task: ShardTask) -> dict[str, Any]:
    single_threaded_opencv()
    summary = embed_shard(task)
    return {"embedded": summary.embedded, "skipped": summary.skipped, "failed": summary.failed}


def embed_on_ray(
    store: Store, task: ShardTask, options: RayOptions, on_batch: Callable[[int], None] | None
) -> EmbeddingSummary:
    ray = connect(options.address)
    try:
        check_store(store.url, alive_nodes(ray))
        gpus = options.gpus_per_worker
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        remote = ray.remote(num_cpus=options.cpus_per_worker, num_gpus=gpus, max_retries=TASK_RETRIES)(
            _embed_remote_shard
        )
        shards = max(1, options.workers) * SHARDS_PER_WORKER
        queue = [dataclasses.replace(task, shard=k, shards=shards) for k in range(shards)]
        running = [remote.remote(queue.pop(0)) for _ in range(min(options.workers, len(queue)))]
        summary = EmbeddingSummary(task.job.key)
        while running:
            done, running = ray.wait(running, num_returns=1)
            try:
                result = ray.get(done[0])
            except ray.exceptions.RayTaskError as exc:  # the shard's own error (a bad image is not one)
                cause = getattr(exc, "cause", None)
                if isinstance(cause, VerilabelError):
                    raise cause from None
                raise
            summary.embedded += result["embedded"]
            summary.skipped += result["skipped"]
            summary.failed += [tuple(failure) for failure in result["failed"]]
            if on_batch is not None:
                on_batch(result["embedded"] + result["skipped"] + len(result["failed"]))
            if queue:
                running.append(remote.remote(queue.pop(0)))
        return summary
    finally:
        ray.shutdown()
