"""Per adapter: throughput through the engine against the same model's forward-only ceiling, in one sitting.

    python benchmarks/adapter_throughput.py [--models a,b] [--images 512] [--device cuda] [--out results.json]

Models are the real architectures at their real sizes with random weights (speed does not depend on the
weights), built offline by ``tests/support/random_models_*``. Images: generated 640x480 JPEGs.

1. ceiling: the adapter's ``forward`` (upload, normalisation and the network; no decoding, no
   post-processing, no writing) on batches already prepared in memory, at the batch sizes of ``--batches``; the
   best is the ceiling (the method of shared/anchors/gpu_anchor.py, which also runs bf16 on the GPU);
2. engine: a real ``verilabel`` run (a background worker: decode pool -> batched model -> post-processing ->
   batched writes) at the ceiling's best batch size, timed over the pipeline's wall time after its first batch;
3. the ceiling again at that batch size: the ratio is against the mean of the two readings (machines drift).
Needs `verilabel[all]` (torch, transformers, ultralytics).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support builds the random models

from benchmarks.engine_throughput import make_jpegs

DEFAULT_MODELS = (
    "faster-rcnn-resnet50-fpn-coco",
    "yolov8m-coco",
    "owlv2-base-patch16-ensemble",
    "clip-vit-base-patch32",
    "grounding-dino-tiny",
)
CLASSES = {"zero-shot": ["person", "car", "dog", "cat"]}
LABELS_PER_IMAGE = 20
BATCHES = {"clip-vit-base-patch32": "32,256,1024", "yolov8m-coco": "8,32,128"}  # on a GPU; else --batches


def _torchvision(arch: str) -> Callable[[Path], str]:
    def build(folder: Path) -> str:
        import torch

        from verilabel.models.adapters.torchvision_detection import build_network

        path = folder / f"{arch}.pth"
        torch.save(build_network(arch).state_dict(), path)
        return str(path)

    return build


def _hf(function: str, *args: str) -> Callable[[Path], str]:
    def build(folder: Path) -> str:
        from tests.support import random_models_hf

        return str(getattr(random_models_hf, function)(folder, *args, size="full"))

    return build


def _yolo(kind: str) -> Callable[[Path], str]:
    def build(folder: Path) -> str:
        from tests.support.random_models_ultralytics import save_yolo

        return str(save_yolo(folder, kind, "full"))

    return build


BUILDERS: dict[str, Callable[[Path], str]] = {
    "faster-rcnn-resnet50-fpn-coco": _torchvision("faster-rcnn"),
    "ssdlite320-mobilenet-v3-coco": _torchvision("ssdlite"),
    "yolov8m-coco": _yolo("detect"),
    "owlv2-base-patch16-ensemble": _hf("save_owl", "owlv2"),
    "grounding-dino-tiny": _hf("save_grounding_dino"),
    "clip-vit-base-patch32": _hf("save_clip"),
}


def _rate(images: float, seconds: float) -> float:
    """Images per second to 3 significant digits (0.137 on a CPU, 1,020 on a GPU)."""
    return float(f"{images / seconds:.3g}")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def load(name: str, weights: str, device: str, classes: tuple[str, ...]) -> Any:
    from verilabel.models import registry
    from verilabel.models.interface import LoadRequest

    ref = registry.resolve(name, weights)
    return registry.load(ref, LoadRequest(weights=weights, device=device, classes=classes))


def ceiling(
    model: Any, paths: list[Path], batches: list[int], device: str, classes: tuple[str, ...]
) -> dict[int, float]:
    """Forward-only images/s per batch size, on inputs prepared once (the best is the ceiling)."""
    from verilabel.datasets.images import decode
    from verilabel.models.interface import ImageItem, PredictContext

    prepared = [model.prepare(decode(p, draft_size=model.spec.input_size)) for p in paths]
    context = PredictContext("detection", classes, 0.0)
    rates: dict[int, float] = {}
    for batch in batches:
        chunks = [prepared[i : i + batch] for i in range(0, len(prepared) - batch + 1, batch)] or [prepared]
        try:
            forward = getattr(model, "forward", None)
            if forward is None:  # no separate forward: the whole predict is the ceiling
                items = [ImageItem(i, "", decode(p)) for i, p in enumerate(paths)]
                chunks = [items[i : i + batch] for i in range(0, len(items) - batch + 1, batch)] or [items]

                def forward(chunk: list[Any]) -> Any:
                    return model.predict(chunk, context)

            forward(chunks[0])
            _sync(device)
            start = time.perf_counter()
            done = 0
            for chunk in chunks:
                forward(chunk)
                done += len(chunk)
            _sync(device)
            rates[batch] = _rate(done, time.perf_counter() - start)
        except Exception as exc:  # out of memory at a large batch: the smaller ones stand
            print(f"  batch {batch}: {type(exc).__name__}: {str(exc)[:120]}", flush=True)
            break
        print(f"  ceiling at batch {batch}: {rates[batch]} img/s", flush=True)
    return rates


def worker_rates(info: Any) -> tuple[list[dict[str, Any]], float, float]:
    """A finished run's per-worker timings, and its images/s over the pipeline's wall and after the first batch
    (which pays the warm-up a long run amortises). Several workers run side by side: their rates add up."""
    per_worker = [w.timings for w in info.workers if w.timings.get("wall")] or [info.timings]
    pipeline = sum(float(t["images"]) / float(t["wall"]) for t in per_worker)
    steady = sum(
        (float(t["images"]) - float(t.get("first_batch_images", 0)))
        / (float(t["wall"]) - float(t.get("first_batch", 0)))
        for t in per_worker
    )
    return per_worker, pipeline, steady


def engine(
    name: str, weights: str, images: Path, batch: int, device: str, classes: list[str], home: Path, workers: int = 1
) -> dict[str, Any]:
    os.environ["VERILABEL_HOME"] = str(home)
    os.environ.pop("VERILABEL_DATABASE_URL", None)
    from verilabel.datasets import service as datasets
    from verilabel.runs import service as runs
    from verilabel.runs.config import RunRequest
    from verilabel.store import Store

    store = Store.open()
    datasets.create_dataset(store, "bench")
    datasets.add_images(store, "bench", images)
    request = RunRequest(
        dataset="bench",
        task="classification" if "clip" in name else "detection",
        model=name,
        field="labels",
        weights=weights,
        classes=classes,
        device=device,
        batch_size=batch,
        workers=workers,
        max_labels=LABELS_PER_IMAGE,  # random weights score everything alike: keep a realistic label count
    )
    start = time.perf_counter()
    info = runs.wait_run(store, runs.create_run(store, request).id, poll=2.0)
    wall = time.perf_counter() - start
    if info.status != "in_review":
        raise RuntimeError(f"{name}: run ended {info.status}: {info.error}")
    per_worker, pipeline, steady = worker_rates(info)
    return {
        "images": info.done,
        "labels": info.labels,
        "workers": len(per_worker),
        "pipeline_rate": float(f"{pipeline:.3g}"),
        "steady_rate": float(f"{steady:.3g}"),
        "end_to_end_rate": _rate(info.done, wall),
        "timings": per_worker[0] if len(per_worker) == 1 else per_worker,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--images", type=int, default=512, help="images in the engine run")
    parser.add_argument("--ceiling-images", type=int, default=128, help="images for the forward-only ceiling")
    parser.add_argument("--batches", default="1,8,32", help="batch sizes tried for the ceiling")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=1, help="worker processes of the engine run (one GPU: shared)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "verilabel-adapters")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    os.environ["VERILABEL_OFFLINE"] = "1"
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    paths = make_jpegs(workdir / f"jpegs-{args.images}", args.images)
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else f"cpu x{os.cpu_count()}",
        "torch": torch.__version__,
        "models": {},
    }
    for name in args.models.split(","):
        print(f"{name}:", flush=True)
        try:
            from verilabel.models import registry

            weights = BUILDERS[name](Path(tempfile.mkdtemp(dir=workdir)))
            zero_shot = registry.resolve(name).zero_shot
            classes = CLASSES["zero-shot"] if zero_shot else ["person", "car", "dog"]
            model = load(name, weights, device, tuple(classes))
            on_gpu = device.startswith("cuda")
            batches = [int(b) for b in (BATCHES.get(name, args.batches) if on_gpu else args.batches).split(",")]
            ceiling_images = max(args.ceiling_images, 2 * max(batches))
            rates = ceiling(model, (paths * 4)[:ceiling_images], batches, device, tuple(classes))
            del model
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            best = max(rates, key=lambda b: rates[b])
            home = workdir / f"home-{time.time_ns()}"
            run = engine(name, weights, paths[0].parent, best, device, classes, home, args.workers)
            # The ceiling again at the best batch, after the run: the machine drifts, so compare with the mean.
            model = load(name, weights, device, tuple(classes))
            after = ceiling(model, (paths * 4)[:ceiling_images], [best], device, tuple(classes)).get(best)
            del model
            reference = (rates[best] + after) / 2 if after else rates[best]
            ratio = round((run["steady_rate"] or run["pipeline_rate"]) / reference, 3)
            results["models"][name] = {
                "ceiling": rates,
                "best_batch": best,
                "ceiling_after": after,
                "engine": run,
                "engine_vs_ceiling": ratio,
            }
            print(
                f"  engine {run['pipeline_rate']} img/s at batch {best} ({run['steady_rate']} after the first batch):"
                f" {ratio:.0%} of the ceiling",
                flush=True,
            )
        except Exception as exc:  # keep measuring the others
            print(f"  FAILED: {type(exc).__name__}: {exc}", flush=True)
            results["models"][name] = {"error": f"{type(exc).__name__}: {exc}"}
        if args.out:
            args.out.write_text(json.dumps(results, indent=2))
    json.dump(results, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
