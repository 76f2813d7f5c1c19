"""How long the CLI's plain read commands take, against the cost of importing SQLAlchemy's ORM alone.

    python benchmarks/cli_startup.py [--repeat 7]

Tools script this CLI in loops: a read must not pay for what it does not use (Alembic, numpy, the image and
format code, rich for JSON output). Each command runs ``--repeat`` times, interleaved with the yardstick
``python -c 'import sqlalchemy.orm'`` so that both see the same machine load; the medians and their ratio are
printed. Target: every read within 1.3x of the yardstick.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

YARDSTICK = [sys.executable, "-c", "import sqlalchemy.orm"]


def prepare(home: Path) -> None:
    """A store with a dataset and a run in review (an analysis of a scored field: no model, no worker)."""
    os.environ["VERILABEL_HOME"] = str(home)
    from sqlalchemy import insert

    from verilabel.datasets.service import create_dataset, dataset_row, ensure_field, now
    from verilabel.labels import Box, Detection
    from verilabel.review.service import analyze_field
    from verilabel.store import Store
    from verilabel.store.convert import label_columns
    from verilabel.store.schema import LabelRow, SampleRow

    store = Store.open()
    create_dataset(store, "pets")
    with store.write() as session:
        dataset_id = dataset_row(session, "pets").id
        session.execute(
            insert(SampleRow),
            [
                {
                    "dataset_id": dataset_id,
                    "path": f"/data/{i}.jpg",
                    "width": 640,
                    "height": 480,
                    "meta": {},
                    "created_at": now(),
                }
                for i in range(100)
            ],
        )
        field = ensure_field(session, dataset_id, "faces", "detection")
        for sample_id in range(1, 101):
            label = Detection("face", Box(0.1, 0.1, 0.2, 0.2), 0.5 + sample_id / 250)
            session.add(LabelRow(**label_columns(label), sample_id=sample_id, field_id=field.id))
    analyze_field(store, "pets", "faces", name="faces-review")
    store.dispose()


def median_seconds(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="verilabel-cli-"))
    prepare(home)
    env = {**os.environ, "VERILABEL_HOME": str(home)}
    script = Path(sys.executable).with_name("verilabel")  # the console script users run
    verilabel = [str(script)] if script.exists() else [sys.executable, "-m", "verilabel"]
    commands = {
        "dataset list --json": [*verilabel, "dataset", "list", "--json"],
        "run show --json": [*verilabel, "run", "show", "faces-review", "--json"],
        "review table --json": [*verilabel, "review", "table", "faces-review", "--json"],
        "dataset list (table)": [*verilabel, "dataset", "list"],
        "--help": [*verilabel, "--help"],
    }
    times: dict[str, list[float]] = {name: [] for name in ["yardstick", *commands]}
    for _ in range(args.repeat):
        for name, command in commands.items():
            times["yardstick"].append(median_seconds(YARDSTICK, env))
            times[name].append(median_seconds(command, env))
    yardstick = statistics.median(times["yardstick"])
    results = {"yardstick_s": round(yardstick, 3), "commands": {}}
    print(f"{'python -c import sqlalchemy.orm':32s} {yardstick:6.3f} s")
    for name in commands:
        median = statistics.median(times[name])
        results["commands"][name] = {"median_s": round(median, 3), "ratio": round(median / yardstick, 2)}
        print(f"{'verilabel ' + name:32s} {median:6.3f} s  {median / yardstick:4.2f}x")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
