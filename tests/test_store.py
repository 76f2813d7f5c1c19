import sqlite3
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from verilabel.settings import Settings
from verilabel.store import Store

TABLES = {
    "datasets",
    "samples",
    "sample_tags",
    "label_fields",
    "labels",
    "runs",
    "run_workers",
    "run_samples",
    "run_labels",
    "alembic_version",
}


def test_default_store_is_a_wal_sqlite_file_under_verilabel_home(home: Path):
    store = Store.open()
    assert Settings.from_env().database_url == f"sqlite:///{home / 'verilabel.db'}"
    assert (home / "verilabel.db").exists()
    assert set(store.table_names()) >= TABLES
    with sqlite3.connect(home / "verilabel.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_database_url_selects_another_database(tmp_path: Path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("VERILABEL_DATABASE_URL", url)
    Store.open()
    assert (tmp_path / "elsewhere.db").exists()


def test_migrations_are_idempotent_and_indexes_cover_per_run_queries(store: Store):
    store.migrate()
    Store(store.url)  # a second process opening the same database changes nothing
    indexes = {ix["name"]: ix["column_names"] for ix in inspect(store.engine).get_indexes("run_labels")}
    assert indexes["ix_run_labels_run_state_label"] == ["run_id", "review_state", "label", "confidence"]
    sample_indexes = {ix["name"] for ix in inspect(store.engine).get_indexes("run_samples")}
    assert "ix_run_samples_run_shard_state" in sample_indexes


def test_write_rolls_back_on_error(store: Store):
    from verilabel.store.schema import DatasetRow

    try:
        with store.write() as session:
            session.add(DatasetRow(name="x", created_at=__import__("datetime").datetime.now()))
            session.flush()
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with store.read() as session:
        assert session.query(DatasetRow).count() == 0


def test_a_read_sees_one_snapshot_while_writers_commit(store: Store):
    """A run's row and its workers' rows read in one ``read()`` must agree even when a worker commits between
    the two statements (on PostgreSQL, READ COMMITTED would let the second statement see the new commit)."""
    from datetime import datetime

    from sqlalchemy import func, select

    from verilabel.store.schema import DatasetRow

    def count(session: Session) -> int:
        return session.scalar(select(func.count()).select_from(DatasetRow)) or 0

    with store.read() as reading:
        before = count(reading)
        with store.write() as session:
            session.add(DatasetRow(name="committed-meanwhile", created_at=datetime.now()))
        assert count(reading) == before
    with store.read() as reading:
        assert count(reading) == before + 1


def test_bulk_inserted_labels_read_back_as_written_json_columns_included(store: Store, tmp_path: Path):
    from sqlalchemy import select

    from tests.review_helpers import synthetic_run
    from verilabel.labels import Box, Classification, Detection, Keypoints, Mask, Polygon
    from verilabel.store.bulk import insert_rows
    from verilabel.store.convert import label_columns, row_label
    from verilabel.store.schema import RunLabelRow, SampleRow

    run = synthetic_run(store, tmp_path, [])
    labels = [
        Detection("cat", Box(0.1, 0.2, 0.3, 0.4), 0.9, attributes={"scores": [["cat", 0.9]]}, tags=["blurry"]),
        Detection("dog", Box(0.0, 0.0, 1.0, 1.0), 0.5, mask=Mask(rle={"size": [2, 2], "counts": [0, 4]})),
        Detection("dog", Box(0.0, 0.0, 0.5, 0.5), 0.4, polygon=Polygon((((0.0, 0.0), (0.5, 0.0), (0.5, 0.5)),))),
        Detection("person", Box(0.1, 0.1, 0.2, 0.2), 0.7, keypoints=Keypoints(((0.15, 0.15),), ("nose",), (0.8,))),
        Classification("cat", 0.6, attributes={}),
    ]
    with store.write() as session:
        sample = session.scalars(select(SampleRow.id)).first()
        rows = [dict(label_columns(label), run_id=run, sample_id=sample, review_state="review") for label in labels]
        insert_rows(session, RunLabelRow, rows)
    with store.read() as session:
        stored = {
            row.id: row_label(row) for row in session.scalars(select(RunLabelRow).where(RunLabelRow.run_id == run))
        }
    assert [stored[label.id] for label in labels] == labels


def test_the_migrations_build_exactly_the_schema_and_head_is_current(store: Store):
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from verilabel.store.db import MIGRATIONS
    from verilabel.store.migrations import HEAD
    from verilabel.store.schema import Base

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_upgrading_to_0003_backfills_progress_and_approved_counts(tmp_path: Path):
    """A database made by an older verilabel: its runs get their progress counters and approved class counts."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from verilabel.store.db import MIGRATIONS

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Store(url, migrate=False)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with old.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
    stamp = "2026-01-01 00:00:00"
    with old.engine.begin() as conn:
        for statement in (
            f"INSERT INTO datasets (id, name, created_at) VALUES (1, 'd', '{stamp}')",
            *(
                f"INSERT INTO samples (id, dataset_id, path, metadata, created_at) VALUES ({i}, 1, 's{i}', '{{}}', "
                f"'{stamp}')"
                for i in range(1, 5)
            ),
            *(
                f"INSERT INTO runs (id, dataset_id, name, status, task, model, field, config, model_info, timings, "
                f"total, workers, cancel_requested, created_at, queued_at) VALUES ('{run}', 1, '{run}', '{status}', "
                f"'detection', 'm', '{run}', '{{}}', '{{}}', '{{}}', 4, 2, 0, '{stamp}', '{stamp}')"
                for run, status in (("open", "in_review"), ("done", "approved"))
            ),
            "INSERT INTO run_samples (run_id, sample_id, shard, state) VALUES ('open', 1, 1, 'done'), "
            "('open', 2, 0, 'done'), ('open', 3, 1, 'failed'), ('open', 4, 0, 'pending')",
            f"INSERT INTO label_fields (id, dataset_id, name, kind, run_id, created_at) VALUES (1, 1, 'done', "
            f"'detection', 'done', '{stamp}')",
            "INSERT INTO labels (id, kind, label, confidence, attributes, tags, sample_id, field_id) VALUES "
            "('a', 'detection', 'cat', 0.5, '{}', '[]', 1, 1), ('b', 'detection', 'cat', 0.7, '{}', '[]', 2, 1), "
            "('c', 'detection', 'dog', NULL, '{}', '[]', 2, 1)",
        ):
            conn.execute(text(statement))
    old.dispose()
    store = Store(url)
    with store.read() as session:
        progress = session.execute(text("SELECT run_id, shard, done, failed FROM run_progress ORDER BY shard")).all()
        approved = session.execute(
            text("SELECT label, count, scored, confidence_sum FROM run_class_counts WHERE review_state = 'approved'")
        ).all()
    assert progress == [("open", 0, 1, 0), ("open", 1, 1, 1)]
    assert sorted(approved) == [("cat", 2, 2, 1.2), ("dog", 1, 0, 0.0)]
    from verilabel.runs.service import get_run

    done = get_run(store, "done")
    assert (done.labels, done.classes) == (3, 2)
    assert (get_run(store, "open").done, get_run(store, "open").failed) == (2, 1)


def test_a_database_from_a_newer_verilabel_is_refused_with_the_fix(tmp_path: Path):
    """An older verilabel opening a newer schema once died with Alembic's `Can't locate revision`."""
    import pytest
    from sqlalchemy import text

    from verilabel.errors import StoreError

    url = f"sqlite:///{tmp_path / 'newer.db'}"
    store = Store(url)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    store.dispose()
    with pytest.raises(StoreError, match=r"newer verilabel \(schema 9999; this one knows up to 0006\).*pip install -U"):
        Store(url)
