"""ONNX Runtime against torch on the CPU, whole runs on the same JPEGs, alternating in one sitting.

    python benchmarks/cpu_runtime.py [--models a,b] [--images 200] [--rounds 2] [--out results.json]

For each model (real architectures at their real sizes, random weights with calibrated batch norms: speed does
not depend on the weights), in one sitting:

1. whole ``verilabel`` runs (a background worker: decode pool -> batched model -> post-processing -> batched
   writes) with ``--runtime torch`` and ``--runtime onnx`` alternating, ``--rounds`` times each. Reported: the
   pipeline's images/s (its wall, model loaded), after its first batch, and end to end (``run create`` to
   ``in_review``, worker start and model load included). The first ONNX run builds the export; its time is
   reported apart, as is the cached load of the next ones;
2. ONNX Runtime's own batched ceiling: the adapter's ``forward`` alone on inputs prepared in memory, at the
   run's batch size; the engine's ratio to it.

``--transformers`` adds a forward-only comparison for a transformer (torchvision's ViT-B/16). Needs `verilabel[all]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support builds the random models

from benchmarks.adapter_throughput import ceiling, worker_rates
from benchmarks.engine_throughput import make_jpegs

# catalogue name -> (builder of its random weights, task of the run)
DEFAULT_MODELS = (
    "ssdlite320-mobilenet-v3-coco",
    "yolo11n-coco",
    "resnet50-imagenet",
    "deeplabv3-mobilenet-v3-voc",
)


def _torchvision(kind: str, size: str) -> Callable[[Path, list[Path]], str]:
    def build(folder: Path, images: list[Path]) -> str:
        from tests.support import random_models_torchvision

        return str(random_models_torchvision.save(kind, folder, size, calibrated=True)[1])  # type: ignore[arg-type]

    return build


def _yolo(folder: Path, images: list[Path]) -> str:
    import torch
    from tests.support.random_models_ultralytics import build_yolo

    net = build_yolo("detect", "tiny")
    _few_candidates(net, images[:8])
    path = folder / "yolo11n-random.pt"
    torch.save({"model": net.half(), "train_args": {"imgsz": 640, "task": "detect"}, "version": "random"}, path)
    return str(path)


def _few_candidates(net: Any, images: list[Path], per_image: int = 10) -> None:
    """Shift the class logits so that about ``per_image`` (anchor, class) scores per image pass 0.25 on these
    JPEGs, as with real weights on photos: a random head passes every anchor, and NMS over 8,400 boxes per
    image would be timed instead of the runtime."""
    import torch

    from verilabel.datasets.images import decode
    from verilabel.models.preprocess import letterbox

    head = net.model[-1]
    convs = [branch[-1] for branch in head.cv3]
    logits: list[torch.Tensor] = []
    hooks = [conv.register_forward_hook(lambda m, _, out: logits.append(out.flatten())) for conv in convs]
    batch = torch.from_numpy(np.stack([letterbox(decode(p), 640) for p in images])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        net(batch)
    for hook in hooks:
        hook.remove()
    values = torch.cat(logits)
    quantile = float(
        torch.quantile(values[torch.randperm(len(values))[:1_000_000]], 1 - per_image * len(images) / len(values))
    )
    with torch.no_grad():
        for conv in convs:
            conv.bias -= quantile - float(np.log(0.25 / 0.75))


MODELS: dict[str, tuple[Callable[[Path, list[Path]], str], str]] = {
    "ssdlite320-mobilenet-v3-coco": (_torchvision("detection", "tiny"), "detection"),
    "yolo11n-coco": (_yolo, "detection"),  # built on the run's images (see _few_candidates)
    "resnet50-imagenet": (_torchvision("classification", "full"), "classification"),
    "deeplabv3-mobilenet-v3-voc": (_torchvision("semantic", "tiny"), "segmentation"),
}
CLASSES = {"detection": ["person", "car", "dog"], "classification": [], "segmentation": ["person", "car", "dog"]}
LABELS_PER_IMAGE = 20


def whole_run(
    name: str, weights: str, task: str, images: Path, runtime: str, home: Path, tag: str, workers: int = 1
) -> dict[str, Any]:
    os.environ["VERILABEL_HOME"] = str(home)
    os.environ.pop("VERILABEL_DATABASE_URL", None)
    from verilabel.datasets import service as datasets
    from verilabel.errors import NotFoundError
    from verilabel.runs import service as runs
    from verilabel.runs.config import RunRequest
    from verilabel.store import Store

    store = Store.open()
    try:
        datasets.dataset_info(store, "bench")
    except NotFoundError:
        datasets.create_dataset(store, "bench")
        datasets.add_images(store, "bench", images)
    request = RunRequest(
        dataset="bench",
        task=task,
        model=name,
        field=f"labels_{tag}",
        weights=weights,
        classes=CLASSES[task],
        device="cpu",
        runtime=runtime,
        mask_dir=str(home / "masks") if task == "segmentation" else None,
        max_labels=LABELS_PER_IMAGE,
        workers=workers,
    )
    start = time.perf_counter()
    info = runs.wait_run(store, runs.create_run(store, request).id, poll=0.5)
    wall = time.perf_counter() - start
    if info.status != "in_review":
        raise RuntimeError(f"{name} on {runtime}: the run ended {info.status}: {info.error}")
    per_worker, pipeline, steady = worker_rates(info)
    timings = per_worker[0]
    return {
        "runtime": info.model_info.get("runtime"),
        "export": info.model_info.get("runtime_export", ""),
        "load_model_s": round(float(timings.get("load_model", 0.0)), 2),
        "pipeline_rate": round(pipeline, 2),
        "steady_rate": round(steady, 2),
        "end_to_end_rate": round(info.done / wall, 2),
        "batch_size": info.model_info.get("batch_size"),
        "threads": info.model_info.get("runtime_threads"),
        "labels": info.labels,
    }


def onnx_ceiling(name: str, weights: str, paths: list[Path], batch: int, home: Path) -> float:
    os.environ["VERILABEL_HOME"] = str(home)
    from verilabel.models import registry
    from verilabel.models.interface import LoadRequest

    ref = registry.resolve(name, weights)
    model = registry.load(ref, LoadRequest(weights=weights, device="cpu", runtime="onnx", classes=ref.vocabulary))
    rates = ceiling(model, paths, [batch], "cpu", tuple(ref.vocabulary))
    return float(rates[batch])


def transformer_ceilings(paths: list[Path], batch: int) -> dict[str, float]:
    """torchvision's ViT-B/16, forward only: torch against ONNX Runtime."""
    import torch

    from verilabel.models import registry
    from verilabel.models.adapters.torchvision_classification import ImageNetClassifier, build_network
    from verilabel.models.interface import LoadRequest
    from verilabel.models.runtimes import accelerate

    entry = registry.resolve("vit-b-16-imagenet").entry
    assert entry is not None
    net = build_network("vit_b_16").eval()
    out = {}
    for runtime in ("torch", "onnx"):
        request = LoadRequest(runtime=runtime)
        core, _ = accelerate(net, request=request, device=torch.device("cpu"), name=entry.name, shape=(1, 3, 224, 224))
        model = ImageNetClassifier(entry, net, torch.device("cpu"), core=core)
        out[runtime] = ceiling(model, paths, [batch], "cpu", entry.vocabulary)[batch]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--images", type=int, default=200, help="JPEGs (640 x 480) in each run")
    parser.add_argument("--rounds", type=int, default=2, help="runs per runtime, alternating")
    parser.add_argument("--ceiling-images", type=int, default=128)
    parser.add_argument("--workers", type=int, default=1, help="worker processes per run (they share the cores)")
    parser.add_argument("--transformers", action="store_true", help="also compare ViT-B/16 forward-only")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "verilabel-cpu-runtime")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import onnxruntime
    import torch

    os.environ["VERILABEL_OFFLINE"] = "1"
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    paths = make_jpegs(workdir / f"jpegs-{args.images}", args.images)
    results: dict[str, Any] = {
        "machine": f"cpu x{os.cpu_count()}",
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "images": args.images,
        "models": {},
    }
    for name in filter(None, args.models.split(",")):
        build, task = MODELS[name]
        weights = build(Path(tempfile.mkdtemp(dir=workdir)), paths)
        home = workdir / f"home-{time.time_ns()}"
        print(f"{name}:", flush=True)
        runs: dict[str, list[dict[str, Any]]] = {"torch": [], "onnx": []}
        for round_ in range(args.rounds):
            for runtime in ("torch", "onnx"):
                tag = f"{runtime}{round_}"
                result = whole_run(name, weights, task, paths[0].parent, runtime, home, tag, args.workers)
                runs[runtime].append(result)
                print(f"  {runtime}: {json.dumps(result)}", flush=True)
        batch = int(runs["onnx"][0]["batch_size"])
        roof = onnx_ceiling(name, weights, (paths * 2)[: max(args.ceiling_images, 2 * batch)], batch, home)
        torch_rate = statistics.mean(r["pipeline_rate"] for r in runs["torch"])
        onnx_rate = statistics.mean(r["pipeline_rate"] for r in runs["onnx"])
        onnx_steady = statistics.mean(r["steady_rate"] for r in runs["onnx"])
        summary = {
            "torch_pipeline_rate": round(torch_rate, 2),
            "onnx_pipeline_rate": round(onnx_rate, 2),
            "speedup_pipeline": round(onnx_rate / torch_rate, 2),
            "speedup_end_to_end": round(
                statistics.mean(r["end_to_end_rate"] for r in runs["onnx"])
                / statistics.mean(r["end_to_end_rate"] for r in runs["torch"]),
                2,
            ),
            "export_first_run": runs["onnx"][0]["export"],
            "load_model_s": {
                "torch": runs["torch"][-1]["load_model_s"],
                "onnx_cached": runs["onnx"][-1]["load_model_s"],
            },
            "onnx_ceiling": roof,
            "engine_vs_onnx_ceiling": round(onnx_steady / roof, 3),
        }
        results["models"][name] = {"runs": runs, "summary": summary}
        print(f"  summary: {json.dumps(summary)}", flush=True)
        if args.out:
            args.out.write_text(json.dumps(results, indent=2))
    if args.transformers:
        results["vit_b_16_forward"] = transformer_ceilings((paths * 2)[: args.ceiling_images], 8)
        print(f"vit-b-16 forward only: {results['vit_b_16_forward']}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    json.dump(results, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
