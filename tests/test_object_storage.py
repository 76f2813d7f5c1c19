"""Media beyond the local disk: images in S3 (a real S3-compatible server, moto's, started here) and behind
https-like URLs (a local HTTP server), listed, probed, labelled by a run and served by the app. A missing bucket,
a missing object and throttled requests behave as they must: errors that name the problem, per-sample failures,
retries that get through."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

from tests.runs_helpers import label_snapshot  # noqa: E402
from tests.support.images import write_blob_images  # noqa: E402
from verilabel.cli import main  # noqa: E402
from verilabel.datasets import media  # noqa: E402
from verilabel.datasets import service as ds  # noqa: E402
from verilabel.errors import DatasetImportError  # noqa: E402
from verilabel.runs import service as runs  # noqa: E402
from verilabel.runs.config import RunRequest  # noqa: E402
from verilabel.store import Store  # noqa: E402

pytestmark = pytest.mark.slow
BLOBS = "python:tests.support.blob_model:detector"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Throttle:
    """A reverse proxy in front of S3 answering 503 SlowDown to the first ``count`` object reads (as S3 does under
    load); everything else passes through."""

    def __init__(self, upstream: str) -> None:
        self.upstream, self.count, self.refused = upstream, 0, 0
        throttle = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if throttle.count > 0 and self.path.split("?")[0].endswith(".png"):
                    throttle.count -= 1
                    throttle.refused += 1
                    body = b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>"
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.forward()

            def do_HEAD(self) -> None:
                self.forward(body=False)

            def forward(self, body: bool = True) -> None:
                request = urllib.request.Request(throttle.upstream + self.path, method=self.command)
                for key, value in self.headers.items():
                    if key.lower() != "host":
                        request.add_header(key, value)
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        status, headers, data = response.status, response.headers, response.read()
                except urllib.error.HTTPError as error:
                    status, headers, data = error.code, error.headers, error.read()
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[object, Throttle]]:
    """A moto S3 server on loopback, a bucket ``photos`` holding 6 blob images under ``shop/``, and the throttling
    proxy verilabel talks to."""
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",  # botocore's own retries off: verilabel's are under test
    }.items():
        monkeypatch.setenv(key, value)
    throttle = Throttle(f"http://127.0.0.1:{port}")
    monkeypatch.setenv("VERILABEL_S3_ENDPOINT", throttle.url)
    media._filesystem.cache_clear()
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
    client.create_bucket(Bucket="photos")
    for path in write_blob_images(tmp_path / "local", 6):
        client.upload_file(str(path), "photos", f"shop/{path.name}")
    client.put_object(Bucket="photos", Key="shop/.hidden/skip.jpg", Body=b"x")
    client.put_object(Bucket="photos", Key="shop/notes.txt", Body=b"not an image")
    try:
        yield client, throttle
    finally:
        media._filesystem.cache_clear()
        throttle.server.shutdown()
        server.stop()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_bucket_prefix_becomes_a_dataset_labelled_like_local_files(s3, store: Store, tmp_path, capsys):
    code, out, err = cli(capsys, "dataset", "create", "shop", "--from-dir", "s3://photos/shop", "--json")
    assert code == 0, err
    assert json.loads(out)["added"] == 6
    samples = ds.samples(store, "shop", limit=100)
    assert all(s.path.startswith("s3://photos/shop/") and s.width == 160 for s in samples)
    ds.add_images(store, "local", tmp_path / "local", create=True)
    remote = runs.wait_run(store, runs.create_run(store, RunRequest("shop", "detection", BLOBS, "b")).id, timeout=90)
    local = runs.wait_run(store, runs.create_run(store, RunRequest("local", "detection", BLOBS, "b")).id, timeout=90)
    assert remote.status == local.status == "in_review" and remote.done == 6
    strip = [row[1:] for row in label_snapshot(store, remote.id)]
    assert strip == [row[1:] for row in label_snapshot(store, local.id)] and strip


def test_exports_of_a_bucket_dataset_name_its_objects(s3, store: Store, tmp_path):
    from verilabel.datasets.export import export_field
    from verilabel.review import service as review

    ds.add_images(store, "shop", "s3://photos/shop", create=True)
    run = runs.wait_run(store, runs.create_run(store, RunRequest("shop", "detection", BLOBS, "b")).id, timeout=90)
    review.promote(store, run.id)
    review.approve(store, run.id)
    export_field(store, "shop", "b", "coco", tmp_path / "coco")
    coco = json.loads((tmp_path / "coco" / "labels.json").read_text())
    assert coco["info"]["images_root"] == "s3://photos/shop"
    assert sorted(image["file_name"] for image in coco["images"]) == [f"img_{i:05d}.png" for i in range(6)]
    export_field(store, "shop", "b", "label-studio", tmp_path / "ls")
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    assert sorted(t["data"]["image"] for t in tasks) == [f"s3://photos/shop/img_{i:05d}.png" for i in range(6)]
    export_field(store, "shop", "b", "yolo", tmp_path / "yolo")
    copies = sorted((tmp_path / "yolo" / "images").rglob("*.png"))
    assert len(copies) == 6 and not any(p.is_symlink() for p in copies)
    key = "shop/" + copies[0].name.split("_", 1)[1]
    assert copies[0].read_bytes() == s3[0].get_object(Bucket="photos", Key=key)["Body"].read()


def test_a_missing_object_is_that_samples_failure_and_a_missing_bucket_an_import_error(s3, store: Store, capsys):
    client, _ = s3
    ds.add_images(store, "shop", "s3://photos/shop", create=True)
    client.delete_object(Bucket="photos", Key="shop/img_00002.png")
    info = runs.wait_run(store, runs.create_run(store, RunRequest("shop", "detection", BLOBS, "b")).id, timeout=90)
    assert info.status == "in_review" and (info.done, info.failed) == (5, 1)
    (failure,) = info.failures
    assert failure["error"] == "not found: s3://photos/shop/img_00002.png"
    with pytest.raises(DatasetImportError, match=r"no such bucket: s3://nowhere"):
        ds.add_images(store, "other", "s3://nowhere/shop", create=True)
    code, _, err = cli(capsys, "dataset", "create", "x", "--from-dir", "s3://nowhere/shop")
    assert code != 0 and "no such bucket" in err and "Traceback" not in err
    assert not ds.dataset_exists(store, "x")


def test_throttled_reads_are_retried_until_they_pass(s3, store: Store, monkeypatch):
    _, throttle = s3
    ds.add_images(store, "shop", "s3://photos/shop", create=True)
    throttle.count = 6  # every image refused once (the run's decode threads read them concurrently)
    info = runs.wait_run(store, runs.create_run(store, RunRequest("shop", "detection", BLOBS, "b")).id, timeout=90)
    assert info.status == "in_review" and (info.done, info.failed) == (6, 0) and throttle.refused == 6
    monkeypatch.setattr(media, "BACKOFF_S", 0.01)
    throttle.count = 10**6  # throttled for good: a sample's failure that says so, not a hang
    with pytest.raises(Exception, match=r"cannot read s3://photos/shop/img_00000.png after 4 attempts"):
        media.read_bytes("s3://photos/shop/img_00000.png")


def test_the_app_serves_an_object_it_holds_the_credentials_for(s3, store: Store, tmp_path):
    from tests.server_helpers import serve

    client, _ = s3
    ds.add_images(store, "shop", "s3://photos/shop", create=True)
    sample = ds.samples(store, "shop", limit=1)[0]
    expected = client.get_object(Bucket="photos", Key=sample.path.removeprefix("s3://photos/"))["Body"].read()
    viewer = serve(store, tmp_path).client("viewer")
    image = viewer.get(f"/api/v1/samples/{sample.id}/image")
    assert image.status_code == 200 and image.content == expected
    assert image.headers["content-type"] == "image/png"
    thumbnail = viewer.get(f"/api/v1/samples/{sample.id}/thumbnail?size=128")
    assert thumbnail.status_code == 200 and thumbnail.content[:3] == b"\xff\xd8\xff"
    client.delete_object(Bucket="photos", Key=sample.path.removeprefix("s3://photos/"))
    other = ds.samples(store, "shop", limit=2)[1]
    client.delete_object(Bucket="photos", Key=other.path.removeprefix("s3://photos/"))
    gone = viewer.get(f"/api/v1/samples/{other.id}/image")
    assert gone.status_code == 404 and "not found: s3://photos/" in gone.json()["error"]["message"]


class Flaky(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; ``busy.png`` answers 503 twice before it is served, ``gone.png`` is not there."""

    busy = 0

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.endswith("busy.png") and Flaky.busy < 2:
            Flaky.busy += 1
            self.send_error(503, "busy")
            return
        super().do_GET()


def test_https_urls_from_a_list_are_probed_labelled_and_fail_alone(store: Store, tmp_path: Path):
    folder = tmp_path / "web"
    paths = write_blob_images(folder, 3)
    paths[2].rename(folder / "busy.png")
    handler = lambda *args: Flaky(*args, directory=str(folder))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        listing = tmp_path / "images.txt"
        listing.write_text(f"# web images\n{base}/{paths[0].name}\n{base}/{paths[1].name}\n{base}/busy.png\n\n")
        summary = ds.add_listed(store, "web", listing, create=True)
        assert summary.added == 3 and not summary.unreadable and Flaky.busy == 2  # probing got through the 503s
        with open(listing, "a") as file:
            file.write(f"{base}/gone.png\n")
        later = ds.add_listed(store, "web", listing)
        assert (later.added, later.already_present, len(later.unreadable)) == (1, 3, 1)
        Flaky.busy = 0
        info = runs.wait_run(store, runs.create_run(store, RunRequest("web", "detection", BLOBS, "b")).id, timeout=90)
        assert info.status == "in_review" and (info.done, info.failed) == (3, 1)
        assert info.failures[0]["error"] == f"not found: {base}/gone.png"
        with pytest.raises(DatasetImportError, match="cannot be listed"):
            ds.add_images(store, "web", base + "/")
    finally:
        server.shutdown()


def test_the_label_studio_backend_reads_tasks_in_allowed_buckets_only(s3):
    from verilabel.integrations.label_studio_backend import Backend

    config = (
        '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
        '<Label value="red"/><Label value="green"/><Label value="blue"/></RectangleLabels></View>'
    )
    client, _ = s3
    image = client.get_object(Bucket="photos", Key="shop/img_00000.png")["Body"].read()
    client.put_object(Bucket="photos", Key="elsewhere/img_00000.png", Body=image)
    backend = Backend(BLOBS, storage=["s3://photos/shop/"])
    tasks = [
        {"id": 1, "data": {"image": "s3://photos/shop/img_00000.png"}},
        {"id": 2, "data": {"image": "s3://photos/elsewhere/img_00000.png"}},  # not under --storage: refused
        {"id": 3, "data": {"image": "s3://photos/shop/missing.png"}},
    ]
    allowed, refused, missing = backend.predict({"tasks": tasks, "label_config": config})["results"]
    assert allowed["result"] and {r["value"]["rectanglelabels"][0] for r in allowed["result"]} <= {
        "red",
        "green",
        "blue",
    }
    assert refused["result"] == [] and missing["result"] == []
    opened = Backend(BLOBS, storage=["s3://photos/"]).predict({"tasks": tasks[1:2], "label_config": config})
    assert opened["results"][0]["result"]  # the same image, once its prefix is allowed
