"""Run configurations are validated before anything starts; each error names its field and the fix."""

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from tests.runs_helpers import BLOBS, blob_dataset, request
from tests.support.transactions import rival_transaction
from verilabel.datasets.service import dataset_row, ensure_field
from verilabel.errors import ConfigError, ConflictError, ModelLoadError, NotFoundError
from verilabel.runs import config as run_config
from verilabel.runs import service as runs
from verilabel.runs.config import validate
from verilabel.store import Store
from verilabel.store.schema import RunRow


@pytest.fixture
def dataset(store: Store, tmp_path: Path) -> Store:
    blob_dataset(store, tmp_path / "imgs", 3)
    return store


CASES = [
    ({"task": "tracking"}, "task", "choose one of classification, detection"),
    ({"task": "segmentation"}, "task", "does classification, detection, not segmentation"),
    ({"model": "blobz"}, "model", "unknown model 'blobz'"),
    ({"model": "mediapipe-fase"}, "model", "did you mean mediapipe-face"),
    ({"model": "python:tests.support.nowhere:factory"}, "model", "cannot import 'tests.support.nowhere'"),
    ({"model": "python:tests.support.blob_model:missing"}, "model", "has no attribute 'missing'"),
    ({"classes": ["rde"]}, "classes", "closest names: red"),
    ({"model": "python:tests.support.blob_model:zero_shot"}, "classes", "zero-shot model needs at least one class"),
    ({"aliases": ["colour"]}, "aliases", "DATASET_CLASS=MODEL_CLASS"),
    ({"min_confidence": 1.5}, "min_confidence", "outside [0, 1]"),
    ({"min_confidence": -0.1}, "min_confidence", "outside [0, 1]"),
    ({"field": "bad field!"}, "field", "not a valid name"),
    ({"task": "segmentation", "model": "python:tests.support.blob_model:segmenter"}, "mask_dir", "--mask-dir"),
    ({"workers": 0}, "workers", "outside 1..64"),
    ({"batch_size": 0}, "batch_size", "outside 1..4096"),
    ({"device": "gpu7"}, "device", "auto, cpu, cuda or cuda:N"),
    ({"target": "some"}, "target", "`all`, `view:EXPR` or `ids:FILE`"),
    ({"target": "view:tags=none-such"}, "target", "selects no samples"),
    ({"target": "view:bogus"}, "target", "cannot read clause"),
    ({"target": "ids:/nonexistent/ids.txt"}, "target", "sample id file not found"),
    ({"dataset": "other"}, "dataset", "no dataset named 'other'"),
    ({"name": "has space"}, "name", "not a valid name"),
]


@pytest.mark.parametrize(("change", "field", "message"), CASES, ids=[c[1] + ":" + str(c[0]) for c in CASES])
def test_invalid_configs_are_rejected_with_field_specific_messages(dataset: Store, change, field, message):
    change = dict(change)
    with pytest.raises(ConfigError) as info:
        runs.create_run(dataset, request(change.pop("field", "out"), **change), start=False)
    assert info.value.field == field
    assert message in str(info.value)
    with dataset.read() as session:
        assert session.query(RunRow).count() == 0  # nothing was written


def test_field_and_name_must_be_new(dataset: Store):
    first = runs.create_run(dataset, request("taken", name="first"), start=False)
    with pytest.raises(ConfigError) as info:
        validate(dataset, request("taken"))
    assert info.value.field == "field" and first.id in str(info.value) and "run analyze" in str(info.value)
    with pytest.raises(ConfigError) as info:
        validate(dataset, request("other", name="first"))
    assert info.value.field == "name"


@pytest.mark.parametrize("taken", ["field", "name"])
def test_a_run_created_between_validation_and_insert_takes_precedence(
    dataset: Store, monkeypatch: pytest.MonkeyPatch, taken: str
):
    """Two creates racing for one field (or run name): the later one fails with the precise error instead of
    sharing the field (or failing on a constraint)."""
    rival = request("wanted", name="rival") if taken == "field" else request("elsewhere", name="wanted")
    rivals = [rival]

    def validate_then_lose_the_race(store: Store, req):
        validated = validate(store, req)
        if rivals:  # the rival commits between our validation and our insert
            runs.create_run(store, rivals.pop(), start=False)
        return validated

    monkeypatch.setattr(run_config, "validate", validate_then_lose_the_race)
    with pytest.raises(ConfigError) as info:
        runs.create_run(dataset, request("wanted", name="wanted"), start=False)
    assert info.value.field == taken
    assert [(run.name, run.field) for run in runs.list_runs(dataset, "d")] == [(rival.name, rival.field)]


def test_a_field_taken_by_a_transaction_still_open_fails_the_create_precisely(dataset: Store):
    """A rival import's transaction is open while this create runs: the create waits for it (on PostgreSQL its
    uncommitted field is invisible to a check, and the insert would meet the unique constraint), then names the
    field."""

    def rival_reserves_the_field(session: Session) -> None:  # as an import does
        ensure_field(session, dataset_row(session, "d", lock=True).id, "wanted", "detection")

    with rival_transaction(dataset, rival_reserves_the_field, hold=0.5), pytest.raises(ConfigError) as info:
        runs.create_run(dataset, request("wanted"), start=False)
    assert info.value.field == "field"


def test_defaults_are_filled_in(dataset: Store):
    validated = validate(dataset, request("out"))
    assert validated.min_confidence == 0.1  # the model's default
    assert validated.name == "out"  # a run is named after its field: `run watch FIELD` works
    assert validated.mapping.model_classes == ("red", "green", "blue")


def test_runs_are_found_by_id_name_or_field_and_as_dataset_slash_name(dataset: Store, tmp_path: Path):
    faces = runs.create_run(dataset, request("faces"), start=False)
    custom = runs.create_run(dataset, request("boxes", name="custom"), start=False)
    assert runs.get_run(dataset, faces.id).name == "faces"
    assert runs.get_run(dataset, "faces").id == faces.id
    assert runs.get_run(dataset, "boxes").id == custom.id  # by the field it writes
    assert runs.get_run(dataset, "d/custom").id == custom.id
    # a default name that is taken gets a number
    assert runs.create_run(dataset, request("custom"), start=False).name == "custom-2"

    blob_dataset(dataset, tmp_path / "more", 2, name="e")
    other = runs.create_run(dataset, request("faces", dataset="e"), start=False)
    with pytest.raises(ConflictError, match=r"2 runs are named 'faces': d/faces .*, e/faces .*DATASET/NAME"):
        runs.get_run(dataset, "faces")
    assert runs.get_run(dataset, "e/faces").id == other.id
    assert runs.get_run(dataset, "d/faces").id == faces.id
    with pytest.raises(NotFoundError, match=r"no run with id, name or field 'face' .*did you mean faces"):
        runs.get_run(dataset, "face")
    with pytest.raises(NotFoundError, match="no dataset named 'nope'"):
        runs.get_run(dataset, "nope/faces")


def test_target_selections(dataset: Store, tmp_path: Path):
    (tmp_path / "ids.txt").write_text("1\n3\n")
    assert runs.create_run(dataset, request("a", target=f"ids:{tmp_path / 'ids.txt'}"), start=False).total == 2
    assert runs.create_run(dataset, request("b", target="view:ids=2"), start=False).total == 1
    assert runs.create_run(dataset, request("c", sample_ids=[1]), start=False).total == 1
    assert runs.create_run(dataset, request("d"), start=False).total == 3


def test_mask_dir_is_created(dataset: Store, tmp_path: Path):
    validated = validate(
        dataset,
        request(
            "m",
            task="segmentation",
            model=BLOBS.replace("detector", "segmenter"),
            mask_dir=str(tmp_path / "new" / "masks"),
        ),
    )
    assert Path(validated.request.mask_dir or "").is_dir()


@pytest.mark.parametrize(
    ("model", "weights", "options", "expected"),
    [
        ("faster-rcnn-resnet50-fpn-coco", None, {}, "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"),
        ("yolo11n-coco+sam-vit-base", None, {}, "yolo11n.pt"),
        ("owlv2-base-patch16-ensemble", None, {}, "'google/owlv2-base-patch16-ensemble'"),
        ("faster-rcnn-resnet50-fpn-coco", "/nowhere/frcnn.pth", {}, "not found: /nowhere/frcnn.pth"),
    ],
)
def test_missing_weights_stop_the_run_before_it_starts(dataset: Store, model, weights, options, expected):
    """`verilabel models` knows the weights are absent: `run create` says so at once, not a worker seconds later."""
    pytest.importorskip("torch")
    with pytest.raises(ModelLoadError) as info:
        runs.create_run(dataset, request("out", model=model, weights=weights, model_options=options), start=False)
    assert expected in str(info.value)
    with dataset.read() as session:
        assert session.query(RunRow).count() == 0
    if weights is None and "+" not in model:  # the same message the loader gives
        from verilabel.models import registry
        from verilabel.models.interface import LoadRequest

        with pytest.raises(ModelLoadError) as loading:
            registry.load(registry.resolve(model), LoadRequest())
        assert str(loading.value) == str(info.value)
