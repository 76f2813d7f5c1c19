"""Persistence: the schema, migrations and the ``Store`` that opens them."""

from verilabel.store.db import Store

__all__ = ["Store"]
