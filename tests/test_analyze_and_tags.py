"""Analyze existing labels (a run that starts in review) and sample tags through the CLI."""

import json
from pathlib import Path

import pytest

from tests.test_export import seeded
from verilabel.cli import main
from verilabel.datasets import service as ds
from verilabel.errors import ConflictError
from verilabel.review import service as review
from verilabel.review.service import LabelQuery
from verilabel.runs import service as runs
from verilabel.store import Store


def test_analyze_existing_labels_then_approve_keeps_only_promoted(store: Store, tmp_path: Path):
    seeded(store, tmp_path)
    run = review.analyze_field(store, "src", "gt", name="check-gt")
    info = runs.get_run(store, run)
    assert info.status == "in_review" and info.labels == 4 and info.total == 3
    assert {r.label: r.total for r in review.class_table(store, run)} == {"car": 2, "dog": 2}
    review.promote(store, run, LabelQuery(min_confidence=0.5))
    assert review.approve(store, run).approved == 3
    kept = sorted(
        label.confidence or 0 for s in ds.samples(store, "src") for label in ds.labels_of(store, "src", "gt", s.id)
    )
    assert kept == [0.55, 0.7, 0.9]


def test_one_open_analysis_per_field(store: Store, tmp_path: Path):
    """A second open review of a field would rewrite it on approval and undo the first one's work."""
    seeded(store, tmp_path)
    first = review.analyze_field(store, "src", "gt", name="first")
    with pytest.raises(ConflictError, match="run 'first' already reviews field 'gt'"):
        review.analyze_field(store, "src", "gt", name="second")
    review.promote(store, first, LabelQuery(min_confidence=0.5))
    review.approve(store, first)
    second = review.analyze_field(store, "src", "gt", name="second")
    assert runs.get_run(store, second).labels == 3  # the field as the first review left it


def test_analyze_refuses_fields_without_confidences(store: Store, tmp_path: Path):
    seeded(store, tmp_path)
    from sqlalchemy import update

    from verilabel.store.schema import LabelRow

    with store.write() as session:
        session.execute(update(LabelRow).values(confidence=None))
    with pytest.raises(ConflictError, match=r"no label in field 'gt' has a confidence in \[0, 1\]"):
        review.analyze_field(store, "src", "gt")


def cli_json(capsys, *args):
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_review_and_tag_commands(capsys, store: Store, tmp_path: Path):
    seeded(store, tmp_path)
    run = cli_json(capsys, "run", "analyze", "src", "--field", "gt", "--name", "a")
    table = cli_json(capsys, "review", "table", "a", "--min-confidence", "0.5")
    assert table == [
        {"label": "car", "instances": 2, "total": 2, "mean_confidence": 0.725},
        {"label": "dog", "instances": 1, "total": 2, "mean_confidence": 0.7},
    ]
    assert cli_json(capsys, "review", "tag", "a", "checked", "--class", "car") == {"tagged": 2}
    assert cli_json(capsys, "review", "tag", "a", "checked", "--remove", "--min-confidence", "0.6") == {"untagged": 1}
    assert cli_json(capsys, "review", "promote", "a", "--tag", "checked") == {"promoted": 1}
    assert cli_json(capsys, "review", "undo", "a", "--all") == {"undone": 1}
    assert cli_json(capsys, "review", "promote", "a", "--class", "car") == {"promoted": 2}
    assert cli_json(capsys, "review", "table", "a", "--approval")[0]["total"] == 2
    assert cli_json(capsys, "review", "undo", "a", "--class", "car") == {"undone": 2}
    assert cli_json(capsys, "review", "promote", "a", "--min-confidence", "0.6") == {"promoted": 2}
    labels = cli_json(capsys, "review", "labels", "a", "--approval")
    (tmp_path / "ids.txt").write_text(labels[0]["id"] + "\n")
    assert cli_json(capsys, "review", "undo", "a", "--labels", str(tmp_path / "ids.txt")) == {"undone": 1}
    assert main(["review", "undo", "a"]) == 2 and "--all" in capsys.readouterr().err
    assert main(["review", "approve", "a"]) == 2 and "--yes" in capsys.readouterr().err
    assert cli_json(capsys, "review", "approve", "a", "--yes") == {"approved": 1, "discarded": 3, "field": "gt"}
    assert main(["review", "table", "a"]) == 1 and "review is closed" in capsys.readouterr().err
    assert run["status"] == "in_review"

    assert cli_json(capsys, "tag", "add", "src", "needs-fix", "--view", "has=gt") == {"tagged": 1}
    assert cli_json(capsys, "dataset", "show", "src", "--view", "tags=needs-fix")["matching"] == 1
    assert cli_json(capsys, "tag", "remove", "src", "needs-fix") == {"untagged": 1}
    exported = cli_json(capsys, "export", "src", "--field", "gt", "--format", "coco", "--out", str(tmp_path / "o"))
    assert exported["labels"] == 1


def test_label_tags_filter_review_survive_approval_and_work_in_views(store: Store, tmp_path: Path):
    from tests.review_helpers import synthetic_run
    from verilabel.datasets.views import parse_view

    run = synthetic_run(store, tmp_path, [(0, "car", 0.9), (1, "car", 0.3), (2, "dog", 0.2), (3, "dog", 0.95)])
    assert review.tag_labels(store, run, ["needs-fix"], LabelQuery(max_confidence=0.5)) == 2
    assert review.tag_labels(store, run, ["needs-fix"], LabelQuery(max_confidence=0.5)) == 0  # already tagged
    assert review.tag_labels(store, run, ["100%_sure"], LabelQuery(min_confidence=0.9)) == 2  # LIKE wildcards
    tagged = review.class_table(store, run, LabelQuery(tags=["needs-fix"]))
    assert {r.label: r.instances for r in tagged} == {"car": 1, "dog": 1}
    assert {r.label: r.instances for r in review.class_table(store, run, LabelQuery(tags=["100%"]))} == {
        "car": 0,
        "dog": 0,
    }
    review.promote(store, run)
    assert review.tag_labels(store, run, ["needs-fix"], LabelQuery(classes=["dog"]), remove=True) == 1
    review.approve(store, run)
    ids = ds.sample_ids(store, "d", parse_view("auto.tags=needs-fix"))
    assert len(ids) == 1
    assert len(ds.sample_ids(store, "d", parse_view("auto.tags=100%_sure"))) == 2
    with pytest.raises(Exception, match="non-empty tag"):
        review.tag_labels(store, run, [" "])
