"""The demo is the main job: it must build the dataset and leave every offline run in review."""

import json

import pytest

from verilabel.cli import main

pytestmark = pytest.mark.slow


def test_demo_labels_sample_images_offline_and_leaves_runs_in_review(capsys):
    assert main(["demo", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["samples"] >= 20
    runs = {run["field"]: run for run in result["runs"]}
    assert {"faces", "text", "people"} <= set(runs)
    for run in runs.values():
        assert run["status"] == "in_review", run["error"]
        assert run["progress"]["done"] + run["progress"]["failed"] == run["progress"]["total"] == result["samples"]
    assert runs["faces"]["labels"] >= 1 and runs["text"]["labels"] >= 5
    if "imagenet" in runs:
        assert (
            runs["imagenet"]["progress"]["done"] // 2
            <= runs["imagenet"]["labels"]
            <= runs["imagenet"]["progress"]["done"]
        )
    # running it again rebuilds the demo dataset instead of failing
    assert main(["demo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == result["samples"]
