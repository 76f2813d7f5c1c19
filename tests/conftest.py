from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from verilabel.store import Store

REPO = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("VERILABEL_TEST_POSTGRES_URL")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own verilabel home and database; nothing may download."""
    home = tmp_path / "home"
    monkeypatch.setenv("VERILABEL_HOME", str(home))
    monkeypatch.delenv("VERILABEL_DATABASE_URL", raising=False)
    monkeypatch.setenv("VERILABEL_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return home


def _fresh_postgres_url(base: str, name: str) -> str:
    from sqlalchemy import create_engine, text

    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgres"] if POSTGRES_URL else ["sqlite"])
def store(request: pytest.FixtureRequest, home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """The store on SQLite, and on PostgreSQL too when VERILABEL_TEST_POSTGRES_URL names a server."""
    if request.param == "postgres":
        assert POSTGRES_URL is not None
        url = _fresh_postgres_url(POSTGRES_URL, "verilabel_test")
        monkeypatch.setenv("VERILABEL_DATABASE_URL", url)
        opened = Store.open(url)
    else:
        opened = Store.open()
    yield opened
    opened.dispose()
