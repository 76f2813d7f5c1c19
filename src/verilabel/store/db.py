"""Opening the store: engines, SQLite tuning, and schema migrations (Alembic) on first use."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker

from verilabel.errors import StoreError
from verilabel.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def dump_json(value: Any) -> str:
    """JSON columns' serializer. Most labels carry no mask, polygon, keypoints, attributes or tags: their empty
    values skip the encoder (a worker writes tens of thousands of labels a second, five JSON columns each)."""
    if value is None:
        return "null"
    if not value and isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(value)


def _sqlite_engine(url: str, immediate: bool) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 60}, json_serializer=dump_json)

    @event.listens_for(engine, "connect")
    def _tune(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes, which is what WAL promises
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        # Bulk review operations (promote 500k, approve 1M) walk several indexes: a 64 MiB page cache (default
        # 2 MiB) and in-memory temp b-trees keep them off the disk; reads map the file instead of copying it.
        cur.execute("PRAGMA cache_size=-65536")
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.execute("PRAGMA mmap_size=268435456")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # A writer takes the write lock up front: a deferred transaction that upgrades to write while another
        # process writes fails with "database is locked" instead of waiting for the busy timeout.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


RowT = TypeVar("RowT")


def lock_row(session: Session, row: RowT) -> RowT | None:
    """Lock a loaded ``row`` until the transaction ends and read it afresh (None if it was deleted meanwhile):
    ``Session.get(..., with_for_update=True)`` alone locks, but keeps the stale attributes of a loaded object."""
    return session.get(type(row), inspect(row).identity, with_for_update=True, populate_existing=True)


class Store:
    """The database behind verilabel: ``read()`` and ``write()`` give transactional sessions.

    SQLite (the default, a file under ``VERILABEL_HOME``) runs in WAL mode so readers never block the
    writers of a running worker; any other SQLAlchemy URL (PostgreSQL) works through ``VERILABEL_DATABASE_URL``.
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            db_path = url.split("///", 1)[-1]
            if db_path and db_path != ":memory:":
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
            self._read_engine = _sqlite_engine(url, immediate=False)
            self._write_engine = _sqlite_engine(url, immediate=True)
        else:
            try:
                self._write_engine = create_engine(url, pool_pre_ping=True, json_serializer=dump_json)
                # A read sees ONE snapshot, as SQLite's do: under READ COMMITTED each statement sees the latest
                # commits, so a run's row and its workers' rows, read one after the other, could come from
                # either side of a worker's last commit (a finished run would then look stalled).
                self._read_engine = self._write_engine.execution_options(isolation_level="REPEATABLE READ")
            except Exception as exc:  # a bad URL or a missing driver
                raise StoreError(
                    f"cannot open database {url!r}: {exc}. Check VERILABEL_DATABASE_URL "
                    "(PostgreSQL needs `pip install 'verilabel[postgres]'`)."
                ) from exc
        self._reader = sessionmaker(self._read_engine, expire_on_commit=False)
        self._writer = sessionmaker(self._write_engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    @classmethod
    def open(cls, url: str | None = None) -> Store:
        return cls(url or Settings.from_env().database_url)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only view of one consistent snapshot: nothing is ever committed (closing the session ends its
        transaction), and rows read inside stay readable afterwards."""
        with self._reader() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any exception."""
        with self._writer() as session, session.begin():
            yield session

    @property
    def engine(self) -> Engine:
        return self._write_engine

    def migrate(self) -> None:
        """Bring the schema to the newest revision (no-op when it is already there). The common case costs one
        query: Alembic (a quarter of a second to import) loads only when an upgrade is due."""
        from verilabel.store.migrations import HEAD

        try:
            conn = self._write_engine.connect()
        except Exception as exc:
            raise StoreError(f"cannot open database {self.url!r}: {exc}") from exc
        with conn:
            try:
                current = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
            except Exception:  # a new database: no version table yet
                current = None
        if current == HEAD:
            return
        if current is not None and str(current) > HEAD:  # revisions are numbered: "0003" > "0002"
            raise StoreError(
                f"the database {self.url!r} was last written by a newer verilabel (schema {current}; this one knows up "
                f"to {HEAD}): upgrade verilabel (`pip install -U verilabel`), or point VERILABEL_DATABASE_URL elsewhere"
            )
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self._write_engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def table_names(self) -> list[str]:
        return inspect(self._read_engine).get_table_names()

    def dispose(self) -> None:
        self._read_engine.dispose()
        if self._write_engine is not self._read_engine:
            self._write_engine.dispose()
