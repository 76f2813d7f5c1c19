"""JSON list-of-strings columns (label tags) read and changed in SQL, on SQLite and PostgreSQL alike: one
statement changes a million labels' tags, never a read-modify-write in Python."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import JSON, ColumnElement, Text, bindparam, cast, func, literal_column, or_, select


def contains(column: Any, item: str) -> ColumnElement[bool]:
    """The list holds ``item``. Python writes non-ASCII escaped (``"caf\\u00e9"``), the databases' own JSON
    functions write it as is: both spellings are matched."""
    spellings = dict.fromkeys((json.dumps(item), json.dumps(item, ensure_ascii=False)))
    return or_(*(cast(column, Text).contains(spelling, autoescape=True) for spelling in spellings))


def appended(column: Any, item: str, dialect: str) -> ColumnElement[Any]:
    """The list with ``item`` added at the end (the caller selects only rows that lack it)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB  # the dialect's module: loaded only on PostgreSQL

        current = func.coalesce(cast(column, JSONB), literal_column("'[]'::jsonb"))
        return cast(current.op("||")(func.to_jsonb(cast(bindparam(None, item), Text))), JSON)
    return func.json_insert(func.coalesce(column, literal_column("'[]'")), "$[#]", bindparam(None, item))


def removed(column: Any, item: str, dialect: str) -> ColumnElement[Any]:
    """The list without ``item``."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        return cast(cast(column, JSONB).op("-")(bindparam(None, item)), JSON)
    # json_each yields the elements in order; json_group_array of none is [].
    elements = func.json_each(column).table_valued("value")
    return (
        select(func.json_group_array(elements.c.value))
        .where(elements.c.value != bindparam(None, item))
        .scalar_subquery()
    )
