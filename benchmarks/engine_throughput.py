"""Engine throughput against a naive loop and the model's forward-only ceiling, in one sitting.

    python benchmarks/engine_throughput.py [--images 2000] [--memory 1000,10000] [--out results.json]

Model: torchvision SSDlite320-MobileNetV3 (the real architecture, random weights: speed does not depend on the
weights), capped at 20 detections per image. Images: generated 640x480 JPEGs.

1. ceiling: ``model.forward`` on batches already prepared in memory (no decoding, no writing);
2. engine: ``verilabel`` run (a background worker: decode pool -> batched model -> batched writes);
3. naive loop: per image open -> preprocess -> forward at batch 1 -> insert and commit each label.

Then the engine's peak worker memory (RSS) on each dataset size of ``--memory``. Needs `verilabel[torch]`.
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

import numpy as np
from PIL import Image

DETECTIONS_PER_IMAGE = 20


def make_jpegs(folder: Path, count: int, width: int = 640, height: int = 480) -> list[Path]:
    """Deterministic, JPEG-realistic images (gradients + noise); existing files are reused."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    paths = []
    for i in range(count):
        path = folder / f"img_{i:06d}.jpg"
        if not path.exists():
            base = np.stack([(xx * (i % 7 + 1)) % 256, (yy * 3 + i * 7) % 256, ((xx + yy) // 2) % 256], -1)
            noise = rng.integers(0, 24, size=base.shape)
            Image.fromarray((base + noise).clip(0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def build_model(weights: Path) -> Any:
    from verilabel.models import registry
    from verilabel.models.interface import LoadRequest

    ref = registry.resolve("ssdlite320-mobilenet-v3-coco")
    request = LoadRequest(
        weights=str(weights), device="cpu", min_confidence=0.0, options={"detections_per_img": DETECTIONS_PER_IMAGE}
    )
    return registry.load(ref, request)


def ceiling(model: Any, paths: list[Path], batch: int) -> float:
    from verilabel.datasets.images import decode

    tensors = [model.prepare(decode(p)) for p in paths]
    batches = [tensors[i : i + batch] for i in range(0, len(tensors), batch)]
    model.forward(batches[0])  # warm-up
    start = time.perf_counter()
    for chunk in batches:
        model.forward(chunk)
    return len(tensors) / (time.perf_counter() - start)


def naive_loop(model: Any, paths: list[Path], store_url: str) -> tuple[float, int]:
    """What a simple script does: one image at a time, one commit per label."""
    import torch
    from sqlalchemy import create_engine, text

    from verilabel.labels import Box, new_label_id

    engine = create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS naive (id TEXT PRIMARY KEY, sample TEXT, label TEXT, "
                "confidence REAL, x REAL, y REAL, w REAL, h REAL)"
            )
        )
    names = model._names
    count = 0
    start = time.perf_counter()
    for path in paths:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"))
        tensor = torch.from_numpy(array).permute(2, 0, 1).float().div(255)
        with torch.inference_mode():
            (out,) = model._net([tensor])
        height, width = array.shape[:2]
        for (x1, y1, x2, y2), score, cls in zip(
            out["boxes"].tolist(), out["scores"].tolist(), out["labels"].tolist(), strict=True
        ):
            box = Box.from_xyxy_pixels(x1, y1, x2, y2, width, height)
            with engine.begin() as conn:
                conn.execute(
                    text("INSERT INTO naive VALUES (:id, :s, :l, :c, :x, :y, :w, :h)"),
                    {
                        "id": new_label_id(),
                        "s": str(path),
                        "l": names[cls],
                        "c": score,
                        "x": box.x,
                        "y": box.y,
                        "w": box.w,
                        "h": box.h,
                    },
                )
            count += 1
    return len(paths) / (time.perf_counter() - start), count


def engine_run(paths_dir: Path, count: int, weights: Path, home: Path) -> dict[str, Any]:
    """A real run through the public API (background worker process), timed from creation to in_review."""
    os.environ["VERILABEL_HOME"] = str(home)
    os.environ.pop("VERILABEL_DATABASE_URL", None)
    from verilabel.datasets import service as datasets
    from verilabel.runs import service as runs
    from verilabel.runs.config import RunRequest
    from verilabel.store import Store

    store = Store.open()
    name = f"bench-{count}"
    datasets.create_dataset(store, name)
    datasets.add_images(store, name, paths_dir)
    request = RunRequest(
        dataset=name,
        task="detection",
        model="ssdlite320-mobilenet-v3-coco",
        field="boxes",
        weights=str(weights),
        min_confidence=0.0,
        device="cpu",
        model_options={"detections_per_img": DETECTIONS_PER_IMAGE},
    )
    start = time.perf_counter()
    info = runs.wait_run(store, runs.create_run(store, request).id, poll=2.0)  # light observer
    wall = time.perf_counter() - start
    if info.status != "in_review":
        raise SystemExit(f"engine run ended {info.status}: {info.error}")
    timings = info.timings
    pipeline_wall = float(timings["wall"])
    return {
        "images": info.done,
        "labels": info.labels,
        "end_to_end_s": round(wall, 1),
        "pipeline_rate": round(info.done / pipeline_wall, 2),
        "end_to_end_rate": round(info.done / wall, 2),
        "peak_rss_mb": timings.get("peak_rss_mb"),
        "timings": timings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--memory", default="1000,10000", help="dataset sizes for the peak-memory runs ('' skips)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "verilabel-bench")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    from verilabel.models.adapters.torchvision_detection import build_network

    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    weights = workdir / "ssdlite-random.pth"
    if not weights.exists():
        torch.manual_seed(0)
        torch.save(build_network("ssdlite").state_dict(), weights)
    results: dict[str, Any] = {
        "model": "ssdlite320-mobilenet-v3-coco (random weights)",
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }

    paths = make_jpegs(workdir / f"jpegs-{args.images}", args.images)
    model = build_model(weights)
    batch = model.spec.batch_size
    before = ceiling(model, paths[:480], batch)
    print(f"ceiling before (forward only, batch {batch}): {before:.2f} img/s", flush=True)

    engine = engine_run(workdir / f"jpegs-{args.images}", args.images, weights, workdir / f"home-{time.time_ns()}")
    results["engine"] = engine
    print(
        f"engine: {engine['pipeline_rate']} img/s in the pipeline, {engine['end_to_end_rate']} img/s end to end "
        f"(incl. worker start + model load), {engine['labels'] / engine['images']:.1f} labels/image",
        flush=True,
    )

    naive_rate, naive_labels = naive_loop(model, paths, f"sqlite:///{workdir / f'naive-{time.time_ns()}.db'}")
    results["naive_img_s"] = round(naive_rate, 2)
    print(f"naive loop: {naive_rate:.2f} img/s ({naive_labels} labels committed one by one)", flush=True)

    after = ceiling(model, paths[:480], batch)
    ceiling_rate = (before + after) / 2  # the machine drifts: bracket the engine run with two measurements
    results["ceiling_img_s"] = {"before": round(before, 2), "after": round(after, 2), "mean": round(ceiling_rate, 2)}
    print(f"ceiling after: {after:.2f} img/s", flush=True)
    results["engine_vs_ceiling"] = round(engine["pipeline_rate"] / ceiling_rate, 3)
    results["naive_vs_ceiling"] = round(naive_rate / ceiling_rate, 3)
    results["engine_vs_naive"] = round(engine["pipeline_rate"] / naive_rate, 3)
    print(
        f"ratios: engine/ceiling {results['engine_vs_ceiling']:.0%}, naive/ceiling {results['naive_vs_ceiling']:.0%}, "
        f"engine/naive {results['engine_vs_naive']:.2f}x",
        flush=True,
    )

    sizes = [int(s) for s in args.memory.split(",") if s.strip()]
    memory = {}
    for size in sizes:
        make_jpegs(workdir / f"jpegs-{size}", size)
        run = engine_run(workdir / f"jpegs-{size}", size, weights, workdir / f"home-mem-{size}-{time.time_ns()}")
        memory[size] = run["peak_rss_mb"]
        print(f"peak worker RSS at {size} images: {run['peak_rss_mb']} MB ({run['pipeline_rate']} img/s)", flush=True)
    if len(sizes) >= 2:
        results["peak_rss_mb"] = memory
        results["memory_ratio"] = round(memory[sizes[-1]] / memory[sizes[0]], 3)
        print(f"peak memory {sizes[-1]} vs {sizes[0]} images: {results['memory_ratio']:.2f}x", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    json.dump(results, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
