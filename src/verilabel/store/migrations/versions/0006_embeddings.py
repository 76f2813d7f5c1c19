"""embeddings: 2-D maps of samples and label patches

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "embeddings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("model", sa.String(length=300), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("projected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_embeddings_dataset_id_datasets"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_embeddings_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_embeddings")),
        sa.UniqueConstraint("dataset_id", "key", name="uq_embeddings_dataset_key"),
    )
    op.create_index(op.f("ix_embeddings_run_id"), "embeddings", ["run_id"])
    op.create_table(
        "embedding_points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("embedding_id", sa.Integer(), nullable=False),
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("label_id", sa.String(length=32), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("x", sa.Float(), nullable=True),
        sa.Column("y", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["embedding_id"],
            ["embeddings.id"],
            name=op.f("fk_embedding_points_embedding_id_embeddings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sample_id"], ["samples.id"], name=op.f("fk_embedding_points_sample_id_samples"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_embedding_points")),
        sa.UniqueConstraint("embedding_id", "sample_id", "label_id", name="uq_embedding_points_set_sample_label"),
    )
    op.create_index(op.f("ix_embedding_points_sample_id"), "embedding_points", ["sample_id"])


def downgrade() -> None:
    op.drop_table("embedding_points")
    op.drop_table("embeddings")
