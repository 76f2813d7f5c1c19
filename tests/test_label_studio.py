"""The Label Studio export against a real Label Studio server (PyPI, its own virtualenv, offline on loopback).

Skipped unless ``VERILABEL_TEST_LABEL_STUDIO`` names a ``label-studio`` executable (``.ci/run`` installs one).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError

import pytest

from tests.test_export import seeded
from verilabel.datasets.export import export_field
from verilabel.store import Store

pytestmark = pytest.mark.slow
EXECUTABLE = os.environ.get("VERILABEL_TEST_LABEL_STUDIO")
TOKEN = "verilabel-test-token"


@dataclass
class LabelStudio:
    url: str
    media: Path  # its LOCAL_FILES_DOCUMENT_ROOT

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                payload = response.read()
        except HTTPError as exc:
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from None
        content_type = response.headers.get("Content-Type", "")
        return json.loads(payload or b"null") if "json" in content_type else payload


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    if not EXECUTABLE:
        pytest.skip("set VERILABEL_TEST_LABEL_STUDIO to a label-studio executable (see .ci/run)")
    base = tmp_path_factory.mktemp("label-studio")
    media = base / "media"
    media.mkdir()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "HOME": str(base / "home"),
        "LABEL_STUDIO_BASE_DATA_DIR": str(base / "data"),
        "LABEL_STUDIO_USERNAME": "admin@example.com",
        "LABEL_STUDIO_PASSWORD": "verilabel-test-password",
        "LABEL_STUDIO_USER_TOKEN": TOKEN,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "COLLECT_ANALYTICS": "false",
        "LATEST_VERSION_CHECK": "false",
        "LOCAL_FILES_SERVING_ENABLED": "true",
        "LOCAL_FILES_DOCUMENT_ROOT": str(media),
        # the ML backend under test listens on 127.0.0.1, which Label Studio refuses to call by default
        "SSRF_PROTECTION_ENABLED": "false",
        "ML_BLOCK_LOCAL_IP": "false",
    }
    env.pop("PYTHONPATH", None)  # its virtualenv, not ours
    log = base / "label-studio.log"
    command = [EXECUTABLE, "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port)]
    command += ["--host", url, "--data-dir", str(base / "data")]
    with open(log, "wb") as out:
        server = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300  # first start: its migrations take about a minute on 2 cores
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=5):
                    break
            except (URLError, OSError):
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Label Studio did not start:\n{log.read_text(errors='replace')[-3000:]}")
                time.sleep(2)
        yield LabelStudio(url, media)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


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
            (r["type"], r["from_name"], r["value"].get("rectanglelabels") or r["value"].get("polygonlabels"))
            for r in results
        )
    assert regions == {
        ids[0]: [("polygonlabels", "polygon", ["dog"]), ("rectanglelabels", "label", ["car"])],
        ids[1]: [("polygonlabels", "polygon", ["dog"])],
        ids[2]: [],
        ids[3]: [("rectanglelabels", "label", ["car"])],
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
