"""The Label Studio ML backend over real HTTP: Label Studio's requests (as a real 1.23 server sends them, see
shared/reference/label-studio-protocol.md) in, its accepted answers out, images fetched from a real HTTP server
that, like Label Studio, wants the access token. ``tests/test_label_studio.py`` connects it to a real Label
Studio."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.images import write_blob_images
from tests.support.label_studio_server import media_server
from verilabel.datasets.images import decode
from verilabel.formats import label_studio_rle
from verilabel.formats.shapes import full_image_mask
from verilabel.integrations.label_studio_backend import Backend, ControlLabel, create_app, label_map, parse_config
from verilabel.models import registry
from verilabel.models.interface import ImageItem, LoadRequest, PredictContext

DETECTOR = "python:tests.support.blob_model:detector"  # red / green / blue rectangles, found exactly
SEGMENTER = "python:tests.support.blob_model:segmenter"
POSE = "python:tests.support.blob_model:pose"  # each blob's four corners, scored 1, 0.9, 0.5, 0.2
TOKEN = "ls-token"
CONFIG = f"""<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image">
    <Label value="Crimson" predicted_values="red"/>
    <Label value="Blue"/>
  </RectangleLabels>
  <PolygonLabels name="outline" toName="image" model="{SEGMENTER}" model_score_threshold="0.3">
    <Label value="green"/>
  </PolygonLabels>
  <Choices name="colour" toName="image">
    <Choice value="red"/><Choice value="green"/><Choice value="blue"/>
  </Choices>
  <RectangleLabels name="ignored" toName="image" model_skip="true"><Label value="red"/></RectangleLabels>
</View>"""


@pytest.fixture
def media(tmp_path: Path) -> Iterator[tuple[str, list[Path]]]:
    """Blob images behind an HTTP server that, like Label Studio, answers 401 without ``Token TOKEN``."""
    paths = write_blob_images(tmp_path / "media", 4)
    with media_server(tmp_path / "media", TOKEN) as url:
        yield url, paths


@pytest.fixture
def client() -> Any:
    from fastapi.testclient import TestClient

    backend = Backend(DETECTOR, allowed=(SEGMENTER, POSE))
    with TestClient(create_app(backend)) as test_client:
        test_client.backend = backend
        yield test_client


def expected(name: str, task: str, path: Path, classes: tuple[str, ...], floor: float) -> list[Any]:
    model = registry.load(registry.resolve(name), LoadRequest(classes=classes))
    return model.predict([ImageItem(0, str(path), decode(path))], PredictContext(task, classes, floor))[0]  # type: ignore[arg-type]


def test_the_config_gives_controls_their_labels_models_and_floors():
    box, outline_, colour = parse_config(CONFIG)  # model_skip leaves the last one out
    assert (box.kind, box.task, box.data_key, box.labels) == (
        "rectanglelabels",
        "detection",
        "image",
        (ControlLabel("Crimson", ("red",)), ControlLabel("Blue")),
    )
    assert (outline_.kind, outline_.model, outline_.threshold) == ("polygonlabels", SEGMENTER, 0.3)
    assert label_map(box, ("red", "green", "blue"), zero_shot=False) == {"red": "Crimson", "blue": "Blue"}
    assert label_map(colour, ("red", "green", "blue"), zero_shot=False) == {
        "red": "red",
        "green": "green",
        "blue": "blue",
    }
    assert label_map(box, (), zero_shot=True) == {"red": "Crimson", "Blue": "Blue"}  # prompts
    # the backend's --alias for a label without predicted_values, and --classes keeping some model classes only
    assert label_map(box, ("red", "green", "blue"), False, {"Blue": ["green", "blue"]}) == {
        "red": "Crimson",
        "green": "Blue",
        "blue": "Blue",
    }
    assert label_map(box, ("red", "green", "blue"), False, only=("red",)) == {"red": "Crimson"}


def test_predict_answers_each_task_in_order_with_the_models_labels(client, media):
    base, paths = media
    assert client.get("/health").json()["status"] == "UP"
    setup = {"project": "1.1795735253", "schema": CONFIG, "hostname": base, "access_token": TOKEN, "extra_params": None}
    assert client.post("/setup", json=setup).json()["model_version"].startswith(f"verilabel:{DETECTOR}")
    tasks = [
        {"id": 11, "data": {"image": f"/data/upload/1/{paths[0].name}"}},  # relative: Label Studio's host, token
        {"id": 12, "data": {"image": f"{base}/{paths[1].name}"}},  # absolute URL
        {"id": 13, "data": {"image": "/data/upload/1/gone.png"}},  # no such file: an empty result, not a failure
        {"id": 14, "data": {"image": f"/data/upload/1/{paths[3].name}"}},
    ]
    body = {"tasks": tasks, "project": "1.1795735253", "label_config": CONFIG, "params": {}}
    results = client.post("/predict", json=body).json()["results"]
    assert len(results) == 4 and results[2]["result"] == []

    seen = {"box": 0, "outline": 0, "colour": 0}
    for task, answer, path in zip(tasks, results, [paths[0], paths[1], None, paths[3]], strict=True):
        if path is None:
            continue
        regions = answer["result"]
        for region in regions:
            seen[region["from_name"]] += 1
        assert {r["from_name"] for r in regions} <= {"box", "outline", "colour"}  # the skipped control never
        boxes = sorted(
            (r["value"]["rectanglelabels"][0], r["value"]["x"], r["value"]["y"])
            for r in regions
            if r["from_name"] == "box"
        )
        theirs = expected(DETECTOR, "detection", path, ("red", "blue"), 0.1)
        names = {"red": "Crimson", "blue": "Blue"}
        assert boxes == sorted((names[d.label], round(d.box.x * 100, 4), round(d.box.y * 100, 4)) for d in theirs), task
        width, height = decode(path).shape[1], decode(path).shape[0]
        assert all((r["original_width"], r["original_height"]) == (width, height) for r in regions)

        polygons = [r for r in regions if r["from_name"] == "outline"]
        masks = expected(SEGMENTER, "segmentation", path, ("green",), 0.3)
        assert len(polygons) == len(masks)
        assert all(r["type"] == "polygonlabels" and len(r["value"]["points"]) >= 3 for r in polygons)

        (choice,) = [r for r in regions if r["from_name"] == "colour"]
        (best,) = expected(DETECTOR, "classification", path, ("red", "green", "blue"), 0.1)
        assert choice["value"]["choices"] == [best.label] and choice["score"] == round(best.confidence, 4)
        assert answer["score"] == pytest.approx(sum(r["score"] for r in regions) / len(regions), abs=1e-4)

    assert min(seen.values()) >= 1, seen  # each control answered somewhere: the comparisons above are not empty
    before = dict(client.backend._models)
    client.post("/predict", json=body)
    assert client.backend._models == before  # loaded once, kept


MASKS_AND_POINTS = f"""<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="paint" toName="image" model="{SEGMENTER}"><Label value="red"/><Label value="Green"/></BrushLabels>
  <RectangleLabels name="body" toName="image" model_skip="true"><Label value="Red blob" predicted_values="red"/>
  </RectangleLabels>
  <KeyPointLabels name="corner" toName="image" model="{POSE}" model_point_threshold="0.4" model_point_size="2">
    <Label value="TL" predicted_values="red" model_index="0"/>
    <View><Label value="top_right" predicted_values="red"/></View>
    <Label value="BR" model_index="2"/>
    <Label value="BL" model_index="3"/>
  </KeyPointLabels>
</View>"""


def test_brushes_are_the_models_masks_and_keypoints_sit_under_their_box(client, media):
    base, paths = media
    tasks = [{"id": i, "data": {"image": f"{base}/{p.name}"}} for i, p in enumerate(paths)]
    body = {"tasks": tasks, "project": "4.1", "label_config": MASKS_AND_POINTS}
    results = client.post("/predict", json=body).json()["results"]
    brushes = points = 0
    for answer, path in zip(results, paths, strict=True):
        height, width = decode(path).shape[:2]
        regions = answer["result"]
        painted = {r["value"]["brushlabels"][0]: r for r in regions if r["type"] == "brushlabels"}
        masks = expected(SEGMENTER, "segmentation", path, ("red", "green"), 0.1)
        assert sorted(painted) == sorted({"red": "red", "green": "Green"}[m.label] for m in masks)
        for mask in masks:
            region = painted[{"red": "red", "green": "Green"}[mask.label]]
            decoded = label_studio_rle.decode(region["value"]["rle"], width, height)
            assert (decoded == full_image_mask(mask, width, height)).all() and decoded.any()
            brushes += 1

        posed = [d for d in expected(POSE, "keypoints", path, ("red", "green", "blue"), 0.1) if d.label == "red"]
        boxes = [r for r in regions if r["from_name"] == "body"]
        corners = [r for r in regions if r["type"] == "keypointlabels"]
        assert [b["value"]["rectanglelabels"] for b in boxes] == [["Red blob"]] * len(posed)
        # TL (1.0), top_right by name (0.9), BR (0.5); BL scored 0.2 is under the floor of 0.4
        names = sorted(c["value"]["keypointlabels"][0] for c in corners)
        assert names == sorted(["TL", "top_right", "BR"] * len(posed))
        for detection, box in zip(posed, boxes, strict=True):
            mine = {c["value"]["keypointlabels"][0]: c for c in corners if c["parentID"] == box["id"]}
            for name, index in (("TL", 0), ("top_right", 1), ("BR", 2)):
                x, y = detection.keypoints.points[index]
                assert (mine[name]["value"]["x"], mine[name]["value"]["y"]) == (round(x * 100, 4), round(y * 100, 4))
                assert mine[name]["value"]["width"] == 2 and mine[name]["score"] == (1.0, 0.9, 0.5)[index]
            points += len(mine)
    assert brushes and points  # the comparisons above were not empty


def test_without_the_token_a_relative_image_gives_an_empty_result(client, media):
    base, paths = media
    client.post("/setup", json={"project": "2.1", "schema": CONFIG, "hostname": base, "access_token": None})
    body = {
        "tasks": [{"id": 1, "data": {"image": f"/data/upload/1/{paths[0].name}"}}],
        "project": "2.1",
        "label_config": CONFIG,
    }
    assert client.post("/predict", json=body).json()["results"] == [
        {"result": [], "score": 0.0, "model_version": f"verilabel:{DETECTOR}"}
    ]


def test_a_control_the_model_cannot_serve_is_refused_with_the_reason(client, media):
    base, paths = media
    config = f"""<View><Image name="image" value="$image"/>
      <PolygonLabels name="outline" toName="image" model="{DETECTOR}"><Label value="red"/></PolygonLabels></View>"""
    body = {
        "tasks": [{"id": 1, "data": {"image": f"{base}/{paths[0].name}"}}],
        "project": "3.1",
        "label_config": config,
    }
    answer = client.post("/predict", json=body)
    assert answer.status_code == 422
    assert answer.json() == {"error": f"model: {DETECTOR!r} does classification, detection, not segmentation"}
    foreign = config.replace(DETECTOR, "python:os:getcwd")  # code the backend's operator did not list
    refused = client.post("/predict", json={**body, "label_config": foreign})
    assert (
        refused.status_code == 422
        and "your own model must be the backend's --model or listed with --allow-model" in (refused.json()["error"])
    )
    broken = client.post("/predict", json={**body, "label_config": "<View"})
    assert broken.status_code == 422 and broken.json()["error"].startswith(
        "label_config: the labeling config is not XML"
    )


def test_the_cli_serves_the_backend_and_refuses_an_unknown_model(tmp_path: Path):
    import json
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "verilabel", "labelstudio", "backend", "--port", str(port), "--model"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    refused = subprocess.run([*command, "yolo-nonexistent"], capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode != 0 and "unknown model 'yolo-nonexistent'" in refused.stderr
    server = subprocess.Popen([*command, DETECTOR], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    assert json.loads(response.read()) == {"status": "UP", "model_class": f"verilabel:{DETECTOR}"}
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (
                    server.stderr.read() if server.stderr else ""
                )
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(10)


def test_push_to_an_unreachable_label_studio_names_the_address(tmp_path: Path, capsys):
    from verilabel.cli import main

    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    args = ["labelstudio", "pull", "d", "--field", "f", "--url", f"http://127.0.0.1:{port}", "--token", "t"]
    assert main([*args, "--project", "1"]) == 1
    assert f"cannot reach Label Studio at http://127.0.0.1:{port}" in capsys.readouterr().err
    assert main([*args[:5], "--url", "localhost:8080", "--token", "t", "--project", "1"]) == 2
    assert "is not Label Studio's address: pass it as http(s)://HOST:PORT" in capsys.readouterr().err


WORDS = "python:tests.support.blob_model:colour_words"  # zero-shot: crimson / scarlet find red, painted blue blue


def test_synonyms_give_one_region_and_negatives_suppress_look_alikes(media):
    """A label's several prompts (predicted_values) give one region per object, the surest; a negative prompt
    (the control's model_negatives, or the backend's --negative) drops the regions it outscores and overlaps."""
    from fastapi.testclient import TestClient

    base, paths = media

    def boxes(backend: Backend, negatives: str = "") -> list[tuple[str, float, float]]:
        config = f"""<View><Image name="image" value="$image"/>
          <RectangleLabels name="box" toName="image" model_negatives="{negatives}">
            <Label value="Red" predicted_values="red,crimson,scarlet"/><Label value="blue"/>
          </RectangleLabels></View>"""
        body = {"tasks": [{"id": 1, "data": {"image": f"{base}/{p.name}"}} for p in paths], "label_config": config}
        with TestClient(create_app(backend)) as client:
            client.post("/setup", json={"project": "1.1", "schema": config, "hostname": base, "access_token": TOKEN})
            results = client.post("/predict", json=body).json()["results"]
        return sorted(
            (r["value"]["rectanglelabels"][0], r["value"]["x"], r["value"]["y"]) for a in results for r in a["result"]
        )

    plain = boxes(Backend(WORDS, min_confidence=0.0))
    reds = sorted(
        ("Red", round(d.box.x * 100, 4), round(d.box.y * 100, 4))
        for p in paths
        for d in expected(DETECTOR, "detection", p, ("red",), 0.0)
    )
    assert [b for b in plain if b[0] == "Red"] == reds  # three prompts each found every red blob: one region each
    assert any(b[0] == "blue" for b in plain)
    by_control = boxes(Backend(WORDS, min_confidence=0.0), negatives="painted blue")
    by_backend = boxes(Backend(WORDS, min_confidence=0.0, negatives=["painted blue"]))
    assert by_control == by_backend == [b for b in plain if b[0] != "blue"]  # no blue left, the negative unseen
