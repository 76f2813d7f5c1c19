"""Embedding maps: how fast ``dataset embed`` goes, and how big maps behave in the app.

    python benchmarks/embeddings.py --images 1000 --points 100000

1. Throughput, on ``--images`` 640x480 JPEGs with the packaged EfficientNet-Lite0 (one process, this machine's
   CPU): the model's ``embed`` on images already decoded (the ceiling), ``compute_embeddings`` end to end (decode,
   embed, write, project), and, for scale, a classification run of the same model on the same images (the run
   engine, ONNX Runtime on a CPU). Reported as images/s and as ratios to the ceiling.
2. Scale, on ``--points`` random 1280-d vectors written as one set: the PCA projection, and the map the app
   loads (``embedding_map``: the query and the JSON), with its size.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.engine_throughput import make_jpegs  # noqa: E402

MODEL = "efficientnet-lite0-imagenet"


def throughput(store: Any, folder: Path, count: int) -> dict[str, Any]:
    from verilabel.datasets import service as ds
    from verilabel.datasets.embeddings import compute_embeddings
    from verilabel.datasets.images import decode
    from verilabel.models import registry
    from verilabel.models.interface import ImageItem, LoadRequest
    from verilabel.runs import service as runs
    from verilabel.runs.config import RunRequest

    paths = make_jpegs(folder, count)
    ds.create_dataset(store, "bench")
    ds.add_images(store, "bench", folder)

    model = registry.load(registry.resolve(MODEL), LoadRequest(device="cpu"))
    images = [ImageItem(i, str(p), decode(p)) for i, p in enumerate(paths[:256])]
    model.embed(images[:32])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(images), 32):
        model.embed(images[i : i + 32])
    ceiling = len(images) / (time.perf_counter() - start)

    start = time.perf_counter()
    summary = compute_embeddings(store, "bench", MODEL, device="cpu", batch_size=32)
    embed_rate = summary.embedded / (time.perf_counter() - start)

    request = RunRequest(dataset="bench", task="classification", model=MODEL, field="imagenet", device="cpu")
    start = time.perf_counter()
    info = runs.wait_run(store, runs.create_run(store, request).id, poll=0.2)
    run_rate = info.done / (time.perf_counter() - start)
    return {
        "images": count,
        "embed_ceiling_img_s": round(ceiling, 1),
        "compute_embeddings_img_s": round(embed_rate, 1),
        "of_ceiling": round(embed_rate / ceiling, 3),
        "classification_run_img_s": round(run_rate, 1),
    }


def scale(store: Any, points: int) -> dict[str, Any]:
    from sqlalchemy import insert

    from verilabel.datasets import service as ds
    from verilabel.datasets.embeddings import embedding_map, project
    from verilabel.store.schema import EmbeddingPointRow, EmbeddingSetRow, SampleRow

    ds.create_dataset(store, "scale")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 1280)).astype(np.float32)
    with store.write() as session:
        dataset_id = ds.dataset_row(session, "scale").id
        session.execute(
            insert(SampleRow),
            [
                {"dataset_id": dataset_id, "path": f"/x/{i}.jpg", "meta": {}, "created_at": ds.now()}
                for i in range(points)
            ],
        )
        first = session.query(SampleRow.id).filter(SampleRow.dataset_id == dataset_id).order_by(SampleRow.id).first()
        row = EmbeddingSetRow(
            dataset_id=dataset_id, key="k", kind="samples", model=MODEL, method="pca", created_at=ds.now()
        )
        session.add(row)
        session.flush()
        set_id = row.id
    for start in range(0, points, 10_000):
        count = min(10_000, points - start)
        vectors = centres[rng.integers(0, 20, count)] + rng.normal(scale=0.3, size=(count, 1280))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with store.write() as session:
            session.execute(
                insert(EmbeddingPointRow),
                [
                    {
                        "embedding_id": set_id,
                        "sample_id": first[0] + start + i,
                        "label_id": "",
                        "vector": v.astype(np.float16).tobytes(),
                    }
                    for i, v in enumerate(vectors)
                ],
            )
    begin = time.perf_counter()
    project(store, set_id, "pca")
    projection = time.perf_counter() - begin
    begin = time.perf_counter()
    found = embedding_map(store, "scale", "k")
    query = time.perf_counter() - begin
    begin = time.perf_counter()
    body = json.dumps(found.to_json())
    serialise = time.perf_counter() - begin
    return {
        "points": points,
        "pca_projection_s": round(projection, 2),
        "map_query_s": round(query, 2),
        "map_json_s": round(serialise, 2),
        "map_json_mb": round(len(body) / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "verilabel-embeddings-bench")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="home-", dir=args.work))
    os.environ["VERILABEL_HOME"] = str(home)
    from verilabel.store import Store

    store = Store.open()
    report = {
        "throughput": throughput(store, args.work / "images", args.images),
        "scale": scale(store, args.points),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
