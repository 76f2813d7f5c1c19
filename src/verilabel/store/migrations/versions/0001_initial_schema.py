"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 23:53:00.099563
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("name", name=op.f("uq_datasets_name")),
    )
    op.create_table(
        "label_fields",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_label_fields_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_fields")),
        sa.UniqueConstraint("dataset_id", "name", name="uq_label_fields_dataset_name"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("task", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=300), nullable=False),
        sa.Column("field", sa.String(length=200), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("model_info", sa.JSON(), nullable=False),
        sa.Column("timings", sa.JSON(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("workers", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_runs_dataset_id_datasets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        sa.UniqueConstraint("dataset_id", "name", name="uq_runs_dataset_name"),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runs_dataset_id"), ["dataset_id"], unique=False)

    op.create_table(
        "samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_samples_dataset_id_datasets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_samples")),
        sa.UniqueConstraint("dataset_id", "path", name="uq_samples_dataset_path"),
    )
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_samples_dataset_id"), ["dataset_id"], unique=False)

    op.create_table(
        "labels",
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("field_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("x", sa.Float(), nullable=True),
        sa.Column("y", sa.Float(), nullable=True),
        sa.Column("w", sa.Float(), nullable=True),
        sa.Column("h", sa.Float(), nullable=True),
        sa.Column("mask_path", sa.Text(), nullable=True),
        sa.Column("mask_rle", sa.JSON(), nullable=True),
        sa.Column("polygon", sa.JSON(), nullable=True),
        sa.Column("keypoints", sa.JSON(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["field_id"],
            ["label_fields.id"],
            name=op.f("fk_labels_field_id_label_fields"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sample_id"], ["samples.id"], name=op.f("fk_labels_sample_id_samples"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labels")),
    )
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.create_index("ix_labels_field_label", ["field_id", "label", "confidence"], unique=False)
        batch_op.create_index("ix_labels_sample_field", ["sample_id", "field_id"], unique=False)

    op.create_table(
        "run_labels",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("review_state", sa.String(length=16), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("x", sa.Float(), nullable=True),
        sa.Column("y", sa.Float(), nullable=True),
        sa.Column("w", sa.Float(), nullable=True),
        sa.Column("h", sa.Float(), nullable=True),
        sa.Column("mask_path", sa.Text(), nullable=True),
        sa.Column("mask_rle", sa.JSON(), nullable=True),
        sa.Column("polygon", sa.JSON(), nullable=True),
        sa.Column("keypoints", sa.JSON(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_labels_run_id_runs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["sample_id"], ["samples.id"], name=op.f("fk_run_labels_sample_id_samples"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_labels")),
    )
    with op.batch_alter_table("run_labels", schema=None) as batch_op:
        batch_op.create_index("ix_run_labels_run_confidence", ["run_id", "review_state", "confidence"], unique=False)
        batch_op.create_index("ix_run_labels_run_sample", ["run_id", "sample_id"], unique=False)
        batch_op.create_index(
            "ix_run_labels_run_state_label", ["run_id", "review_state", "label", "confidence"], unique=False
        )

    op.create_table(
        "run_samples",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_samples_run_id_runs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["sample_id"], ["samples.id"], name=op.f("fk_run_samples_sample_id_samples"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "sample_id", name=op.f("pk_run_samples")),
    )
    with op.batch_alter_table("run_samples", schema=None) as batch_op:
        batch_op.create_index("ix_run_samples_run_shard_state", ["run_id", "shard", "state", "sample_id"], unique=False)
        batch_op.create_index("ix_run_samples_run_state", ["run_id", "state"], unique=False)

    op.create_table(
        "run_workers",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("hostname", sa.String(length=255), nullable=True),
        sa.Column("device", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("processed", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("timings", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_workers_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "shard", name=op.f("pk_run_workers")),
    )
    op.create_table(
        "sample_tags",
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["sample_id"], ["samples.id"], name=op.f("fk_sample_tags_sample_id_samples"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("sample_id", "tag", name=op.f("pk_sample_tags")),
    )
    with op.batch_alter_table("sample_tags", schema=None) as batch_op:
        batch_op.create_index("ix_sample_tags_tag", ["tag", "sample_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sample_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_sample_tags_tag")

    op.drop_table("sample_tags")
    op.drop_table("run_workers")
    with op.batch_alter_table("run_samples", schema=None) as batch_op:
        batch_op.drop_index("ix_run_samples_run_state")
        batch_op.drop_index("ix_run_samples_run_shard_state")

    op.drop_table("run_samples")
    with op.batch_alter_table("run_labels", schema=None) as batch_op:
        batch_op.drop_index("ix_run_labels_run_state_label")
        batch_op.drop_index("ix_run_labels_run_sample")
        batch_op.drop_index("ix_run_labels_run_confidence")

    op.drop_table("run_labels")
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_index("ix_labels_sample_field")
        batch_op.drop_index("ix_labels_field_label")

    op.drop_table("labels")
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_samples_dataset_id"))

    op.drop_table("samples")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_dataset_id"))

    op.drop_table("runs")
    op.drop_table("label_fields")
    op.drop_table("datasets")
