"""The Ray executor on a real local Ray cluster: a head and a second node started with ``ray start`` on loopback
(one logical CPU each), a run across both; one node killed with SIGKILL mid-run; the driver killed and the run
resumed. Labels must equal a local run's exactly, none doubled. The store is PostgreSQL (SQLite is refused once
the cluster has two nodes)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from tests.runs_helpers import BLOBS, blob_dataset, duplicate_ids, label_snapshot, request  # noqa: E402
from verilabel.datasets import service as ds  # noqa: E402
from verilabel.errors import ConfigError  # noqa: E402
from verilabel.runs import service as runs  # noqa: E402
from verilabel.store import Store  # noqa: E402

pytestmark = [pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
PORT = 6391
ADDRESS = f"127.0.0.1:{PORT}"
SLOW = "0.25"  # seconds per batch of the blob model: long enough to kill something mid-run


def ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


def start_node(*args: str, env: dict[str, str]) -> None:
    command = [ray_cli(), "start", "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    subprocess.run([*command, *args], env=env, check=True, capture_output=True, timeout=120)


def raylet_of(resource: str) -> psutil.Process:
    """The raylet of the node declaring ``resource`` (its command line lists the node's resources)."""
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "raylet" in (process.info["name"] or "") and resource in cmdline:
            return process
    raise AssertionError(f"no raylet with resource {resource}")


@pytest.fixture
def cluster(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Two Ray nodes on loopback; the environment their workers inherit (PYTHONPATH for the test's model)."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # loopback only; the driver process inherits it
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
        "BLOB_MODEL_DELAY": SLOW,
        "RAY_health_check_period_ms": "500",  # a killed node is declared dead in seconds, not half a minute
        "RAY_health_check_failure_threshold": "4",
    }
    temp = tmp_path / "ray"  # short: Ray's socket paths must stay under 107 bytes
    if len(str(temp)) > 60:
        temp = Path("/tmp") / f"vl-ray-{os.getpid()}"
    start_node("--head", "--port", str(PORT), "--temp-dir", str(temp), "--include-dashboard", "false",
               "--resources", '{"head_node": 1}', env=env)  # fmt: skip
    start_node("--address", ADDRESS, "--resources", '{"second_node": 1}', env=env)
    try:
        yield env
    finally:
        subprocess.run([ray_cli(), "stop", "--force"], capture_output=True, timeout=120)
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def postgres(store: Store) -> Store:
    if not store.url.startswith("postgresql"):
        pytest.skip("runs across nodes are tested on PostgreSQL (VERILABEL_TEST_POSTGRES_URL), as they must run")
    return store


def reference(store: Store, field: str) -> list[tuple]:
    """The labels of the same dataset labelled by the local executor."""
    info = runs.wait_run(store, runs.create_run(store, request(field)).id, timeout=120)
    assert info.status == "in_review"
    return label_snapshot(store, info.id)


def ray_run(store: Store, field: str, **options: object) -> str:
    return runs.create_run(
        store, request(field, model=BLOBS, executor="ray", ray_address=ADDRESS, workers=2, **options)
    ).id


def wait_for_progress(store: Store, run_id: str, done: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while runs.get_run(store, run_id).done < done:
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.1)


def test_a_run_across_two_nodes_survives_a_node_killed_mid_run(postgres: Store, cluster, tmp_path, monkeypatch):
    store = postgres
    blob_dataset(store, tmp_path / "imgs", 48)
    expected = reference(store, "local")
    monkeypatch.setenv("BLOB_MODEL_DELAY", SLOW)
    run_id = ray_run(store, "spread", shards=12)
    wait_for_progress(store, run_id, 8)
    second = raylet_of("second_node")
    for process in [*second.children(recursive=True), second]:
        process.send_signal(signal.SIGKILL)  # the node is gone: its raylet and its workers, mid-batch
    info = runs.wait_run(store, run_id, timeout=180)
    assert info.status == "in_review", info.error
    assert label_snapshot(store, run_id) == expected and duplicate_ids(store, run_id) == 0
    hosts = {(w.shard, w.state) for w in info.workers}
    assert (-1, "finished") in hosts and any(state == "lost" for _, state in hosts)  # the coordinator settled it


def test_the_driver_killed_leaves_a_run_that_resumes_exactly(postgres: Store, cluster, tmp_path, monkeypatch):
    store = postgres
    blob_dataset(store, tmp_path / "imgs", 40)
    expected = reference(store, "local")
    run_id = ray_run(store, "resumed", shards=10)
    wait_for_progress(store, run_id, 8)
    drivers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "verilabel.runs.ray_executor" in " ".join(p.info["cmdline"] or [])
    ]
    assert len(drivers) == 1
    drivers[0].send_signal(signal.SIGKILL)  # its actors die with it
    deadline = time.monotonic() + 60
    while not runs.get_run(store, run_id).resumable:
        assert time.monotonic() < deadline, "the run never became resumable"
        time.sleep(0.2)
    assert runs.get_run(store, run_id).done < 40
    monkeypatch.setenv("BLOB_MODEL_DELAY", "0")
    info = runs.wait_run(store, runs.resume_run(store, run_id).id, timeout=180)
    assert info.status == "in_review", info.error
    assert label_snapshot(store, run_id) == expected and duplicate_ids(store, run_id) == 0


def test_cancel_failures_and_resume_behave_as_locally(postgres: Store, cluster, tmp_path):
    """A broken image is a per-sample failure with the local executor's message; a cancel stops every node's
    workers after their batch and leaves the run resumable; the resumed run has the local run's labels."""
    store = postgres
    blob_dataset(store, tmp_path / "imgs", 120)  # ~4 s of work left when the cancel comes: it lands mid-run
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "broken.png").write_bytes(b"not a png")
    ds.add_images(store, "d", tmp_path / "more")
    local = runs.wait_run(store, runs.create_run(store, request("local")).id, timeout=120)
    run_id = ray_run(store, "cancelled", shards=10)
    wait_for_progress(store, run_id, 4)
    runs.cancel_run(store, run_id)
    stopped = runs.wait_run(store, run_id, timeout=90)
    assert stopped.status == "cancelled" and stopped.done + stopped.failed < 121 and stopped.resumable
    info = runs.wait_run(store, runs.resume_run(store, run_id).id, timeout=180)
    assert info.status == "in_review", info.error
    assert (info.done, info.failed) == (local.done, local.failed) == (120, 1)
    assert [f["error"] for f in info.failures] == [f["error"] for f in local.failures]
    assert label_snapshot(store, run_id) == label_snapshot(store, local.id) and duplicate_ids(store, run_id) == 0


def test_without_ray_installed_the_ray_executor_says_how_to_get_it(home: Path, tmp_path, monkeypatch):
    store = Store.open()
    blob_dataset(store, tmp_path / "imgs", 2)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"needs Ray: install it with `pip install 'verilabel\[ray\]'`"):
        runs.create_run(store, request("x", executor="ray"))
    local = runs.wait_run(store, runs.create_run(store, request("y")).id, timeout=60)
    assert local.status == "in_review"  # the local executor never needs it


def test_sqlite_is_refused_on_a_cluster_of_several_nodes(home: Path, cluster, tmp_path):
    sqlite = Store.open()
    assert sqlite.url.startswith("sqlite")
    blob_dataset(sqlite, tmp_path / "imgs", 2)
    with pytest.raises(ConfigError, match=r"2 nodes, but the store is SQLite.*postgresql") as caught:
        ray_run(sqlite, "nope")
    assert caught.value.field == "executor"


def test_ray_options_go_with_the_ray_executor_only(home: Path, tmp_path):
    store = Store.open()
    blob_dataset(store, tmp_path / "imgs", 2)
    with pytest.raises(ConfigError, match="--shards goes with --executor ray"):
        runs.create_run(store, request("x", shards=4))
    with pytest.raises(ConfigError, match=r"use local .* or ray"):
        runs.create_run(store, request("x", executor="dask"))


def test_embeddings_across_two_nodes_equal_local_ones_with_a_worker_dying_mid_shard(postgres: Store, cluster, tmp_path):
    """``dataset embed --executor ray``: shards as Ray tasks on both nodes; one task's process dies after its first
    batch (the embedder ``os._exit`` s), Ray retries it, and the map holds every sample once, as the local one."""
    from sqlalchemy import func, select

    from verilabel.datasets.embeddings import RayOptions, compute_embeddings, embedding_map
    from verilabel.store.schema import EmbeddingPointRow, EmbeddingSetRow

    store = postgres
    blob_dataset(store, tmp_path / "imgs", 40)
    model = "python:tests.support.embedders:mean_colour"
    local = compute_embeddings(store, "d", model, key="local")
    (tmp_path / "marker").mkdir()
    options = RayOptions(address=ADDRESS, workers=2)
    summary = compute_embeddings(
        store, "d", model, key="ray", weights=str(tmp_path / "marker"), executor="ray", ray=options
    )

    assert (tmp_path / "marker" / "died").exists()  # a task's process did die mid-shard
    assert summary.projected == local.projected == 40 and summary.failed == []
    assert summary.embedded + summary.skipped >= 40
    with store.read() as session:
        vectors = {
            (key, sample_id): vector
            for key, sample_id, vector in session.execute(
                select(EmbeddingSetRow.key, EmbeddingPointRow.sample_id, EmbeddingPointRow.vector).join(
                    EmbeddingSetRow, EmbeddingSetRow.id == EmbeddingPointRow.embedding_id
                )
            )
        }
        total = session.scalar(select(func.count()).select_from(EmbeddingPointRow))
    assert total == 80  # 40 each: none doubled by the retried shard
    assert {s: v for (k, s), v in vectors.items() if k == "ray"} == {
        s: v for (k, s), v in vectors.items() if k == "local"
    }
    places = {
        key: {s: (x, y) for s, x, y in zip(found.sample_ids, found.x, found.y, strict=True)}
        for key, found in (("local", embedding_map(store, "d", "local")), ("ray", embedding_map(store, "d", "ray")))
    }
    assert places["ray"].keys() == places["local"].keys()
    for sample_id, place in places["ray"].items():  # the same vectors, projected in another order
        assert place == pytest.approx(places["local"][sample_id], abs=1e-4)


def test_embeddings_refuse_sqlite_on_a_cluster_and_ray_options_without_ray(home: Path, cluster, tmp_path):
    from verilabel.datasets.embeddings import RayOptions, compute_embeddings, list_embeddings

    store = Store.open()
    blob_dataset(store, tmp_path / "imgs", 4)
    model = "python:tests.support.embedders:mean_colour"
    with pytest.raises(ConfigError, match="2 nodes, but the store is SQLite"):
        compute_embeddings(store, "d", model, executor="ray", ray=RayOptions(address=ADDRESS))
    assert "SQLite" in (list_embeddings(store, "d")[0].error or "")
    with pytest.raises(ConfigError, match="need --executor ray"):
        compute_embeddings(store, "d", model, key="other", ray=RayOptions(workers=2))
