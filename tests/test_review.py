"""Review: the class table, promote / undo, approve (final and atomic), concurrent reviewers."""

import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.review_helpers import states, synthetic_run
from tests.runs_helpers import status_changing
from verilabel.datasets import service as ds
from verilabel.datasets.views import View
from verilabel.errors import ConfigError, ConflictError
from verilabel.review import service as review
from verilabel.review.service import LabelQuery
from verilabel.runs import service as runs
from verilabel.store import Store
from verilabel.store.schema import LabelRow, RunLabelRow

LABELS = [
    (0, "car", 0.9),
    (0, "car", 0.4),
    (1, "car", 0.6),
    (1, "dog", 0.8),
    (2, "dog", 0.3),
    (2, "dog", 0.95),
    (3, "cat", 0.5),
    (3, "car", 0.2),
]


def table(store: Store, run: str, query: LabelQuery | None = None, approval: bool = False) -> dict[str, tuple]:
    return {
        r.label: (r.instances, r.total, None if r.mean_confidence is None else round(r.mean_confidence, 4))
        for r in review.class_table(store, run, query, approval=approval)
    }


def test_class_table_reports_current_of_total_and_mean_confidence(store: Store, tmp_path: Path):
    run = synthetic_run(store, tmp_path, LABELS)
    assert table(store, run) == {"car": (4, 4, 0.525), "cat": (1, 1, 0.5), "dog": (3, 3, 0.6833)}
    assert table(store, run, LabelQuery(min_confidence=0.5)) == {
        "car": (2, 4, 0.75),
        "cat": (1, 1, 0.5),
        "dog": (2, 3, 0.875),
    }
    assert table(store, run, LabelQuery(min_confidence=0.5, max_confidence=0.85)) == {
        "car": (1, 4, 0.6),
        "cat": (1, 1, 0.5),
        "dog": (1, 3, 0.8),
    }
    first_two = [s.id for s in ds.samples(store, "d")][:2]
    assert table(store, run, LabelQuery(sample_ids=first_two)) == {
        "car": (3, 4, 0.6333),
        "cat": (0, 1, None),
        "dog": (1, 3, 0.8),
    }
    assert table(store, run, LabelQuery(view=View(ids=first_two), classes=["dog"]))["dog"] == (1, 3, 0.8)


def test_promoted_labels_leave_the_review_counts_and_form_the_approval_table(store: Store, tmp_path: Path):
    run = synthetic_run(store, tmp_path, LABELS)
    assert review.promote(store, run, LabelQuery(min_confidence=0.8)) == 3
    assert table(store, run) == {"car": (3, 3, 0.4), "cat": (1, 1, 0.5), "dog": (1, 1, 0.3)}
    assert table(store, run, approval=True) == {"car": (1, 1, 0.9), "dog": (2, 2, 0.875)}
    assert review.promote(store, run, LabelQuery(min_confidence=0.8)) == 0  # already promoted


def test_promote_then_undo_restores_the_exact_review_set(store: Store, tmp_path: Path):
    run = synthetic_run(store, tmp_path, LABELS)
    before = states(store, run)
    assert review.promote(store, run, LabelQuery(classes=["car", "dog"], max_confidence=0.7)) == 4
    assert review.undo(store, run) == 4
    assert states(store, run) == before
    review.promote(store, run)
    assert review.undo(store, run, LabelQuery(classes=["dog"])) == 3
    car_ids = [label.id for _, label in review.list_labels(store, run, LabelQuery(classes=["car"]), approval=True)]
    assert review.undo(store, run, LabelQuery(label_ids=car_ids[:2])) == 2
    assert table(store, run, approval=True) == {
        "car": (2, 2, table(store, run, approval=True)["car"][2]),
        "cat": (1, 1, 0.5),
    }


def test_list_labels_pages_and_sorts(store: Store, tmp_path: Path):
    run = synthetic_run(store, tmp_path, LABELS)
    page = review.list_labels(store, run, limit=3)
    assert [label.confidence for _, label in page] == [0.95, 0.9, 0.8]
    page2 = review.list_labels(store, run, limit=3, offset=3, sort="confidence")
    assert [label.confidence for _, label in page2] == [0.5, 0.6, 0.8]
    with pytest.raises(ConfigError):
        review.list_labels(store, run, sort="colour")
    with pytest.raises(ConfigError) as info:
        review.class_table(store, run, LabelQuery(min_confidence=0.9, max_confidence=0.1))
    assert info.value.field == "max_confidence"


def test_approve_writes_promoted_labels_discards_the_rest_and_closes_the_run(store: Store, tmp_path: Path):
    masks = tmp_path / "masks"
    masks.mkdir()
    run = synthetic_run(store, tmp_path, LABELS, mask_dir=masks)
    review.promote(store, run, LabelQuery(min_confidence=0.8))
    promoted = {label_id for label_id, state in states(store, run).items() if state == "promoted"}
    result = review.approve(store, run)
    assert (result.approved, result.discarded, result.field) == (3, 5, "auto")
    with store.read() as session:
        approved = {r.id: r for r in session.scalars(select(LabelRow))}
        assert session.scalar(select(RunLabelRow.id).where(RunLabelRow.run_id == run)) is None
    assert set(approved) == promoted  # the same labels, ids kept
    assert {Path(r.mask_path).name for r in approved.values()} == {p.name for p in (masks / run).iterdir()}
    assert runs.get_run(store, run).status == "approved"
    assert ds.dataset_info(store, "d").fields["auto"]["labels"] == 3
    for operation in (
        lambda: review.promote(store, run),
        lambda: review.undo(store, run),
        lambda: review.approve(store, run),
        lambda: review.class_table(store, run),
    ):
        with pytest.raises(ConflictError, match="approved: its review is closed"):
            operation()


def test_review_needs_a_run_in_review(store: Store, tmp_path: Path):
    run = synthetic_run(store, tmp_path, LABELS)
    from sqlalchemy import update

    from verilabel.store.schema import RunRow

    with store.write() as session:
        session.execute(update(RunRow).where(RunRow.id == run).values(status="generating"))
    with pytest.raises(ConflictError, match="not in_review: wait for it to finish"):
        review.promote(store, run)


def test_a_promote_waiting_for_an_approve_sees_the_run_approved(store: Store, tmp_path: Path):
    """A promote arriving while an approve holds the run waits for it, then reads the run afresh: it must not
    move labels of a run whose review just closed."""
    run = synthetic_run(store, tmp_path, LABELS)
    with status_changing(store, run, "approved"), pytest.raises(ConflictError, match="approved"):
        review.promote(store, run)


CRASH_SCRIPT = """
import os, sys
from verilabel.review import service
from verilabel.store import Store

def crash(session, row):
    session.flush()
    os._exit(3)  # the process dies between copying the promoted labels and deleting the generated ones

service._delete_generated = crash
service.approve(Store.open(sys.argv[1]), sys.argv[2])
"""


def test_approve_is_atomic_when_the_process_dies_midway(store: Store, tmp_path: Path):
    run = synthetic_run(store, tmp_path, LABELS)
    review.promote(store, run, LabelQuery(classes=["dog"]))
    before = states(store, run)
    died = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, store.url, run], capture_output=True, text=True)
    assert died.returncode == 3, died.stderr
    assert states(store, run) == before
    assert runs.get_run(store, run).status == "in_review"
    with store.read() as session:
        assert session.scalar(select(LabelRow.id)) is None
    assert review.approve(store, run).approved == 3  # and it still works afterwards


def _toggle(url: str, run: str, label_ids: list[str], rounds: int) -> None:
    store = Store(url)
    for _ in range(rounds):
        for label_id in label_ids:
            review.promote(store, run, LabelQuery(label_ids=[label_id]))
        for label_id in label_ids[::2]:
            review.undo(store, run, LabelQuery(label_ids=[label_id]))
        review.undo(store, run, LabelQuery(label_ids=label_ids[::2]))  # a second undo of the same: no-op
        review.promote(store, run, LabelQuery(label_ids=label_ids[::2]))


@pytest.mark.slow
def test_concurrent_reviewers_never_lose_or_double_an_action(store: Store, tmp_path: Path):
    labels = [(i % 4, f"c{i % 3}", (i % 10) / 10) for i in range(120)]
    run = synthetic_run(store, tmp_path, labels)
    ids = sorted(states(store, run))
    halves = [ids[0::2], ids[1::2]]
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_toggle, args=(store.url, run, half, 2)) for half in halves]
    for worker in workers:
        worker.start()
    review.promote(store, run, LabelQuery(classes=["c0"], max_confidence=-0.0))  # a third reviewer, touching none
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert set(states(store, run).values()) == {"promoted"}
    assert sum(r.total for r in review.class_table(store, run, approval=True)) == 120
    assert review.undo(store, run) == 120


def assert_counts_match_labels(store: Store, run: str) -> None:
    """The maintained per-class counts equal a fresh count of the labels, in both sets."""
    from verilabel.review import counts

    with store.read() as session:
        for state in ("review", "promoted"):
            fresh = counts.matching(session, (RunLabelRow.run_id == run) & (RunLabelRow.review_state == state))
            for kept, recounted in (
                (counts.bins(session, run, state), fresh),  # per class and confidence bin
                (counts.totals(session, run, state), counts.per_class(fresh)),
            ):
                assert kept.keys() == recounted.keys()
                for key, (count, scored, total) in kept.items():
                    assert (count, scored) == recounted[key][:2] and total == pytest.approx(recounted[key][2])


def test_class_counts_stay_exact_through_promote_and_undo(store: Store, tmp_path: Path):
    labels = [(i % 5, f"c{i % 4}", (i * 37 % 100) / 100) for i in range(200)]
    run = synthetic_run(store, tmp_path, labels, samples=5)
    assert_counts_match_labels(store, run)
    review.promote(store, run, LabelQuery(min_confidence=0.5))
    review.undo(store, run, LabelQuery(classes=["c1"]))
    review.promote(store, run, LabelQuery(classes=["c2"], max_confidence=0.3))
    review.undo(store, run, LabelQuery(min_confidence=0.9))
    assert_counts_match_labels(store, run)
    whole = {r.label: (r.instances, r.total) for r in review.class_table(store, run)}
    filtered = {r.label: r.total for r in review.class_table(store, run, LabelQuery(min_confidence=0.0))}
    assert {label: total for label, (_, total) in whole.items()} == filtered


def test_generated_runs_keep_class_counts(store: Store, tmp_path: Path):
    from tests.runs_helpers import blob_dataset, request

    blob_dataset(store, tmp_path / "imgs", 8)
    info = runs.wait_run(store, runs.create_run(store, request("boxes", workers=2)).id, timeout=120)
    assert info.status == "in_review", info.to_json()
    assert_counts_match_labels(store, info.id)
    assert sum(r.total for r in review.class_table(store, info.id)) == info.labels > 0


def test_a_class_the_run_does_not_have_is_an_error_listing_its_classes(store: Store, tmp_path: Path):
    run = synthetic_run(store, tmp_path, LABELS)
    for action in (review.promote, review.undo, review.class_table):
        with pytest.raises(ConfigError, match=r"no label of class 'persn'; its classes: car, cat, dog") as info:
            action(store, run, LabelQuery(classes=["persn"]))
        assert info.value.field == "class"
    with pytest.raises(ConfigError, match="'persn'"):
        review.tag_labels(store, run, ["x"], LabelQuery(classes=["car", "persn"]))
    assert review.promote(store, run, LabelQuery(classes=["cat"])) == 1  # a class with labels still works


def test_approving_with_nothing_promoted_is_refused_unless_asked_for(store: Store, tmp_path: Path):
    run = synthetic_run(store, tmp_path, LABELS)
    with pytest.raises(ConflictError, match=r"no promoted label: approving would discard all 8 labels.*--allow-empty"):
        review.approve(store, run)
    assert runs.get_run(store, run).status == "in_review" and len(states(store, run)) == 8  # nothing changed
    result = review.approve(store, run, allow_empty=True)
    assert (result.approved, result.discarded) == (0, 8)
    info = runs.get_run(store, run)
    assert (info.status, info.labels, info.discarded) == ("approved", 0, 8)


def test_an_approved_run_keeps_its_counts_per_class(store: Store, tmp_path: Path):
    run = synthetic_run(store, tmp_path, LABELS)
    review.promote(store, run, LabelQuery(min_confidence=0.8))
    review.approve(store, run)
    info = runs.get_run(store, run)
    assert (info.labels, info.classes, info.promoted, info.discarded) == (3, 2, 3, 5)


def test_exporting_a_field_still_in_review_says_where_its_labels_are(store: Store, tmp_path: Path):
    from verilabel.datasets.export import export_field

    run = synthetic_run(store, tmp_path, LABELS)
    with pytest.raises(ConflictError, match=r"field 'auto' holds no labels yet: its labels are in run 'auto'.*approve"):
        export_field(store, "d", "auto", "coco", tmp_path / "out")
    review.promote(store, run, LabelQuery(classes=["dog"]))
    review.approve(store, run)
    # once approved it exports (the sample files of this synthetic run do not exist: COCO only reads sizes)
    assert export_field(store, "d", "auto", "coco", tmp_path / "out").labels == 3


def test_tags_change_in_sql_for_every_matching_label_non_ascii_included(store: Store, tmp_path: Path):
    run = synthetic_run(store, tmp_path, LABELS)
    assert review.tag_labels(store, run, ["à-revoir", "blur"], LabelQuery(classes=["car"])) == 4
    assert review.tag_labels(store, run, ["à-revoir"], LabelQuery(classes=["car", "dog"])) == 3  # cars had it
    tagged = review.list_labels(store, run, LabelQuery(tags=["à-revoir"]), limit=100)
    assert sorted(label.label for _, label in tagged) == ["car"] * 4 + ["dog"] * 3
    cars = [label for _, label in review.list_labels(store, run, LabelQuery(classes=["car"]), limit=100)]
    assert all(label.tags == ["à-revoir", "blur"] for label in cars)
    assert review.tag_labels(store, run, ["à-revoir"], LabelQuery(max_confidence=0.5), remove=True) == 3
    remaining = {label.id: label.tags for _, label in review.list_labels(store, run, limit=100)}
    assert sorted(map(tuple, remaining.values())) == sorted(
        [("à-revoir", "blur"), ("à-revoir", "blur"), ("blur",), ("blur",), ("à-revoir",), ("à-revoir",), (), ()]
    )
    assert review.tag_labels(store, run, ["blur"], remove=True) == 4
    review.promote(store, run, LabelQuery(tags=["à-revoir"]))
    review.approve(store, run)
    with store.read() as session:
        kept = session.scalars(select(LabelRow.tags)).all()
    assert sorted(map(tuple, kept)) == [("à-revoir",)] * 4  # tags survive approval


def test_the_histogram_gives_the_exact_class_table_of_any_bin_range(store: Store, tmp_path: Path):
    """The app's slider computes the class table from the histogram: bin [i/100, (i+1)/100) sums must equal the
    exact filter `min_confidence <= c < below`, edges included (0.29 is 28.999... x 100 in floating point)."""
    import random

    rng = random.Random(7)
    edges = [0.0, 0.29, 0.3, 0.35, 0.5, 0.57, 0.99, 1.0]
    labels = [
        (i % 4, rng.choice(["car", "dog"]), rng.choice(edges) if i % 3 == 0 else rng.random()) for i in range(300)
    ]
    run = synthetic_run(store, tmp_path, labels)
    histogram = review.histogram(store, run)
    for lo, hi in [(0, 100), (29, 30), (30, 35), (0, 29), (35, 57), (57, 100), (99, 100), (50, 51), (0, 1)]:
        below = hi / 100 if hi < 100 else None
        # a view (of every sample) makes the class table count the labels in SQL instead of reading the bins
        exact_query = LabelQuery(min_confidence=lo / 100, below=below, view=View())
        exact = {row.label: (row.instances, row.mean_confidence) for row in review.class_table(store, run, exact_query)}
        for row in review.class_table(store, run, LabelQuery(min_confidence=lo / 100, below=below)):  # from the bins
            assert row.instances == exact[row.label][0], (row.label, lo, hi)
            assert row.mean_confidence == pytest.approx(exact[row.label][1]), (row.label, lo, hi)
        for label, bins in histogram.counts.items():
            count = sum(bins[lo:hi])
            total = sum(histogram.sums[label][lo:hi])
            assert count == exact[label][0], (label, lo, hi)
            if count:
                assert total / count == pytest.approx(exact[label][1]), (label, lo, hi)
