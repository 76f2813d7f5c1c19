"""Inserting many rows at once, as fast as the database allows."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import JSON, Table, insert
from sqlalchemy.orm import DeclarativeBase, Session

from verilabel.store.db import dump_json


def insert_rows(session: Session, entity: type[DeclarativeBase], rows: list[dict[str, Any]]) -> None:
    """Insert rows that all have the same keys. On SQLite they go straight to the driver's ``executemany``:
    SQLAlchemy's per-row parameter processing costs more than SQLite's own insert (a worker writes tens of
    thousands of labels a second). JSON columns are serialised as SQLAlchemy would (``dump_json``). Other
    databases take a Core insert, whose drivers batch it themselves."""
    if not rows:
        return
    table = cast(Table, entity.__table__)
    if session.get_bind().dialect.name != "sqlite":
        session.execute(insert(table), rows)
        return
    columns = list(rows[0])
    json = [isinstance(table.c[name].type, JSON) for name in columns]
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    values = [
        tuple(dump_json(row[name]) if is_json else row[name] for name, is_json in zip(columns, json, strict=True))
        for row in rows
    ]
    session.connection().exec_driver_sql(sql, values)  # type: ignore[arg-type]


def add_to_counters(
    session: Session, entity: type[DeclarativeBase], rows: list[dict[str, Any]], counters: tuple[str, ...]
) -> None:
    """Insert ``rows``, or where a row with the same primary key exists, add their ``counters`` to its own: one
    upsert. Rows are applied in key order, so concurrent writers on PostgreSQL lock them in one order and never
    deadlock."""
    if not rows:
        return
    table = cast(Table, entity.__table__)
    keys = [column.name for column in table.primary_key.columns]
    statement = _dialect_insert(session, table)
    statement = statement.on_conflict_do_update(
        index_elements=keys,
        set_={name: table.c[name] + statement.excluded[name] for name in counters},
    )
    session.execute(statement, sorted(rows, key=lambda row: tuple(row[k] for k in keys)))


def _dialect_insert(session: Session, table: Table) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
