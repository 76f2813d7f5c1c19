"""count bins: run_class_counts by confidence bin (the review histogram); the review grid's sample-order index

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 03:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.rename_table("run_class_counts", "run_class_counts_0004")
    if postgres:  # a primary key's index name is schema-wide there: free it for the new table
        op.execute(
            "ALTER TABLE run_class_counts_0004 RENAME CONSTRAINT pk_run_class_counts TO pk_run_class_counts_0004"
        )
    op.create_table(
        "run_class_counts",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("review_state", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("bin", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("scored", sa.Integer(), nullable=False),
        sa.Column("confidence_sum", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_class_counts_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "review_state", "label", "bin", name=op.f("pk_run_class_counts")),
    )
    # Runs with labels: counted again, by bin (see verilabel.review.counts.bin_of; PostgreSQL's cast rounds).
    floor = (
        "FLOOR(confidence * 100 + 1e-9)" if op.get_bind().dialect.name == "postgresql" else "confidence * 100 + 1e-9"
    )
    index = f"CAST({floor} AS INTEGER)"
    binned = f"CASE WHEN confidence IS NULL THEN -1 WHEN {index} > 99 THEN 99 ELSE {index} END"
    op.execute(
        "INSERT INTO run_class_counts (run_id, review_state, label, bin, count, scored, confidence_sum) "
        f"SELECT run_id, review_state, label, {binned}, count(*), count(confidence), coalesce(sum(confidence), 0) "
        f"FROM run_labels GROUP BY run_id, review_state, label, {binned}"
    )
    # Approved runs (no labels left): their totals, unbinned.
    op.execute(
        "INSERT INTO run_class_counts (run_id, review_state, label, bin, count, scored, confidence_sum) "
        "SELECT run_id, review_state, label, -1, count, scored, confidence_sum FROM run_class_counts_0004 "
        "WHERE review_state IN ('approved', 'discarded')"
    )
    op.drop_table("run_class_counts_0004")
    op.create_index(
        "ix_run_labels_run_state_sample",
        "run_labels",
        ["run_id", "review_state", "sample_id", "confidence", "label"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_run_labels_run_state_sample", table_name="run_labels")
    op.rename_table("run_class_counts", "run_class_counts_0005")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE run_class_counts_0005 RENAME CONSTRAINT pk_run_class_counts TO pk_run_class_counts_0005"
        )
    op.create_table(
        "run_class_counts",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("review_state", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("scored", sa.Integer(), nullable=False),
        sa.Column("confidence_sum", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_class_counts_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "review_state", "label", name=op.f("pk_run_class_counts")),
    )
    op.execute(
        "INSERT INTO run_class_counts (run_id, review_state, label, count, scored, confidence_sum) "
        "SELECT run_id, review_state, label, sum(count), sum(scored), sum(confidence_sum) FROM run_class_counts_0005 "
        "GROUP BY run_id, review_state, label"
    )
    op.drop_table("run_class_counts_0005")
