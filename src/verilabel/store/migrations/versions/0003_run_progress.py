"""run progress: per run and shard, done and failed samples, kept with the samples' states

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 01:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_progress",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_progress_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "shard", name=op.f("pk_run_progress")),
    )
    # Runs that exist already get their counters from their samples.
    op.execute(
        "INSERT INTO run_progress (run_id, shard, done, failed) "
        "SELECT run_id, shard, SUM(CASE WHEN state = 'done' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) "
        "FROM run_samples WHERE state <> 'pending' GROUP BY run_id, shard"
    )
    # Approved runs now keep per-class counts (approved, discarded). Runs approved before this revision had theirs
    # deleted: a run that generated its field gets the approved ones back from the field's labels.
    op.execute(
        "INSERT INTO run_class_counts (run_id, review_state, label, count, scored, confidence_sum) "
        "SELECT r.id, 'approved', l.label, count(*), count(l.confidence), coalesce(sum(l.confidence), 0) "
        "FROM runs r JOIN label_fields f ON f.run_id = r.id JOIN labels l ON l.field_id = f.id "
        "WHERE r.status = 'approved' GROUP BY r.id, l.label"
    )


def downgrade() -> None:
    op.execute("DELETE FROM run_class_counts WHERE review_state IN ('approved', 'discarded')")
    op.drop_table("run_progress")
