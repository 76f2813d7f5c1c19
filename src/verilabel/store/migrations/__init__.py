"""Alembic migrations of the verilabel schema (``versions/``)."""

# The newest revision: a store at this revision opens without importing Alembic. A test checks that it is
# Alembic's head; bump it with every new migration.
HEAD = "0006"
