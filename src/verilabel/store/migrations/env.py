"""Alembic environment: run on the connection verilabel hands over (see ``verilabel.store.db``)."""

from __future__ import annotations

from alembic import context

from verilabel.store.schema import Base

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs table rebuilds for ALTER
)
with context.begin_transaction():
    context.run_migrations()
