from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from verilabel.store import Store

REPO = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("VERILABEL_TEST_POSTGRES_URL")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own verilabel home and database; nothing may download. Worker processes a test
    left running (it failed, or stopped watching) are killed after it, so they never run into the next test."""
    home = tmp_path / "home"
    monkeypatch.setenv("VERILABEL_HOME", str(home))
    monkeypatch.delenv("VERILABEL_DATABASE_URL", raising=False)
    monkeypatch.setenv("VERILABEL_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    yield home
    for process in _workers_of(home):
        process.kill()


def _admin(base: str, *statements: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for statement in statements:
            conn.execute(text(statement))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"] if POSTGRES_URL else ["sqlite"])
def store(request: pytest.FixtureRequest, home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """The store on SQLite, and on PostgreSQL too when VERILABEL_TEST_POSTGRES_URL names a server."""
    if request.param == "sqlite":
        opened = Store.open()
        yield opened
        opened.dispose()
        return
    assert POSTGRES_URL is not None
    # A database of this test process's own: test runs sharing a server never drop each other's.
    name = f"verilabel_test_{os.getpid()}"
    _admin(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    monkeypatch.setenv("VERILABEL_DATABASE_URL", url)
    opened = Store.open(url)
    yield opened
    opened.dispose()
    _admin(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[object]:
    """A failed test that ran workers reports what they were doing: every live worker's thread stacks (SIGUSR1)
    and the tail of each worker log, and on PostgreSQL what every connection waits for."""
    report = yield
    home = getattr(item, "funcargs", {}).get("home")
    if call.when == "call" and report.failed and isinstance(home, Path):
        for name, text in _worker_diagnostics(home, item.funcargs.get("store")):
            report.sections.append((name, text))
    return report


def _worker_diagnostics(home: Path, store: object) -> list[tuple[str, str]]:
    import signal
    import time

    workers = _workers_of(home)
    logs = sorted((home / "logs").glob("*.log"))
    if not workers and not logs:
        return []  # the test ran no worker
    for process in workers:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGUSR1)
    if workers:
        time.sleep(1.0)
    sections = [(f"worker log {log.name}", log.read_text(errors="replace")[-6000:]) for log in logs]
    sections.append(("worker processes", "\n".join(map(_describe, workers))))
    if isinstance(store, Store):
        from sqlalchemy import text

        queries = {
            "runs": "SELECT id, status, cancel_requested, error FROM runs",
            "run workers": "SELECT run_id, shard, pid, state, processed, heartbeat_at FROM run_workers",
        }
        if not store.is_sqlite:
            queries["pg_stat_activity"] = (
                "SELECT pid, state, wait_event_type, wait_event, left(query, 200) FROM pg_stat_activity"
            )
        try:
            with store.engine.connect() as conn:
                for name, query in queries.items():
                    sections.append((name, "\n".join(map(str, conn.execute(text(query)).all()))))
        except Exception as exc:  # the test may have broken the database itself
            sections.append(("database", f"unreadable: {exc}"))
    return sections


def _workers_of(home: Path) -> list[psutil.Process]:
    """The live worker processes of the verilabel home ``home``."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if "verilabel.runs.worker" in (process.info["cmdline"] or []) and process.environ().get(
                "VERILABEL_HOME"
            ) == str(home):
                found.append(process)
        except psutil.Error:
            continue
    return found


def _describe(process: psutil.Process) -> str:
    try:
        return f"pid {process.pid}: {process.status()}, {process.num_threads()} threads"
    except psutil.Error as exc:
        return f"pid {process.pid}: {exc}"
