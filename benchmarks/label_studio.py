"""verilabel with Label Studio: the ML backend's ``/predict`` against the reference backends' per-task loop, and a
bulk push of many predictions into a real Label Studio.

    python benchmarks/label_studio.py predict [--tasks 64] [--rounds 3]
    python benchmarks/label_studio.py push --label-studio PATH/TO/label-studio [--predictions 100000]

``predict``: one ``/predict`` request of N tasks (images 640x480 JPEG behind a local HTTP server that, like Label
Studio, wants the token) answered by verilabel's backend, against the same tasks through the loop the reference
backends run (each task in turn: fetch its image, decode it, predict a batch of one, make its regions), with the
same loaded model (SSDlite320 at its real size, random weights: speed does not depend on them). Alternating,
``--rounds`` times each, in one sitting. Model loading is excluded from both.

``push``: a dataset of N samples with a box each (rows made directly: no image files needed), a Label Studio
project with one task per sample, then ``labelstudio push``: its rate (predictions/s, Label Studio's own work
included) and the pushing process's peak memory above its start. Label Studio starts in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.engine_throughput import make_jpegs

TOKEN = "bench-token"
CONFIG = """<View><Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image"><Label value="person"/><Label value="car"/><Label value="dog"/>
  </RectangleLabels></View>"""


def bench_predict(tasks: int, rounds: int) -> dict[str, Any]:
    from tests.support import random_models_torchvision
    from tests.support.label_studio_server import media_server

    folder = Path(tempfile.mkdtemp(prefix="vl-ls-bench-"))
    images = make_jpegs(folder / "images", tasks)
    model_name, weights = random_models_torchvision.save("detection", folder / "model", "tiny", calibrated=True)
    with media_server(folder / "images", TOKEN) as base:
        return _rounds(base, folder, images, model_name, str(weights), tasks, rounds)


def _rounds(
    base: str, folder: Path, images: list[Path], model_name: str, weights: str, tasks: int, rounds: int
) -> dict[str, Any]:
    from verilabel.datasets.images import decode_sized
    from verilabel.integrations.label_studio_backend import (
        Backend,
        Connection,
        _Regions,
        fetch,
        label_map,
        parse_config,
    )
    from verilabel.models import registry
    from verilabel.models.interface import ImageItem, PredictContext

    # a low floor: random weights score low, and the regions' making is part of the work measured
    backend = Backend(model_name, weights=str(weights), device="cpu", min_confidence=0.05)
    backend.setup({"project": "1.1", "schema": CONFIG, "hostname": base, "access_token": TOKEN})
    body = {
        "tasks": [{"id": i, "data": {"image": f"/data/upload/1/{p.name}"}} for i, p in enumerate(images)],
        "project": "1.1",
        "label_config": CONFIG,
    }
    (control,) = parse_config(CONFIG)
    ref = registry.resolve(model_name, str(weights))
    mapping = label_map(control, ref.vocabulary, ref.zero_shot)
    backend.predict(body)  # loads the model, warms both paths' caches
    model = backend._model(model_name, tuple(mapping), "detection")
    context = PredictContext("detection", tuple(mapping), 0.05)
    regions = _Regions(control, mapping, {})
    connection = Connection(base, TOKEN)

    def naive() -> int:
        """The reference backends' way: one task after another, a batch of one each."""
        count = 0
        for index, task in enumerate(body["tasks"]):
            path = folder / f"naive-{index}.jpg"
            path.write_bytes(fetch(task["data"]["image"], connection))
            array, size = decode_sized(path)
            item = ImageItem(index, str(path), array, full_size=size)
            for label in model.predict([item], context)[0]:
                if label.label in mapping:
                    count += len(regions(label, item))
        return count

    def ours() -> int:
        answer = backend.predict(body)
        return sum(len(r["result"]) for r in answer["results"])

    timings: dict[str, list[float]] = {"verilabel": [], "per_task_loop": []}
    found: dict[str, int] = {}
    for _ in range(rounds):
        for name, work in (("verilabel", ours), ("per_task_loop", naive)):
            start = time.perf_counter()
            found[name] = work()
            timings[name].append(time.perf_counter() - start)
    best = {name: min(values) for name, values in timings.items()}
    return {
        "tasks": tasks,
        "model": model_name,
        "batch_size": model.spec.batch_size,
        "seconds": {name: [round(v, 3) for v in values] for name, values in timings.items()},
        "tasks_per_s": {name: round(tasks / value, 1) for name, value in best.items()},
        "median_s": {name: round(statistics.median(values), 3) for name, values in timings.items()},
        "speedup": round(best["per_task_loop"] / best["verilabel"], 2),
        "regions": found,
    }


def bench_push(executable: str, predictions: int, chunk: int) -> dict[str, Any]:
    from sqlalchemy import insert, select
    from tests.support.label_studio_server import TOKEN as LS_TOKEN
    from tests.support.label_studio_server import label_studio_server

    from verilabel.datasets import service as ds
    from verilabel.integrations import label_studio_sync as sync
    from verilabel.integrations.label_studio_api import LabelStudioClient
    from verilabel.labels import new_label_id
    from verilabel.store import Store
    from verilabel.store.schema import LabelRow, SampleRow

    base = Path(tempfile.mkdtemp(prefix="vl-ls-push-"))
    os.environ["VERILABEL_HOME"] = str(base / "verilabel")
    os.environ.pop("VERILABEL_DATABASE_URL", None)
    store = Store.open()
    ds.create_dataset(store, "big")
    with store.write() as session:
        dataset_id = ds.dataset_row(session, "big").id
        now = ds.now()
        rows = [
            {"dataset_id": dataset_id, "path": f"/data/big/{i:07d}.jpg", "width": 640, "height": 480, "meta": {}}
            for i in range(predictions)
        ]
        for start in range(0, len(rows), 10_000):
            session.execute(insert(SampleRow), [r | {"created_at": now} for r in rows[start : start + 10_000]])
        field = ds.ensure_field(session, dataset_id, "boxes", "detection")
        ids = list(
            session.scalars(select(SampleRow.id).where(SampleRow.dataset_id == dataset_id).order_by(SampleRow.id))
        )
        labels = [
            {"id": new_label_id(), "sample_id": s, "field_id": field.id, "kind": "detection", "label": "car",
             "confidence": 0.5 + (s % 50) / 100, "x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4, "attributes": {}, "tags": []}
            for s in ids
        ]  # fmt: skip
        for start in range(0, len(labels), 10_000):
            session.execute(insert(LabelRow), labels[start : start + 10_000])

    with label_studio_server(executable, base / "label-studio") as ls:
        project = ls.call("POST", "/api/projects", {"title": "push bench", "label_config": CONFIG})["id"]
        started = time.perf_counter()
        for start in range(0, predictions, 10_000):
            tasks = [
                {"data": {"image": f"/data/local-files/?d=big/{i:07d}.jpg"}}
                for i in range(start, min(predictions, start + 10_000))
            ]
            ls.call("POST", f"/api/projects/{project}/import", tasks)
        task_import = time.perf_counter() - started

        client = LabelStudioClient(ls.url, LS_TOKEN)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        source, version = sync.push_source(store, dataset="big", field_name="boxes")
        summary = sync.push(store, client, project, source, version, chunk=chunk)
        pushed = time.perf_counter() - started
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        stored = ls.call("GET", f"/api/tasks?project={project}&page=1&page_size=1&fields=task_only")[
            "total_predictions"
        ]
    return {
        "predictions": predictions,
        "chunk": chunk,
        "created": summary.predictions,
        "stored_by_label_studio": stored,
        "push_s": round(pushed, 1),
        "predictions_per_s": round(summary.predictions / pushed, 1),
        "task_import_s": round(task_import, 1),
        "peak_rss_growth_mb": round((rss_after - rss_before) / 1024, 1),
        "peak_rss_mb": round(rss_after / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict")
    predict.add_argument("--tasks", type=int, default=64)
    predict.add_argument("--rounds", type=int, default=3)
    push = commands.add_parser("push")
    push.add_argument("--label-studio", required=True, help="the label-studio executable (its own virtualenv)")
    push.add_argument("--predictions", type=int, default=100_000)
    push.add_argument("--chunk", type=int, default=5000)
    args = parser.parse_args()
    if args.command == "predict":
        result = bench_predict(args.tasks, args.rounds)
    else:
        result = bench_push(args.label_studio, args.predictions, args.chunk)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
