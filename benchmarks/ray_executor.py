"""The Ray executor against the local one, and Ray's scaling from 1 to N workers, on one machine.

    python benchmarks/ray_executor.py --images 3000 --rate 100 --workers 1,2 [--database-url postgresql+psycopg://...]

Each worker runs the simulated-device model (``benchmarks.simulated_device``: a GPU-like stream at ``--rate``
images/s per worker, 20 detections per image), so what is measured is the engine and the executor, not this
machine's CPU running a network. The same dataset (160x120 JPEGs) is labelled by: the local executor with one
worker; the Ray executor with one worker; the Ray executor with each N of ``--workers``. Ray runs on a cluster
started here (``ray start --head`` with every core), as it would be on a real one; PostgreSQL is advised for N > 1
(SQLite serialises the writers). Reported: the end-to-end rate (create to in review, the executor's start-up
included) and the workers' rate (first worker start to last heartbeat, as ``run show`` reports it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the workers import benchmarks.simulated_device

from benchmarks.engine_throughput import make_jpegs  # noqa: E402

MODEL = "python:benchmarks.simulated_device:load"
PORT = 6393


def one_run(
    store: Any, dataset: str, field: str, rate: float, workers: int, executor: str, per_worker: int | None
) -> dict[str, Any]:
    from verilabel.runs import service as runs
    from verilabel.runs.config import RunRequest

    request = RunRequest(
        dataset=dataset,
        task="detection",
        model=MODEL,
        field=field,
        classes=["person", "car", "dog", "cat"],
        batch_size=32,
        device="cpu",
        workers=workers,
        model_options={"rate": rate, "labels": 20, "batch_size": 32},
        executor=executor,
        ray_address=f"127.0.0.1:{PORT}" if executor == "ray" else None,
        shards=workers * per_worker if executor == "ray" and per_worker else None,
    )
    start = time.perf_counter()
    info = runs.wait_run(store, runs.create_run(store, request).id, poll=0.2)
    wall = time.perf_counter() - start
    if info.status != "in_review":
        raise RuntimeError(f"{field}: run ended {info.status}: {info.error}")
    return {
        "executor": executor,
        "workers": workers,
        "images": info.done,
        "labels": info.labels,
        "end_to_end_rate": round(info.done / wall, 1),
        "workers_rate": round(info.average_rate or 0.0, 1),
        "ceiling": rate * workers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=100.0, help="simulated device images/s per worker")
    parser.add_argument("--workers", default="1,2", help="Ray worker counts to measure")
    parser.add_argument("--shards-per-worker", type=int, help="Ray shards per worker (default: verilabel's, 8)")
    parser.add_argument("--database-url", help="PostgreSQL URL for the store (default: SQLite in a fresh home)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "verilabel-ray-bench")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    os.environ["VERILABEL_HOME"] = str(args.workdir / f"home-{time.time_ns()}")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    if args.database_url:
        os.environ["VERILABEL_DATABASE_URL"] = args.database_url
    else:
        os.environ.pop("VERILABEL_DATABASE_URL", None)
    from verilabel.datasets import service as datasets
    from verilabel.store import Store

    paths = make_jpegs(args.workdir / f"small-{args.images}", args.images, width=160, height=120)
    store = Store.open()
    dataset = f"bench-{time.time_ns()}"  # a shared PostgreSQL may hold earlier ones
    datasets.create_dataset(store, dataset)
    datasets.add_images(store, dataset, paths[0].parent)
    ray = str(Path(sys.executable).with_name("ray"))
    cpus = str(os.cpu_count() or 2)
    subprocess.run(
        [ray, "start", "--head", "--port", str(PORT), "--node-ip-address", "127.0.0.1", "--num-cpus", cpus,
         "--include-dashboard", "false", "--disable-usage-stats"],
        check=True, capture_output=True,
    )  # fmt: skip
    results: dict[str, Any] = {"cpus": os.cpu_count(), "store": store.url.split(":")[0], "runs": []}
    try:
        plans = [("local", 1), ("ray", 1)] + [("ray", int(n)) for n in args.workers.split(",") if int(n) > 1]
        for n, (executor, workers) in enumerate(plans):
            result = one_run(store, dataset, f"run{n}", args.rate, workers, executor, args.shards_per_worker)
            results["runs"].append(result)
            print(
                f"{executor} x{workers}: {result['images']} images, workers {result['workers_rate']} img/s, "
                f"end to end {result['end_to_end_rate']} img/s (ceiling {result['ceiling']:g})",
                flush=True,
            )
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True)
    local, one = results["runs"][0], results["runs"][1]
    results["ray_vs_local_one_worker"] = round(one["workers_rate"] / local["workers_rate"], 3)
    for run in results["runs"][2:]:
        run["scaling_vs_one"] = round(run["workers_rate"] / one["workers_rate"] / run["workers"], 3)
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
