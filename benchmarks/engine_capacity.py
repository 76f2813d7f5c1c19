"""How much of a GPU's forward ceiling the engine's host side can feed, measured without a GPU.

    python benchmarks/engine_capacity.py [--profiles yolov8m,clip] [--seconds 10] [--out results.json]

Each profile is a catalogue model as measured on an H100 (docs/performance.md): its forward-only ceiling in
images/s at its best batch size and the labels it keeps per image. A real ``verilabel`` run (worker process,
decode pool, post-processing, contract checks, batched SQLite writes) labels generated images with
``benchmarks/simulated_device.py``: a model whose device time is simulated at exactly that ceiling while every
host step is real. The run's rate against the ceiling is the share of the GPU the engine would keep busy.

Images are small (160x120 JPEGs) so that decoding, which the GPU machine's 16 cores spread across threads, does
not hide the single-process work (post-processing, checks, writes) this measures on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the worker imports benchmarks.simulated_device

from benchmarks.adapter_throughput import _rate
from benchmarks.engine_throughput import make_jpegs

# name: (H100 forward ceiling img/s, best batch, task, labels per image)
PROFILES: dict[str, tuple[float, int, str, int]] = {
    "faster-rcnn": (165.0, 32, "detection", 20),
    "yolov8m": (1020.0, 32, "detection", 20),
    "owlv2": (225.0, 32, "detection", 20),
    "grounding-dino": (44.5, 32, "detection", 20),
    "clip-b32": (10782.0, 256, "classification", 1),
}
MODEL = "python:benchmarks.simulated_device:load"


def run_profile(store: Any, name: str, sample_ids: list[int], decode_threads: int | None) -> dict[str, Any]:
    from verilabel.runs import service as runs
    from verilabel.runs.config import RunRequest

    ceiling, batch, task, labels = PROFILES[name]
    request = RunRequest(
        dataset="capacity",
        task=task,
        model=MODEL,
        field=f"labels_{name.replace('-', '_')}",
        classes=["person", "car", "dog", "cat"],
        sample_ids=sample_ids,
        batch_size=batch,
        device="cpu",
        decode_threads=decode_threads,
        model_options={"rate": ceiling, "labels": labels, "batch_size": batch},
    )
    start = time.perf_counter()
    info = runs.wait_run(store, runs.create_run(store, request).id, poll=2.0)
    wall = time.perf_counter() - start
    if info.status != "in_review":
        raise RuntimeError(f"{name}: run ended {info.status}: {info.error}")
    timings = info.timings
    steady_images = info.done - float(timings.get("first_batch_images", 0))
    steady_wall = float(timings["wall"]) - float(timings.get("first_batch", 0))
    steady = _rate(steady_images, steady_wall)
    return {
        "ceiling": ceiling,
        "batch": batch,
        "images": info.done,
        "labels": info.labels,
        "pipeline_rate": _rate(info.done, float(timings["wall"])),
        "steady_rate": steady,
        "end_to_end_rate": _rate(info.done, wall),
        "engine_vs_ceiling": round(steady / ceiling, 3),
        "timings": timings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--seconds", type=float, default=10.0, help="simulated device time per profile")
    parser.add_argument("--max-images", type=int, default=20000)
    parser.add_argument("--decode-threads", type=int)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "verilabel-capacity")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    os.environ["VERILABEL_HOME"] = str(args.workdir / f"home-{time.time_ns()}")
    os.environ.pop("VERILABEL_DATABASE_URL", None)
    from verilabel.datasets import service as datasets
    from verilabel.store import Store

    paths = make_jpegs(args.workdir / f"small-{args.max_images}", args.max_images, width=160, height=120)
    store = Store.open()
    datasets.create_dataset(store, "capacity")
    datasets.add_images(store, "capacity", paths[0].parent)
    ids = datasets.sample_ids(store, "capacity")
    results: dict[str, Any] = {"cpus": os.cpu_count(), "profiles": {}}
    for name in args.profiles.split(","):
        count = min(len(ids), max(PROFILES[name][1] * 8, int(PROFILES[name][0] * args.seconds)))
        result = run_profile(store, name, ids[:count], args.decode_threads)
        results["profiles"][name] = result
        waits = {k: result["timings"].get(k) for k in ("model", "wait_decode", "wait_write", "wait_labels")}
        print(
            f"{name}: {result['images']} images, ceiling {result['ceiling']} img/s, engine {result['steady_rate']} "
            f"img/s after the first batch: {result['engine_vs_ceiling']:.0%}  {waits}",
            flush=True,
        )
        if args.out:
            args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
