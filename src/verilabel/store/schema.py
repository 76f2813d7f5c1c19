"""The database schema (SQLAlchemy 2 declarative). Portable SQL only: SQLite and PostgreSQL both run it.

Generated labels live in ``run_labels`` until approval moves the promoted ones into ``labels``; per-sample
progress lives in ``run_samples`` and is written in the same transaction as the sample's labels, which is
what makes resume exact (a sample is either done with all its labels, or pending with none).
"""

# No ``from __future__ import annotations`` here: SQLAlchemy would then eval every ``Mapped[...]`` string, which
# cost 40% of this module's import, paid by every CLI command.

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class DatasetRow(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SampleRow(Base):
    __tablename__ = "samples"
    __table_args__ = (UniqueConstraint("dataset_id", "path", name="uq_samples_dataset_path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SampleTagRow(Base):
    __tablename__ = "sample_tags"
    __table_args__ = (Index("ix_sample_tags_tag", "tag", "sample_id"),)

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(200), primary_key=True)


class LabelFieldRow(Base):
    """A named label field of a dataset; a run reserves its field when it is created."""

    __tablename__ = "label_fields"
    __table_args__ = (UniqueConstraint("dataset_id", "name", name="uq_label_fields_dataset_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class _LabelColumns:
    """Columns shared by dataset labels and generated run labels (one row per label of either kind)."""

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(200))
    confidence: Mapped[float | None] = mapped_column(Float)
    x: Mapped[float | None] = mapped_column(Float)
    y: Mapped[float | None] = mapped_column(Float)
    w: Mapped[float | None] = mapped_column(Float)
    h: Mapped[float | None] = mapped_column(Float)
    mask_path: Mapped[str | None] = mapped_column(Text)
    mask_rle: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    polygon: Mapped[list[Any] | None] = mapped_column(JSON)
    keypoints: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)


class LabelRow(_LabelColumns, Base):
    __tablename__ = "labels"
    __table_args__ = (
        Index("ix_labels_field_label", "field_id", "label", "confidence"),
        Index("ix_labels_sample_field", "sample_id", "field_id"),
    )

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"))
    field_id: Mapped[int] = mapped_column(ForeignKey("label_fields.id", ondelete="CASCADE"))


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("dataset_id", "name", name="uq_runs_dataset_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(32))
    task: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(300))
    field: Mapped[str] = mapped_column(String(200))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    model_info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    total: Mapped[int] = mapped_column(Integer, default=0)
    workers: Mapped[int] = mapped_column(Integer, default=1)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # last (re)start request
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RunWorkerRow(Base):
    """One worker process of a run (one per shard): its heartbeat and throughput since it started."""

    __tablename__ = "run_workers"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    pid: Mapped[int | None] = mapped_column(Integer)
    hostname: Mapped[str | None] = mapped_column(String(255))
    device: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32))
    processed: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class RunSampleRow(Base):
    """Per-sample progress of a run: ``state`` is pending, done or failed (with the failure message)."""

    __tablename__ = "run_samples"
    __table_args__ = (
        Index("ix_run_samples_run_state", "run_id", "state"),
        Index("ix_run_samples_run_shard_state", "run_id", "shard", "state", "sample_id"),
    )

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)


class RunProgressRow(Base):
    """Per run and shard: how many samples are done and how many failed. A worker adds to its shard's row in the
    transaction that settles the samples, so progress is a few rows to read instead of a million to count."""

    __tablename__ = "run_progress"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)


class RunLabelRow(_LabelColumns, Base):
    """A generated label under review: ``review_state`` is ``review`` or ``promoted``."""

    __tablename__ = "run_labels"
    __table_args__ = (
        Index("ix_run_labels_run_state_label", "run_id", "review_state", "label", "confidence"),
        # covering for confidence-filtered class tables: the range scan never visits the table
        Index("ix_run_labels_run_confidence_label", "run_id", "review_state", "confidence", "label"),
        Index("ix_run_labels_run_sample", "run_id", "sample_id"),
        # covering, in sample order: a page of the review grid (samples with matching labels) reads no row
        Index("ix_run_labels_run_state_sample", "run_id", "review_state", "sample_id", "confidence", "label"),
    )

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"))
    review_state: Mapped[str] = mapped_column(String(16), default="review")


class RunClassCountRow(Base):
    """Per run, review state, class and confidence bin: how many labels and their confidence sum. Kept in the same
    transactions that insert or move labels, so the class table and the confidence histogram cost a few thousand
    rows at 1M labels (``verilabel.review.counts``). After approval the states are ``approved`` and ``discarded``:
    what the review decided, per class."""

    __tablename__ = "run_class_counts"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    review_state: Mapped[str] = mapped_column(String(16), primary_key=True)
    label: Mapped[str] = mapped_column(String(200), primary_key=True)
    bin: Mapped[int] = mapped_column(Integer, primary_key=True)  # confidence bin 0..99; -1: no confidence
    count: Mapped[int] = mapped_column(Integer, default=0)
    scored: Mapped[int] = mapped_column(Integer, default=0)  # labels with a confidence
    confidence_sum: Mapped[float] = mapped_column(Float, default=0.0)


class EmbeddingSetRow(Base):
    """A 2-D map of a dataset's samples (``kind`` samples) or of a run's label patches (``kind`` patches), under a
    key: which model embedded them and how the vectors were projected (``verilabel.datasets.embeddings``)."""

    __tablename__ = "embeddings"
    __table_args__ = (UniqueConstraint("dataset_id", "key", name="uq_embeddings_dataset_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(300))
    method: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    projected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # None: not every point yet
    error: Mapped[str | None] = mapped_column(Text)  # why the last computation stopped, until the next one starts


class EmbeddingPointRow(Base):
    """One embedded sample or label: its vector (float16) and, once the set is projected, its place on the map."""

    __tablename__ = "embedding_points"
    __table_args__ = (
        UniqueConstraint("embedding_id", "sample_id", "label_id", name="uq_embedding_points_set_sample_label"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    embedding_id: Mapped[int] = mapped_column(ForeignKey("embeddings.id", ondelete="CASCADE"))
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), index=True)
    label_id: Mapped[str] = mapped_column(String(32))  # the embedded label (patches); "" for a whole sample
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    x: Mapped[float | None] = mapped_column(Float)
    y: Mapped[float | None] = mapped_column(Float)


class UserRow(Base):
    """Someone who may use the HTTP API: a role, and the SHA-256 of their token (the token itself is shown once)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SessionRow(Base):
    """A browser's sign-in: the SHA-256 of its cookie, until it expires (or the user is removed)."""

    __tablename__ = "sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class EventRow(Base):
    """What someone changed, when: a run created, labels promoted, a run approved... (kept when the run goes)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_run_at", "run_id", "at"), Index("ix_events_dataset_at", "dataset_id", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    run_id: Mapped[str | None] = mapped_column(String(32))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
