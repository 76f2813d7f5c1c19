"""The app's server time at scale: 1,000,000 generated labels over 100,000 samples (SQLite by default).

    python benchmarks/app_latency.py [--labels 1000000] [--samples 100000]

Times, through the app's ASGI interface (server time: no network), the review grid's page of 100 samples with
their labels, the class table under a confidence filter, the histogram the slider works from, a patches page of
100 labels, and a cached thumbnail; and the app's first load in Chromium on loopback, with the size of its
JS + CSS gzipped. Targets: each page < 300 ms, a cached thumbnail < 10 ms, first load < 1 s, assets < 500 kB.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from review_scale import build  # the same synthetic run as the review benchmark


def median_ms(client: Any, path: str, params: dict[str, Any] | None = None, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        answer = client.get(path, params=params)
        times.append(time.perf_counter() - start)
        assert answer.status_code == 200, answer.text
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="verilabel-app-"))
    url = f"sqlite:///{home / 'bench.db'}"

    from fastapi.testclient import TestClient
    from PIL import Image

    from verilabel import accounts
    from verilabel.server.app import STATIC, create_app
    from verilabel.server.settings import ServerSettings
    from verilabel.store import Store
    from verilabel.store.schema import SampleRow

    run = build(url, args.labels, args.samples)
    store = Store(url)
    token = accounts.add_user(store, "bench", "viewer")[1]
    photo = home / "photo.jpg"
    Image.new("RGB", (4000, 3000), (120, 130, 140)).save(photo, quality=90)
    with store.write() as session:
        session.get(SampleRow, 1).path = str(photo)  # one real image, for the thumbnail
    client = TestClient(create_app(ServerSettings(), store, home), base_url="http://127.0.0.1:8151")
    client.headers["Authorization"] = f"Bearer {token}"
    results: dict[str, Any] = {"labels": args.labels, "samples": args.samples}
    cases = {
        "review grid page (100 samples, confidence >= 0.8)": (
            f"/api/v1/runs/{run}/samples",
            {"min_confidence": 0.8, "limit": 100},
        ),
        "review grid page (100 samples, one class, 0.3..0.7)": (
            f"/api/v1/runs/{run}/samples",
            {"min_confidence": 0.3, "below": 0.7, "classes": "class_05", "limit": 100},
        ),
        "class table (confidence 0.3..0.7)": (f"/api/v1/runs/{run}/classes", {"min_confidence": 0.3, "below": 0.7}),
        "histogram (20 classes x 100 bins)": (f"/api/v1/runs/{run}/histogram", None),
        "patches page (100 labels, least confident first)": (
            f"/api/v1/runs/{run}/labels",
            {"sort": "confidence", "limit": 100},
        ),
        "dataset grid page (100 samples)": ("/api/v1/datasets/big/samples", {"limit": 100}),
    }
    for name, (path, params) in cases.items():
        results[name] = round(median_ms(client, path, params), 1)
        print(f"{name}: {results[name]} ms", flush=True)
    start = time.perf_counter()
    client.get("/api/v1/samples/1/thumbnail", params={"size": 256})
    results["thumbnail, first (4000x3000 JPEG)"] = round((time.perf_counter() - start) * 1000, 1)
    results["thumbnail, cached"] = round(median_ms(client, "/api/v1/samples/1/thumbnail", {"size": 256}, repeat=20), 2)
    for name in ("thumbnail, first (4000x3000 JPEG)", "thumbnail, cached"):
        print(f"{name}: {results[name]} ms")
    assets = [p for p in STATIC.iterdir() if p.suffix in (".js", ".css", ".html", ".svg")]
    results["assets_gzipped_kb"] = round(sum(len(gzip.compress(p.read_bytes())) for p in assets) / 1024, 1)
    print(f"app assets (JS, CSS, HTML, icon), gzipped: {results['assets_gzipped_kb']} kB")
    results["first_load_ms"] = first_load(store, home, token)
    print(f"first load in Chromium (sign-in to the datasets page drawn): {results['first_load_ms']} ms")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


def first_load(store: Any, home: Path, token: str) -> float | None:
    """Chromium on loopback: from navigating to the sign-in URL to the datasets page drawn (median of 3)."""
    import shutil
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.browser_helpers import live_server

    executable = shutil.which("chromium")
    if executable is None:
        return None
    from playwright.sync_api import sync_playwright

    times = []
    with live_server(store, home) as (url, _), sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        for _ in range(3):
            page = browser.new_context().new_page()
            start = time.perf_counter()
            page.goto(f"{url}/?token={token}")
            page.wait_for_selector(".card")
            times.append((time.perf_counter() - start) * 1000)
            page.close()
        browser.close()
    return round(statistics.median(times), 1)


if __name__ == "__main__":
    main()
