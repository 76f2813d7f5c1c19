"""The HTTP API through its ASGI interface: closed by default, roles, sessions, errors, media, review."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.review_helpers import synthetic_run
from tests.server_helpers import Served, serve
from tests.support.images import write_blob_images
from verilabel.datasets import service as ds
from verilabel.store import Store


@pytest.fixture
def served(store: Store, home: Path) -> Served:
    return serve(store, home)


def routes(served: Served) -> list[tuple[str, str]]:
    """Every API operation the OpenAPI document lists, path parameters filled in."""
    found = []
    for path, operations in served.app.openapi()["paths"].items():
        if path.startswith("/api/v1"):
            found += [(method.upper(), re.sub(r"\{[^}]+\}", "1", path)) for method in operations]
    return found


def test_every_route_is_closed_to_anonymous_and_changes_to_viewers(served: Served):
    anonymous, viewer, editor = served.client(), served.client("viewer"), served.client("editor")
    checked = 0
    for method, path in routes(served):
        if (method, path) == ("POST", "/api/v1/session"):
            continue  # signing in is the one public route
        answer = anonymous.request(method, path, json={})
        assert answer.status_code == 401, (method, path)
        assert answer.headers["www-authenticate"] == "Bearer"
        assert set(answer.json()) == {"error"}
        if method not in ("GET", "HEAD") and path != "/api/v1/session":
            assert viewer.request(method, path, json={}).status_code == 403, (method, path)
        if path.startswith("/api/v1/users"):
            assert editor.request(method, path, json={}).status_code == 403, (method, path)
        checked += 1
    assert checked >= 25


def test_a_browser_signs_in_with_the_url_token_and_changes_need_the_csrf_header(served: Served, tmp_path: Path):
    browser = served.client()
    answer = browser.get(f"/?token={served.tokens['editor']}", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/"  # the token leaves the address bar
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert browser.get("/api/v1/me").json() == {
        "name": "editor-user",
        "role": "editor",
        "created_at": browser.get("/api/v1/me").json()["created_at"],
        "via": "session",
    }
    write_blob_images(tmp_path / "imgs", 2)
    ds.add_images(served.app.state.store, "d", tmp_path / "imgs", create=True)
    run = synthetic_run(served.app.state.store, tmp_path, [(0, "car", 0.9)])
    refused = browser.post(f"/api/v1/runs/{run}/promote", json={})  # as a cross-site form would post
    assert refused.status_code == 403 and "cross-site" in refused.json()["error"]["message"]
    assert browser.post(f"/api/v1/runs/{run}/promote", json={}, headers={"X-Verilabel": "1"}).json() == {"promoted": 1}
    assert browser.delete("/api/v1/session", headers={"X-Verilabel": "1"}).status_code == 200
    assert browser.get("/api/v1/me").status_code == 401
    assert served.client().get("/?token=vl_wrong", follow_redirects=False).status_code == 401


def test_the_launch_token_signs_in_an_admin_while_the_server_runs(served: Served):
    client = served.client()
    answer = client.post("/api/v1/session", json={"token": served.settings.launch_token})
    assert answer.json()["role"] == "admin"
    assert client.get("/api/v1/users").status_code == 200


def test_unknown_host_headers_are_refused_against_dns_rebinding(served: Served):
    client = served.client("viewer")
    assert client.get("/api/v1/me", headers={"Host": "attacker.example:8151"}).status_code == 400
    assert client.get("/api/v1/me", headers={"Host": "localhost:8151"}).status_code == 200
    assert client.get("/api/v1/me", headers={"Host": "[::1]:8151"}).status_code == 200


def test_errors_are_one_json_body_naming_the_problem(served: Served):
    client = served.client("editor")
    missing = client.get("/api/v1/datasets/nope")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "NotFoundError"
    assert "no dataset named 'nope'" in missing.json()["error"]["message"]
    ds.create_dataset(served.app.state.store, "d")
    invalid = client.post("/api/v1/datasets/d/runs", json={"task": "dance", "model": "mediapipe-face", "field": "f"})
    assert invalid.status_code == 422 and invalid.json()["error"]["field"] == "task"
    user_model = client.post(
        "/api/v1/datasets/d/runs", json={"task": "detection", "model": "python:os:system", "field": "f"}
    )
    assert user_model.status_code == 422 and "CLI only" in user_model.json()["error"]["message"]
    unknown = client.post(
        "/api/v1/datasets/d/runs", json={"task": "detection", "model": "m", "field": "f", "mask_dir": "/"}
    )
    assert unknown.status_code == 422  # no path comes from a client
    both = client.post(
        "/api/v1/datasets/d/runs",
        json={
            "task": "detection",
            "model": "opencv-haar-face",
            "field": "f",
            "classes": ["face"],
            "negatives": ["face"],
        },
    )
    assert both.status_code == 422 and both.json()["error"]["field"] == "negatives"


def test_samples_come_by_id_with_their_labels_and_media_never_by_path(served: Served, tmp_path: Path):
    store = served.app.state.store
    write_blob_images(tmp_path / "imgs", 3)
    ds.add_images(store, "d", tmp_path / "imgs", create=True)
    client = served.client("viewer")
    page = client.get("/api/v1/datasets/d/samples", params={"limit": 2}).json()
    assert page["total"] == 3 and len(page["samples"]) == 2
    first = page["samples"][0]
    assert first["name"] == "img_00000.png" and "path" not in first and str(tmp_path) not in str(page)
    image = client.get(f"/api/v1/samples/{first['id']}/image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.headers["x-content-type-options"] == "nosniff"
    assert image.content == (tmp_path / "imgs" / "img_00000.png").read_bytes()
    thumb = client.get(f"/api/v1/samples/{first['id']}/thumbnail", params={"size": 128})
    assert thumb.headers["content-type"] == "image/jpeg" and thumb.headers["etag"]
    again = client.get(f"/api/v1/samples/{first['id']}/thumbnail", params={"size": 128})
    assert again.content == thumb.content
    partial = client.get(f"/api/v1/samples/{first['id']}/image", headers={"Range": "bytes=0-9"})
    assert partial.status_code == 206 and len(partial.content) == 10
    for bad in ("../../etc/passwd", "%2Fetc%2Fpasswd", "..%2F..%2Fetc%2Fpasswd", "/etc/passwd"):
        assert client.get(f"/api/v1/samples/{bad}/image").status_code in (404, 422)
    (tmp_path / "imgs" / "img_00001.png").unlink()
    gone = client.get(f"/api/v1/samples/{page['samples'][1]['id']}/image")
    assert gone.status_code == 404 and "is gone" in gone.json()["error"]["message"]


def test_review_through_the_api_records_who_did_what(served: Served, tmp_path: Path):
    store = served.app.state.store
    labels = [(0, "car", 0.9), (0, "car", 0.4), (1, "dog", 0.8), (2, "dog", 0.3), (3, "cat", 0.5)]
    run = synthetic_run(store, tmp_path, labels)
    viewer, editor = served.client("viewer"), served.client("editor")
    table = viewer.get(f"/api/v1/runs/{run}/classes", params={"min_confidence": 0.5}).json()
    assert {row["label"]: (row["instances"], row["total"]) for row in table} == {
        "car": (1, 2),
        "cat": (1, 1),
        "dog": (1, 2),
    }
    histogram = viewer.get(f"/api/v1/runs/{run}/histogram").json()
    assert histogram["bins"] == 100 and sum(histogram["classes"]["car"]["counts"][50:]) == 1
    grid = viewer.get(f"/api/v1/runs/{run}/samples", params={"classes": "dog"}).json()
    assert len(grid["samples"]) == 2 and not grid["more"]
    assert all(label["label"] == "dog" for s in grid["samples"] for label in s["labels"])
    first = viewer.get(f"/api/v1/runs/{run}/samples", params={"limit": 3}).json()
    assert len(first["samples"]) == 3 and first["more"]
    assert editor.post(f"/api/v1/runs/{run}/promote", json={"min_confidence": 0.5}).json() == {"promoted": 3}
    assert editor.post(f"/api/v1/runs/{run}/undo", json={"classes": ["cat"]}).json() == {"undone": 1}
    assert editor.post(f"/api/v1/runs/{run}/tag", json={"tags": ["check"], "filter": {"classes": ["dog"]}}).json() == {
        "tagged": 2
    }
    refused = editor.post(f"/api/v1/runs/{run}/undo", json={"classes": ["persn"]})
    assert refused.status_code == 422 and "its classes: car, cat, dog" in refused.json()["error"]["message"]
    assert editor.post(f"/api/v1/runs/{run}/approve", json={}).json() == {
        "approved": 2,
        "discarded": 3,
        "field": "auto",
    }
    events = viewer.get(f"/api/v1/runs/{run}/history").json()
    assert [(e["actor"], e["action"]) for e in events][:4] == [
        ("editor-user", "approve"),
        ("editor-user", "tag"),
        ("editor-user", "undo"),
        ("editor-user", "promote"),
    ]
    assert events[3]["details"] == {"labels": 3, "filter": {"min_confidence": 0.5}}


def test_users_are_managed_by_admins(served: Served):
    admin = served.client("admin")
    made = admin.post("/api/v1/users", json={"name": "ann", "role": "editor"})
    assert made.status_code == 201 and made.json()["token"].startswith("vl_")
    assert (
        served.client().get("/api/v1/me", headers={"Authorization": f"Bearer {made.json()['token']}"}).json()["name"]
        == "ann"
    )
    rotated = admin.post("/api/v1/users/ann/token").json()["token"]
    assert (
        served.client().get("/api/v1/me", headers={"Authorization": f"Bearer {made.json()['token']}"}).status_code
        == 401
    )
    assert served.client().get("/api/v1/me", headers={"Authorization": f"Bearer {rotated}"}).status_code == 200
    assert admin.post("/api/v1/users", json={"name": "bob", "role": "boss"}).json()["error"]["field"] == "role"
    assert admin.delete("/api/v1/users/ann").status_code == 200
    assert served.client().get("/api/v1/me", headers={"Authorization": f"Bearer {rotated}"}).status_code == 401


@pytest.mark.slow
def test_a_run_created_through_the_api_streams_its_progress_to_the_end(served: Served, tmp_path: Path):
    pytest.importorskip("cv2")
    store = served.app.state.store
    write_blob_images(tmp_path / "imgs", 4)
    ds.add_images(store, "d", tmp_path / "imgs", create=True)
    editor = served.client("editor")
    created = editor.post(
        "/api/v1/datasets/d/runs", json={"task": "detection", "model": "opencv-haar-face", "field": "faces"}
    )
    assert created.status_code == 201, created.text
    run = created.json()["id"]
    with editor.stream("GET", f"/api/v1/runs/{run}/stream") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = [line for line in stream.iter_lines() if line.startswith("data: ")]
    import json

    last = json.loads(events[-1].removeprefix("data: "))
    assert last["status"] == "in_review" and last["progress"]["done"] == 4 and not last["active"]
    assert len(events) >= 1
    history = editor.get(f"/api/v1/runs/{run}/history").json()
    assert history[-1]["action"] == "create" and history[-1]["actor"] == "editor-user"
    runs_listed = served.client("viewer").get("/api/v1/datasets/d/runs").json()
    assert [r["name"] for r in runs_listed] == ["faces"]
    assert editor.delete(f"/api/v1/runs/{run}").json()["field_freed"] == "faces"


def test_serve_refuses_a_public_address_until_a_user_exists(capsys):
    from verilabel.cli import main

    assert main(["serve", "--host", "0.0.0.0"]) == 2
    error = capsys.readouterr().err
    assert "reachable from other machines" in error and "verilabel users add NAME --role admin" in error


def test_users_cli_prints_a_token_that_signs_in(capsys, served: Served):
    import json

    from verilabel.cli import main

    assert main(["users", "add", "carol", "--role", "editor", "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["name"] == "carol" and made["role"] == "editor"
    assert (
        served.client().get("/api/v1/me", headers={"Authorization": f"Bearer {made['token']}"}).json()["role"]
        == "editor"
    )
    assert main(["users", "list", "--json"]) == 0
    assert "carol" in capsys.readouterr().out


@pytest.mark.slow
def test_masks_and_sample_tags_through_the_api(served: Served, tmp_path: Path):
    import io

    import numpy as np
    from PIL import Image

    from tests.runs_helpers import BLOBS, request
    from verilabel.runs import service as runs

    store = served.app.state.store
    write_blob_images(tmp_path / "imgs", 3)
    ds.add_images(store, "d", tmp_path / "imgs", create=True)
    info = runs.create_run(
        store,
        request("seg", task="segmentation", model=BLOBS.replace("detector", "segmenter"), mask_dir=str(tmp_path / "m")),
    )
    assert runs.wait_run(store, info.id, timeout=60).status == "in_review"
    viewer, editor = served.client("viewer"), served.client("editor")
    (label,) = viewer.get(f"/api/v1/runs/{info.id}/labels", params={"limit": 1}).json()
    assert label["mask"] is True
    png = viewer.get(f"/api/v1/runs/{info.id}/labels/{label['id']}/mask")
    assert png.headers["content-type"] == "image/png"
    alpha = np.asarray(Image.open(io.BytesIO(png.content)))[..., 3]
    w, h = round(label["box"][2] * 160), round(label["box"][3] * 120)
    assert alpha.shape == (h, w) and (alpha == 255).all()  # the blob fills its box
    assert viewer.get(f"/api/v1/runs/{info.id}/labels/nope/mask").status_code == 404
    tagged = editor.post("/api/v1/datasets/d/tags", json={"tags": ["night"], "sample_ids": [1, 2]})
    assert tagged.json() == {"tagged": 2}
    assert viewer.get("/api/v1/datasets/d/samples", params={"view": "tags=night"}).json()["total"] == 2
    assert viewer.get("/api/v1/datasets/d/history").json()[0]["action"] == "tag-samples"


def test_an_unexpected_failure_answers_500_without_a_traceback(served: Served, tmp_path: Path, monkeypatch):
    from fastapi.testclient import TestClient

    from tests.server_helpers import BASE
    from verilabel.review import service as review_service

    run = synthetic_run(served.app.state.store, tmp_path, [(0, "car", 0.9)])
    monkeypatch.setattr(review_service, "histogram", lambda *args, **kwargs: 1 / 0)
    client = TestClient(served.app, base_url=BASE, raise_server_exceptions=False)
    answer = client.get(f"/api/v1/runs/{run}/histogram", headers={"Authorization": f"Bearer {served.tokens['viewer']}"})
    assert answer.status_code == 500
    assert answer.json() == {"error": {"type": "InternalError", "message": "internal error: see the server's log"}}
    assert "Traceback" not in answer.text and "ZeroDivision" not in answer.text


def test_a_field_downloads_as_coco_or_label_studio_and_nothing_is_left_behind(served: Served, tmp_path: Path):
    import tempfile

    from verilabel.review import service as review_service

    store = served.app.state.store
    write_blob_images(tmp_path / "imgs", 2)
    ds.add_images(store, "d", tmp_path / "imgs", create=True)
    run = synthetic_run(store, tmp_path, [(0, "car", 0.9), (1, "dog", 0.7)])
    review_service.promote(store, run)
    review_service.approve(store, run)
    viewer = served.client("viewer")
    before = set(Path(tempfile.gettempdir()).glob("verilabel-export-*"))
    coco = viewer.get("/api/v1/datasets/d/export", params={"field": "auto", "format": "coco"})
    assert coco.status_code == 200 and "attachment" in coco.headers["content-disposition"]
    assert len(coco.json()["annotations"]) == 2
    tasks = viewer.get("/api/v1/datasets/d/export", params={"field": "auto", "format": "label-studio"}).json()
    assert sum(len(t["predictions"]) for t in tasks) == 2
    assert (
        viewer.get("/api/v1/datasets/d/export", params={"field": "auto", "format": "yolo"}).json()["error"]["field"]
        == "format"
    )
    assert set(Path(tempfile.gettempdir()).glob("verilabel-export-*")) == before  # removed after sending
