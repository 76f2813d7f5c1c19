"""The CLI as scripts use it: --json outputs, exit codes, errors on stderr without tracebacks."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.images import write_blob_images
from verilabel.cli import main
from verilabel.runs.config import RunRequest

BLOBS = "python:tests.support.blob_model:detector"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys: pytest.CaptureFixture[str], *args: str):
    code, out, err = cli(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    write_blob_images(tmp_path / "imgs", 6)
    return tmp_path / "imgs"


def test_dataset_commands(capsys, images: Path, tmp_path: Path):
    summary = cli_json(capsys, "dataset", "create", "pets", "--from-dir", str(images))
    assert summary["added"] == 6
    assert [d["name"] for d in cli_json(capsys, "dataset", "list")] == ["pets"]
    shown = cli_json(capsys, "dataset", "show", "pets", "--view", "ids=1,2")
    assert shown["samples"] == 6 and shown["matching"] == 2
    write_blob_images(images, 1, start=50)
    assert cli_json(capsys, "dataset", "add", "pets", "--from-dir", str(images))["added"] == 1
    code, out, err = cli(capsys, "dataset", "create", "pets", "--from-dir", str(images))
    assert code == 1 and "already exists" in err and "Traceback" not in err and out == ""


def test_voc_import_then_voc_and_label_studio_exports(capsys, images: Path, tmp_path: Path):
    annotations = tmp_path / "voc" / "Annotations"
    annotations.mkdir(parents=True)
    (tmp_path / "voc" / "JPEGImages").symlink_to(images)
    (annotations / "img_00000.xml").write_text(
        "<annotation><filename>img_00000.png</filename><size><width>160</width><height>120</height></size>"
        "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>80</xmax><ymax>60</ymax></bndbox>"
        "</object></annotation>"
    )
    summary = cli_json(capsys, "dataset", "create", "pets", "--from-voc", str(tmp_path / "voc"), "--field", "gt")
    assert (summary["added"], summary["labels"]) == (1, 1)
    exported = cli_json(capsys, "export", "pets", "--field", "gt", "--format", "voc", "--out", str(tmp_path / "out"))
    assert (exported["images"], exported["labels"]) == (1, 1) and exported["format"] == "voc"
    (written,) = (tmp_path / "out" / "Annotations").glob("*.xml")
    assert "<xmax>80</xmax>" in written.read_text()
    code, out, _ = cli(capsys, "export", "pets", "--field", "gt", "--format", "label-studio", "--out", str(tmp_path))
    assert code == 0 and "next: run Label Studio with LOCAL_FILES_SERVING_ENABLED=true" in out
    code, _, err = cli(capsys, "dataset", "create", "x", "--from-voc", str(tmp_path), "--from-dir", str(images))
    assert code == 2 and "only one of" in err


@pytest.mark.slow
def test_run_commands(capsys, images: Path):
    cli_json(capsys, "dataset", "create", "pets", "--from-dir", str(images))
    created = cli_json(
        capsys,
        "run",
        "create",
        "pets",
        "--task",
        "detection",
        "--model",
        BLOBS,
        "--field",
        "blobs",
        "--classes",
        "red,green",
        "--alias",
        "cool=blue",
        "--name",
        "first",
    )
    assert set(created) >= {"id"}
    code, out, err = cli(capsys, "run", "watch", created["id"])
    assert code == 0 and "in_review" in out
    shown = cli_json(capsys, "run", "show", "first")
    assert set(shown) >= {"id", "name", "dataset", "status", "progress", "error", "labels", "classes"}
    assert shown["status"] == "in_review" and shown["progress"] == {
        **shown["progress"],
        "done": 6,
        "failed": 0,
        "total": 6,
    }
    assert shown["dataset"] == "pets" and shown["labels"] > 0
    waited = cli_json(
        capsys, "run", "create", "pets", "--task", "classification", "--model", BLOBS, "--field", "colour", "--wait"
    )
    assert waited["status"] == "in_review" and waited["progress"]["done"] == 6
    listed = cli_json(capsys, "run", "list", "pets")
    assert [r["name"] for r in listed] == ["first", waited["name"]] and all("id" in r for r in listed)
    code, _, err = cli(capsys, "run", "cancel", "first")
    assert code == 1 and "only queued or generating runs can be cancelled" in err
    code, _, err = cli(capsys, "run", "resume", "first")
    assert code == 1 and "cannot be resumed" in err


def test_invalid_config_exits_2_naming_the_field(capsys, images: Path):
    cli_json(capsys, "dataset", "create", "pets", "--from-dir", str(images))
    code, out, err = cli(
        capsys, "run", "create", "pets", "--task", "detection", "--model", BLOBS, "--field", "f", "--classes", "rde"
    )
    assert code == 2 and out == ""
    assert err.startswith("error: invalid classes: 'rde' is not in the model's vocabulary (closest names: red")
    code, _, err = cli(
        capsys,
        "run",
        "create",
        "pets",
        "--task",
        "detection",
        "--model",
        BLOBS,
        "--field",
        "f",
        "--min-confidence",
        "2",
    )
    assert code == 2 and "invalid min_confidence" in err


def test_debug_shows_the_traceback(capsys):
    code, _, err = cli(capsys, "dataset", "show", "nope")
    assert code == 1 and "no dataset named 'nope'" in err and "Traceback" not in err
    with pytest.raises(Exception, match="no dataset named"):
        main(["--debug", "dataset", "show", "nope"])


def test_models_lists_the_catalogue(capsys):
    rows = cli_json(capsys, "models")
    assert {"mediapipe-face", "rapidocr-text", "efficientnet-lite0-imagenet"} <= {r["name"] for r in rows}
    for row in rows:
        assert set(row) >= {"name", "family", "tasks", "zero_shot", "available"}
    by_name = {r["name"]: r for r in rows}
    assert by_name["mediapipe-face"]["available"] is True
    assert by_name["faster-rcnn-resnet50-fpn-coco"]["available"] is False  # weights not downloaded here
    classification = cli_json(capsys, "models", "--task", "classification")
    assert classification and all("classification" in r["tasks"] for r in classification)
    assert all(not r["zero_shot"] for r in cli_json(capsys, "models", "--fixed"))
    code, _, err = cli(capsys, "models", "--task", "dance")
    assert code == 2 and "invalid task" in err


def test_usage_errors_and_help(capsys):
    code, out, _ = cli(capsys, "--help")
    assert code == 0 and "dataset" in out and "run" in out and "demo" in out
    code, _, err = cli(capsys, "run", "create")
    assert code == 2 and "Missing" in err


def test_import_and_help_stay_light():
    probe = (
        "import sys, verilabel, verilabel.cli; "
        "heavy = [m for m in ('torch', 'sqlalchemy', 'cv2', 'mediapipe', 'numpy') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    result = subprocess.run([sys.executable, "-m", "verilabel", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "Verified auto-labeling" in result.stdout


def test_version_and_flags_shown_as_flags(capsys, monkeypatch):
    import verilabel

    code, out, _ = cli(capsys, "--version")
    assert code == 0 and out.strip() == f"verilabel {verilabel.__version__}"
    monkeypatch.setenv("COLUMNS", "200")
    for command in (["--help"], ["run", "create", "--help"], ["review", "approve", "--help"], ["models", "--help"]):
        code, out, _ = cli(capsys, *command)
        assert (code == 0 and "--json" in out) or "--debug" in out
        assert "<bool>" not in out, command


def test_run_list_keeps_ids_and_statuses_whole_in_80_columns(capsys, monkeypatch, images: Path):
    from verilabel.runs.service import create_run
    from verilabel.store import Store

    cli_json(capsys, "dataset", "create", "pets", "--from-dir", str(images))
    store = Store.open()
    long_field = "a_rather_long_label_field_name_for_the_people_in_the_pictures"
    infos = [
        create_run(store, RunRequest(dataset="pets", task="detection", model=BLOBS, field=field), start=False)
        for field in (long_field, "short")
    ]
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = cli(capsys, "run", "list", "pets")
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 80
    for info in infos:
        assert info.id in out  # whole, on one line
    assert out.count(" queued ") == 2 and "…" in out  # the long field name is cut, not the status


@pytest.mark.slow
def test_waiting_on_a_run_that_fails_exits_3_and_prints_its_error(capsys, images: Path):
    cli_json(capsys, "dataset", "create", "pets", "--from-dir", str(images))
    broken = "python:tests.support.blob_model:broken"
    code, out, _ = cli(
        capsys, "run", "create", "pets", "--task", "detection", "--model", broken, "--field", "f", "--wait"
    )
    assert code == 3 and "error" in out and "weights file /nowhere/blob.pth is missing" in out
    code, out, _ = cli(capsys, "run", "watch", "f")
    assert code == 3 and "weights file /nowhere/blob.pth is missing" in out
    code, out, _ = cli(
        capsys, "run", "create", "pets", "--task", "detection", "--model", broken, "--field", "g", "--wait", "--json"
    )
    assert code == 3 and json.loads(out)["status"] == "error"


@pytest.mark.slow
def test_finished_runs_show_their_average_speed_and_where_their_labels_are(capsys, images: Path):
    """Not `0.0 img/s` once the workers are gone, nor `0 labels` for approved runs or fields in review."""
    cli_json(capsys, "dataset", "create", "pets", "--from-dir", str(images))
    code, out, _ = cli(
        capsys, "run", "create", "pets", "--task", "detection", "--model", BLOBS, "--field", "blobs", "--wait"
    )
    assert code == 0
    # Output to a pipe (not a terminal): progress lines, no bar frozen at "0.0 img/s ... 0:00:00".
    assert "0.0 img/s" not in out and "0:00:00" not in out and "blobs [in_review] 6/6 samples" in out
    shown = cli_json(capsys, "run", "show", "blobs")
    assert shown["progress"]["rate"] == 0 and shown["progress"]["average_rate"] > 0
    code, out, _ = cli(capsys, "run", "show", "blobs")
    assert "average" in out and "img/s" in out and "0.0 img/s" not in out and "min confidence 0.1" in out
    assert f"labels: {shown['labels']} in review (0 promoted)" in out
    code, out, _ = cli(capsys, "dataset", "show", "pets")
    assert f"{shown['labels']} labels in review in run blobs (0 promoted)" in out
    cli_json(capsys, "review", "promote", "blobs", "--class", "red")
    approved = cli_json(capsys, "review", "approve", "blobs", "--yes")
    listed = cli_json(capsys, "run", "list", "pets")
    assert listed[0]["labels"] == approved["approved"] > 0 and listed[0]["discarded"] == approved["discarded"]
    code, out, _ = cli(capsys, "run", "list", "pets")
    assert f"{approved['approved']} approved" in out
    code, out, _ = cli(capsys, "run", "show", "blobs")
    assert f"{approved['approved']} approved into the dataset, {approved['discarded']} discarded" in out
    assert "1 class" in out and "1 classes" not in out
    code, out, _ = cli(capsys, "dataset", "show", "pets")
    assert f"field blobs (detection): {approved['approved']} labels" in out


@pytest.mark.slow
def test_review_labels_name_the_files(capsys, images: Path):
    cli_json(capsys, "dataset", "create", "pets", "--from-dir", str(images))
    cli(capsys, "run", "create", "pets", "--task", "detection", "--model", BLOBS, "--field", "blobs", "--wait")
    rows = cli_json(capsys, "review", "labels", "blobs", "--limit", "3")
    assert rows and all(Path(row["path"]).parent == images for row in rows)
    code, out, _ = cli(capsys, "review", "labels", "blobs", "--limit", "3")
    assert code == 0 and Path(rows[0]["path"]).name in out


def test_models_say_what_is_missing_and_where_it_goes(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    by_name = {row["name"]: row for row in cli_json(capsys, "models")}
    assert by_name["mediapipe-face"]["missing"] is None
    missing = by_name["yolo11n-coco"]["missing"]
    assert "yolo11n.pt" in missing and "weights" in missing  # the weights, not a `pip install`
    assert "not in the Hugging Face cache" in by_name["owlv2-base-patch16-ensemble"]["missing"]
    code, out, _ = cli(capsys, "models", "--task", "detection")
    assert code == 0 and "no: pip install 'verilabel'" not in out and "yolo11n.pt not in" in out
    vocabulary = cli_json(capsys, "models", "--vocabulary")
    assert "person" in next(r for r in vocabulary if r["name"] == "yolo11n-coco")["vocabulary"]


@pytest.mark.parametrize(
    "command",
    [["dataset", "list", "--json"], ["run", "show", "r", "--json"], ["review", "table", "r", "--json"]],
    ids=lambda c: " ".join(c[:2]),
)
def test_read_commands_load_no_more_than_they_use(command, images: Path):
    """Scripts call the CLI in loops: a read pays for SQLAlchemy and the CLI, not for Alembic (the schema is
    current), numpy and PIL (no image is read), label and format code, or rich (JSON output)."""
    from verilabel.datasets import service as ds
    from verilabel.review.service import analyze_field
    from verilabel.store import Store
    from verilabel.store.convert import label_columns
    from verilabel.store.schema import LabelRow

    store = Store.open()
    ds.add_images(store, "d", images, create=True)
    with store.write() as session:
        field = ds.ensure_field(session, ds.dataset_row(session, "d").id, "f", "detection")
        from verilabel.labels import Box, Detection

        label = Detection("cat", Box(0.1, 0.1, 0.2, 0.2), 0.5)
        session.add(LabelRow(**label_columns(label), sample_id=1, field_id=field.id))
    analyze_field(store, "d", "f", name="r")
    probe = (
        "import sys, io, contextlib\n"
        "from verilabel.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main({command!r})\n"
        "heavy = ('alembic', 'numpy', 'PIL', 'rich', 'pydantic', 'verilabel.labels', 'verilabel.formats', "
        "'verilabel.models', 'sqlalchemy.dialects.postgresql')\n"
        "print(code, sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0 []"
