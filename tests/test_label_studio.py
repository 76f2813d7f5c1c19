"""verilabel against a real Label Studio server (PyPI, its own virtualenv, offline on loopback): the export and
import, the ML backend, bulk push and pull, and its own brush encoding.

Skipped unless ``VERILABEL_TEST_LABEL_STUDIO`` names a ``label-studio`` executable (``.ci/run`` installs one).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.label_studio_server import TOKEN, LabelStudio, label_studio_server
from tests.test_export import seeded
from verilabel.datasets.export import export_field
from verilabel.store import Store

pytestmark = pytest.mark.slow
EXECUTABLE = os.environ.get("VERILABEL_TEST_LABEL_STUDIO")


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    if not EXECUTABLE:
        pytest.skip("set VERILABEL_TEST_LABEL_STUDIO to a label-studio executable (see .ci/run)")
    try:
        with label_studio_server(EXECUTABLE, tmp_path_factory.mktemp("label-studio")) as server:
            yield server
    except RuntimeError as exc:  # it did not start: its log says why
        pytest.fail(str(exc))


def test_exported_tasks_import_into_label_studio_with_their_predictions_and_images(
    label_studio: LabelStudio, home: Path
):
    store = Store.open()
    ids = seeded(store, label_studio.media)  # images under media/imgs: the storage folder below the root
    summary = export_field(store, "src", "gt", "label-studio", label_studio.media / "export")
    assert f"LOCAL_FILES_DOCUMENT_ROOT={label_studio.media}," in summary.next_step
    config = (label_studio.media / "export" / "label_config.xml").read_text()
    project = label_studio.call("POST", "/api/projects", {"title": "verilabel", "label_config": config})["id"]
    label_studio.call(
        "POST", "/api/storages/localfiles", {"project": project, "path": str(label_studio.media / "imgs")}
    )
    tasks = json.loads(Path(summary.path).read_text())
    imported = label_studio.call("POST", f"/api/projects/{project}/import", tasks)
    assert (imported["task_count"], imported["prediction_count"]) == (4, 3)

    stored = label_studio.call("GET", f"/api/tasks?project={project}&fields=all")
    stored = stored["tasks"] if isinstance(stored, dict) else stored
    regions = {}
    for task in stored:
        results = [r for p in label_studio.call("GET", f"/api/predictions?task={task['id']}") for r in p["result"]]
        regions[task["meta"]["verilabel_sample_id"]] = sorted(
            (r["type"], r["from_name"], r["value"][r["type"]]) for r in results
        )
    assert regions == {
        ids[0]: [("polygonlabels", "polygon", ["dog"]), ("rectanglelabels", "label", ["car"])],
        ids[1]: [("polygonlabels", "polygon", ["dog"])],
        ids[2]: [],
        ids[3]: [
            ("keypointlabels", "keypoint", ["0"]),
            ("keypointlabels", "keypoint", ["1"]),
            ("rectanglelabels", "label", ["car"]),
        ],
    }
    image = label_studio.call("GET", stored[0]["data"]["image"])  # served from the local files storage
    assert image[:4] == b"\x89PNG"


def test_annotations_made_in_label_studio_come_back_through_its_json_export(label_studio: LabelStudio, home: Path):
    """People's corrections: tasks annotated in a real Label Studio, exported as JSON by its own API, imported
    with `dataset create --from-label-studio` (boxes, polygons and choices, with who and when)."""
    from tests.support.images import write_blob_images
    from verilabel.datasets import service as ds
    from verilabel.formats.label_studio import label_config

    folder = label_studio.media / "corrected"
    write_blob_images(folder, 2)
    config = label_config(["car", "dog"], {"rectanglelabels", "polygonlabels", "choices"})
    project = label_studio.call("POST", "/api/projects", {"title": "corrections", "label_config": config})["id"]
    label_studio.call("POST", "/api/storages/localfiles", {"project": project, "path": str(folder)})

    def region(kind: str, name: str, value: dict[str, Any]) -> dict[str, Any]:
        control = {"rectanglelabels": "label", "polygonlabels": "polygon", "choices": "class"}[kind]
        return {"from_name": control, "to_name": "image", "type": kind, "value": {**value, kind: [name]},
                "original_width": 160, "original_height": 120}  # fmt: skip

    box = {"x": 10.0, "y": 20.0, "width": 25.0, "height": 50.0, "rotation": 0}
    triangle = {"points": [[50.0, 50.0], [75.0, 50.0], [60.0, 75.0]], "closed": True}
    tasks = [
        {
            "data": {"image": "/data/local-files/?d=corrected/img_00000.png"},
            "annotations": [
                {"result": [region("rectanglelabels", "car", box), region("polygonlabels", "dog", triangle)]}
            ],
        },
        {
            "data": {"image": "/data/local-files/?d=corrected/img_00001.png"},
            "annotations": [{"result": [region("choices", "dog", {})]}],
        },
    ]
    label_studio.call("POST", f"/api/projects/{project}/import", tasks)
    exported = label_studio.call("GET", f"/api/projects/{project}/export?exportType=JSON&download_all_tasks=true")
    export_file = label_studio.media / "corrections.json"
    export_file.write_bytes(exported if isinstance(exported, bytes) else json.dumps(exported).encode())

    store = Store.open()
    summary = ds.import_label_studio(store, "corrected", export_file, label_studio.media, create=True)
    assert (summary.added, summary.labels, summary.skipped) == (2, 3, {})
    by_name = {Path(s.path).name: s.id for s in ds.samples(store, "corrected")}
    first = sorted(ds.labels_of(store, "corrected", "ground_truth", by_name["img_00000.png"]), key=lambda lb: lb.label)
    (second,) = ds.labels_of(store, "corrected", "ground_truth", by_name["img_00001.png"])
    assert [lb.label for lb in first] == ["car", "dog"] and second.label == "dog" and second.kind == "classification"
    car = first[0]
    assert (car.box.x, car.box.y, car.box.w, car.box.h) == pytest.approx((0.10, 0.20, 0.25, 0.50))
    # Label Studio's JSON export names the annotator by user id (the admin is user 1)
    assert car.attributes["annotator"] == "1" and car.attributes["annotated_at"].startswith("20")
    assert first[1].polygon is not None and len(first[1].polygon.rings[0]) == 3


def test_label_studio_gets_predictions_from_the_verilabel_backend(label_studio: LabelStudio, home: Path):
    """Connected through Label Studio's own API (which calls /health and /setup), asked for predictions of every
    task; the predictions Label Studio stored are the model's labels, mapped to the project's labels."""
    from tests.browser_helpers import serving
    from tests.support.images import write_blob_images
    from verilabel.datasets.images import decode
    from verilabel.integrations.label_studio_backend import Backend, create_app
    from verilabel.models import registry
    from verilabel.models.interface import ImageItem, LoadRequest, PredictContext

    detector = "python:tests.support.blob_model:detector"
    paths = write_blob_images(label_studio.media / "ml", 3)
    config = """<View><Image name="image" value="$image"/>
      <RectangleLabels name="box" toName="image">
        <Label value="Crimson" predicted_values="red"/><Label value="blue"/>
      </RectangleLabels>
      <Choices name="colour" toName="image"><Choice value="red"/><Choice value="green"/><Choice value="blue"/></Choices>
    </View>"""
    project = label_studio.call("POST", "/api/projects", {"title": "predicted", "label_config": config})["id"]
    label_studio.call("POST", "/api/storages/localfiles", {"project": project, "path": str(label_studio.media / "ml")})
    tasks = [{"data": {"image": f"/data/local-files/?d=ml/{path.name}"}} for path in paths]
    label_studio.call("POST", f"/api/projects/{project}/import", tasks)

    with serving(create_app(Backend(detector))) as url:
        label_studio.call("POST", "/api/ml", {"url": url, "project": project, "title": "verilabel"})
        label_studio.call(
            "POST",
            f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}",
            {"selectedItems": {"all": True, "excluded": []}},
        )
    stored = label_studio.call("GET", f"/api/tasks?project={project}&fields=all")
    stored = stored["tasks"] if isinstance(stored, dict) else stored
    model = registry.load(registry.resolve(detector), LoadRequest())
    compared = 0
    for task in stored:
        (prediction,) = label_studio.call("GET", f"/api/predictions?task={task['id']}")
        assert prediction["model_version"] == f"verilabel:{detector}"
        path = label_studio.media / "ml" / task["data"]["image"].rsplit("/", 1)[1]
        item = ImageItem(0, str(path), decode(path))
        boxes = model.predict([item], PredictContext("detection", ("red", "blue"), 0.1))[0]
        (best,) = model.predict([item], PredictContext("classification", ("red", "green", "blue"), 0.1))[0]
        names = {"red": "Crimson", "blue": "blue"}
        got = sorted(
            (r["value"]["rectanglelabels"][0], r["value"]["x"], r["value"]["width"])
            for r in prediction["result"]
            if r["type"] == "rectanglelabels"
        )
        assert got == sorted((names[d.label], round(d.box.x * 100, 4), round(d.box.w * 100, 4)) for d in boxes)
        assert [r["value"]["choices"] for r in prediction["result"] if r["type"] == "choices"] == [[best.label]]
        compared += len(got)
    assert len(stored) == 3 and compared >= 1


def test_brush_rle_is_label_studios_own_both_ways(tmp_path: Path):
    """Masks encoded by verilabel decode with Label Studio's SDK (its converter, in its virtualenv), and the SDK's
    encoding decodes with verilabel: the same pixels."""
    import numpy as np

    from verilabel.formats import label_studio_rle

    if not EXECUTABLE:
        pytest.skip("set VERILABEL_TEST_LABEL_STUDIO to a label-studio executable (see .ci/run)")
    rng = np.random.default_rng(7)
    masks = [np.zeros((37, 53), dtype=bool), rng.random((120, 160)) > 0.7, np.ones((300, 400), dtype=bool)]
    masks[0][5:20, 7:40] = True
    np.savez(tmp_path / "masks.npz", *masks)
    ours = [label_studio_rle.encode(mask) for mask in masks]
    (tmp_path / "ours.json").write_text(json.dumps(ours))
    script = """
import json, sys
import numpy as np
from label_studio_sdk.converter.brush import decode_rle, mask2rle
folder = sys.argv[1]
masks = list(np.load(folder + "/masks.npz").values())
ours = json.load(open(folder + "/ours.json"))
decoded = [decode_rle(rle).reshape(m.shape[0], m.shape[1], 4)[:, :, 3] > 0 for rle, m in zip(ours, masks)]
print(json.dumps({"equal": [bool((d == m).all()) for d, m in zip(decoded, masks)],
                  "theirs": [mask2rle(m.astype(np.uint8) * 255) for m in masks]}))
"""
    python = Path(EXECUTABLE).with_name("python")
    done = subprocess.run([python, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout)
    assert answer["equal"] == [True, True, True]
    for rle, mask in zip(answer["theirs"], masks, strict=True):
        assert (label_studio_rle.decode(rle, mask.shape[1], mask.shape[0]) == mask).all()


def test_label_studio_stores_brushes_keypoints_and_a_second_models_predictions(label_studio: LabelStudio, home: Path):
    """Masks as brushes (decoded back to the model's mask), keypoints under their boxes, a task whose image is
    gone (no prediction, the others made), then a second backend with another model on the same project: its
    predictions are stored beside the first's, not skipped as already made."""
    from tests.browser_helpers import serving
    from tests.support.images import write_blob_images
    from verilabel.datasets.images import decode
    from verilabel.formats import label_studio_rle
    from verilabel.formats.shapes import full_image_mask
    from verilabel.integrations.label_studio_backend import Backend, create_app
    from verilabel.models import registry
    from verilabel.models.interface import ImageItem, LoadRequest, PredictContext

    segmenter, pose = "python:tests.support.blob_model:segmenter", "python:tests.support.blob_model:pose"
    paths = write_blob_images(label_studio.media / "painted", 3)
    config = """<View><Image name="image" value="$image"/>
      <BrushLabels name="paint" toName="image"><Label value="red"/><Label value="green"/></BrushLabels>
      <RectangleLabels name="body" toName="image" model_skip="true"><Label value="red"/></RectangleLabels>
      <KeyPointLabels name="corner" toName="image" model_skip="true">
        <Label value="TL" predicted_values="red" model_index="0"/>
        <Label value="BR" predicted_values="red" model_index="2"/>
      </KeyPointLabels>
    </View>"""
    project = label_studio.call("POST", "/api/projects", {"title": "painted", "label_config": config})["id"]
    folder = label_studio.media / "painted"
    label_studio.call("POST", "/api/storages/localfiles", {"project": project, "path": str(folder)})
    tasks = [{"data": {"image": f"/data/local-files/?d=painted/{path.name}"}} for path in paths]
    tasks.append({"data": {"image": "/data/local-files/?d=painted/gone.png"}})
    label_studio.call("POST", f"/api/projects/{project}/import", tasks)
    retrieve = f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}"
    everything = {"selectedItems": {"all": True, "excluded": []}}

    with serving(create_app(Backend(segmenter))) as url:
        first = label_studio.call("POST", "/api/ml", {"url": url, "project": project, "title": "masks"})
        label_studio.call("POST", retrieve, everything)
    # the second model answers the keypoint control: the config says so, as a user would edit it
    second = config.replace(
        'name="corner" toName="image" model_skip="true"', f'name="corner" toName="image" model="{pose}"'
    )
    second = second.replace('name="paint" toName="image"', 'name="paint" toName="image" model_skip="true"')
    label_studio.call("PATCH", f"/api/projects/{project}", {"label_config": second})
    label_studio.call("DELETE", f"/api/ml/{first['id']}")
    with serving(create_app(Backend(pose))) as url:
        label_studio.call("POST", "/api/ml", {"url": url, "project": project, "title": "points"})
        label_studio.call("POST", retrieve, everything)

    stored = label_studio.call("GET", f"/api/tasks?project={project}&fields=all")
    stored = stored["tasks"] if isinstance(stored, dict) else stored
    masks_model = registry.load(registry.resolve(segmenter), LoadRequest())
    pose_model = registry.load(registry.resolve(pose), LoadRequest())
    brushes = corners = 0
    for task in stored:
        predictions = {p["model_version"]: p for p in label_studio.call("GET", f"/api/predictions?task={task['id']}")}
        name = task["data"]["image"].rsplit("=", 1)[1].rsplit("/", 1)[1]
        if name == "gone.png":
            assert predictions == {} or all(p["result"] == [] for p in predictions.values())
            continue
        assert sorted(predictions) == [f"verilabel:{pose}", f"verilabel:{segmenter}"]
        path = folder / name
        height, width = decode(path).shape[:2]
        item = ImageItem(0, str(path), decode(path))
        for mask in masks_model.predict([item], PredictContext("segmentation", ("red", "green"), 0.1))[0]:
            (region,) = [
                r for r in predictions[f"verilabel:{segmenter}"]["result"] if r["value"]["brushlabels"] == [mask.label]
            ]
            decoded = label_studio_rle.decode(region["value"]["rle"], width, height)
            assert (decoded == full_image_mask(mask, width, height)).all()
            brushes += 1
        posed = pose_model.predict([item], PredictContext("keypoints", ("red",), 0.1))[0]
        result = predictions[f"verilabel:{pose}"]["result"]
        boxes = {r["id"]: r for r in result if r["type"] == "rectanglelabels"}
        points = [r for r in result if r["type"] == "keypointlabels"]
        assert len(boxes) == len(posed) and len(points) == 2 * len(posed)
        assert all(p["parentID"] in boxes for p in points)
        for detection in posed:
            x, y = detection.keypoints.points[0]
            assert any(p["value"]["x"] == round(x * 100, 4) and p["value"]["y"] == round(y * 100, 4) for p in points)
        corners += len(points)
    assert brushes and corners and len(stored) == 4


def _tasks(label_studio: LabelStudio, project: int) -> list[dict[str, Any]]:
    stored = label_studio.call("GET", f"/api/tasks?project={project}&page_size=1000")
    return stored["tasks"] if isinstance(stored, dict) else stored


def _predictions(label_studio: LabelStudio, task: int) -> list[dict[str, Any]]:
    return list(label_studio.call("GET", f"/api/predictions?task={task}"))


def test_push_sends_a_field_as_predictions_in_the_projects_controls_and_resumes_exactly(
    label_studio: LabelStudio, home: Path
):
    """A field pushed to a project whose controls have their own names, in chunks; pushed again, nothing is
    doubled; after a crash between sending a chunk and noting it, the chunk Label Studio took is not sent again
    and the one it never got is sent."""
    from verilabel.cli import main
    from verilabel.datasets import service as ds
    from verilabel.formats.label_studio import Layout, to_results
    from verilabel.integrations import label_studio_sync as sync
    from verilabel.integrations.label_studio_api import LabelStudioClient

    store = Store.open()
    ids = seeded(store, label_studio.media / "pushed")  # four images, three with labels
    config = """<View><Image name="photo" value="$img"/>
      <RectangleLabels name="boxes" toName="photo"><Label value="car"/><Label value="dog"/></RectangleLabels>
      <PolygonLabels name="outlines" toName="photo"><Label value="car"/><Label value="dog"/></PolygonLabels>
    </View>"""
    project = label_studio.call("POST", "/api/projects", {"title": "pushed", "label_config": config})["id"]
    paths = {s.id: Path(s.path) for s in ds.samples(store, "src")}
    references = {i: f"/data/local-files/?d={p.relative_to(label_studio.media)}" for i, p in paths.items()}
    label_studio.call("POST", f"/api/projects/{project}/import", [{"data": {"img": r}} for r in references.values()])
    by_reference = {t["data"]["img"]: t["id"] for t in _tasks(label_studio, project)}
    task_of = {sample: by_reference[reference] for sample, reference in references.items()}

    args = ["labelstudio", "push", "src", "--field", "gt", "--url", label_studio.url, "--token", TOKEN]
    assert main([*args, "--project", str(project), "--chunk", "2", "--json"]) == 0
    version = "verilabel:src/gt"
    layout = Layout({"rectanglelabels": "boxes", "polygonlabels": "outlines"}, "photo", "img")

    for sample_id, task in task_of.items():
        stored = _predictions(label_studio, task)
        labels = ds.labels_of(store, "src", "gt", sample_id)
        if not labels:
            assert stored == []
            continue
        (prediction,) = stored
        assert prediction["model_version"] == version
        expected = to_results(labels, 160, 120, layout)
        assert [(r["from_name"], r["to_name"], r["type"]) for r in prediction["result"]] == [
            (r["from_name"], r["to_name"], r["type"]) for r in expected
        ]
        assert [r["value"] for r in prediction["result"]] == [r["value"] for r in expected]

    client = LabelStudioClient(label_studio.url, TOKEN)
    again = sync.push(store, client, project, *sync.push_source(store, dataset="src", field_name="gt"))
    assert (again.predictions, again.already) == (0, 3)  # resumed: nothing doubled

    # a crash: the journal notes chunks sent, then a chunk being sent, never noted as sent. Label Studio took
    # part of it (``taken``) and not the rest (``lost``: its prediction deleted, as if the request never came).
    labelled = [task_of[i] for i in ids if ds.labels_of(store, "src", "gt", i)]
    taken, lost = labelled[-1], labelled[0]
    for prediction in _predictions(label_studio, lost):
        label_studio.call("DELETE", f"/api/predictions/{prediction['id']}")
    others = sorted(set(labelled) - {taken, lost})
    journal = Path(again.journal)
    journal.write_text(json.dumps({"sent": others}) + "\n" + json.dumps({"sending": [lost, taken]}) + "\n")
    resumed = sync.push(store, client, project, *sync.push_source(store, dataset="src", field_name="gt"))
    assert resumed.predictions == 1
    for task in task_of.values():
        assert len(_predictions(label_studio, task)) <= 1  # never doubled
    assert len(_predictions(label_studio, lost)) == 1  # never lost


def test_a_run_under_review_goes_out_and_peoples_corrections_come_back(
    label_studio: LabelStudio, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """`labelstudio push RUN` sends every label of a run under review; annotators correct a task in Label
    Studio; `labelstudio pull` brings the annotations into a new field of the dataset, with who and when."""
    from tests.review_helpers import synthetic_run
    from verilabel.cli import main
    from verilabel.datasets import service as ds
    from verilabel.formats.label_studio import label_config

    store = Store.open()
    run = synthetic_run(store, tmp_path, [(0, "red", 0.9), (0, "blue", 0.4), (2, "red", 0.7)], samples=3)
    config = label_config(["red", "blue"], {"rectanglelabels"})
    project = label_studio.call("POST", "/api/projects", {"title": "reviewed", "label_config": config})["id"]
    images = [f"/data/local-files/?d=run/s{i}.png" for i in range(3)] + ["/data/local-files/?d=elsewhere/x.png"]
    label_studio.call("POST", f"/api/projects/{project}/import", [{"data": {"image": r}} for r in images])
    task_of = {t["data"]["image"]: t["id"] for t in _tasks(label_studio, project)}

    connection = ["--url", label_studio.url, "--token", TOKEN, "--project", str(project)]
    assert main(["labelstudio", "push", run, *connection]) == 0
    assert "2 predictions created (3 regions)" in " ".join(capsys.readouterr().out.split())
    (first,) = _predictions(label_studio, task_of[images[0]])
    assert sorted((r["value"]["rectanglelabels"][0], r["score"]) for r in first["result"]) == [
        ("blue", 0.4),
        ("red", 0.9),
    ]
    assert _predictions(label_studio, task_of[images[1]]) == []  # no labels: no prediction

    def annotate(reference: str, name: str, x: float) -> None:
        value = {"x": x, "y": 10.0, "width": 20.0, "height": 30.0, "rotation": 0, "rectanglelabels": [name]}
        region = {"from_name": "label", "to_name": "image", "type": "rectanglelabels", "value": value,
                  "original_width": 100, "original_height": 100}  # fmt: skip
        label_studio.call("POST", f"/api/tasks/{task_of[reference]}/annotations", {"result": [region]})

    annotate(images[0], "red", 5.0)  # corrected: the blue one was wrong
    annotate(images[2], "blue", 50.0)
    annotate(images[3], "red", 1.0)  # a task whose image is not in the dataset
    assert main(["labelstudio", "pull", "d", "--field", "corrected", *connection]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "2 labels pulled into field corrected" in out and "1 annotated task match no sample" in out
    by_name = {Path(s.path).name: s.id for s in ds.samples(store, "d")}
    (red,) = ds.labels_of(store, "d", "corrected", by_name["s0.png"])
    assert red.label == "red" and (red.box.x, red.box.w) == pytest.approx((0.05, 0.20))
    assert red.attributes["annotator"] == "1" and red.attributes["label_studio_task"] == task_of[images[0]]
    assert [label.label for label in ds.labels_of(store, "d", "corrected", by_name["s2.png"])] == ["blue"]
    assert main(["labelstudio", "pull", "d", "--field", "corrected", *connection]) == 1  # a field is never overwritten
    assert "already has a label field 'corrected'" in capsys.readouterr().err


def test_push_and_pull_say_what_to_fix(label_studio: LabelStudio, home: Path, capsys: pytest.CaptureFixture[str]):
    from verilabel.cli import main

    seeded(Store.open(), label_studio.media / "errors")
    push = ["labelstudio", "push", "src", "--field", "gt", "--url", label_studio.url]
    assert main([*push, "--token", "wrong", "--project", "1"]) == 2  # an invalid option
    assert "Label Studio refused the token (401)" in capsys.readouterr().err
    assert main([*push, "--token", TOKEN, "--project", "987654"]) == 2
    assert "Label Studio has no project 987654" in capsys.readouterr().err
    assert main(["labelstudio", "pull", "src", "--field", "x", "--url", label_studio.url, "--token", TOKEN,
                 "--project", "987654"]) == 2  # fmt: skip
    assert "Label Studio has no project 987654" in capsys.readouterr().err
