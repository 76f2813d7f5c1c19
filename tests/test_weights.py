"""Weights resolution: local paths, the hub caches, fail-fast messages (no network is ever touched)."""

from pathlib import Path

import pytest

from verilabel.errors import ModelLoadError
from verilabel.models import weights

pytest.importorskip("huggingface_hub")


@pytest.fixture
def hf_cache(monkeypatch, tmp_path: Path) -> Path:
    """An empty HF cache (huggingface_hub reads HF_HUB_CACHE once, at import: patch its constant too)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def fake_snapshot(cache: Path, repo: str, files: dict[str, bytes]) -> Path:
    """A snapshot laid out the way huggingface_hub caches one (refs/main -> snapshots/<commit>/...)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text("abc123")
    snapshot = root / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    return snapshot


def test_a_complete_cached_snapshot_loads_offline(hf_cache: Path):
    snapshot = fake_snapshot(hf_cache, "org/model", {"config.json": b"{}", "model.safetensors": b"x"})
    assert weights.hf_snapshot("org/model", name="m") == snapshot
    assert weights.cached("hf:org/model")


def test_a_partial_snapshot_is_not_taken_for_the_model(hf_cache: Path):
    fake_snapshot(hf_cache, "org/half", {"config.json": b"{}"})  # the weights never arrived
    assert not weights.cached("hf:org/half")
    with pytest.raises(ModelLoadError) as info:
        weights.hf_snapshot("org/half", name="half-model")
    message = str(info.value)
    assert "'org/half'" in message and "downloads are off" in message and "--weights" in message


def test_weights_overrides(tmp_path: Path):
    folder = tmp_path / "saved"
    folder.mkdir()
    assert weights.hf_repo("hf:org/model", str(folder), name="m") == folder
    assert weights.hf_repo("hf:org/model", "my-org/finetune", name="m") == "my-org/finetune"
    assert weights.hf_repo("hf:org/model", None, name="m") == "org/model"
    with pytest.raises(ModelLoadError, match="not found"):
        weights.hf_repo("hf:org/model", str(tmp_path / "missing.safetensors"), name="m")
    file = tmp_path / "w.pt"
    file.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="must be a directory"):
        weights.hf_repo("hf:org/model", str(file), name="m")


def test_url_weights_fail_fast_offline_naming_the_file(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("VERILABEL_HOME", str(tmp_path / "home"))
    url = "https://example.invalid/releases/yolo11n.pt"
    with pytest.raises(ModelLoadError) as info:
        weights.source_file(f"url:{url}", None, name="yolo11n-coco")
    assert url in str(info.value) and str(tmp_path / "home" / "weights" / "yolo11n.pt") in str(info.value)
    (tmp_path / "home" / "weights").mkdir(parents=True)
    (tmp_path / "home" / "weights" / "yolo11n.pt").write_bytes(b"x")
    assert weights.source_file(f"url:{url}", None, name="yolo11n-coco").name == "yolo11n.pt"
    assert weights.cached(f"url:{url}")


def test_identity_names_the_revision_or_the_file(hf_cache: Path, tmp_path: Path, monkeypatch):
    fake_snapshot(hf_cache, "org/model", {"config.json": b"{}", "model.safetensors": b"x"})
    assert weights.identity("hf:org/model", None) == "hf:org/model@abc123"
    assert weights.identity("hf:org/elsewhere", None) == "hf:org/elsewhere"  # not cached: the source itself
    file = tmp_path / "finetuned.pt"
    file.write_bytes(b"12345")
    described = weights.identity("url:https://example.invalid/yolo11n.pt", str(file))
    assert described.startswith(str(file)) and "5 bytes" in described
    monkeypatch.setenv("VERILABEL_HOME", str(tmp_path / "home"))
    assert weights.identity("url:https://example.invalid/yolo11n.pt", None) == "url:https://example.invalid/yolo11n.pt"


@pytest.fixture
def file_server(tmp_path: Path):
    """A loopback HTTP server for a folder (downloads are tested without the network)."""
    import functools
    import http.server
    import threading

    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_downloads_are_checked_against_the_hash_their_url_names(file_server, tmp_path: Path, monkeypatch):
    import hashlib

    root, base = file_server
    monkeypatch.delenv("VERILABEL_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("VERILABEL_HOME", str(tmp_path / "home"))
    payload = b"pretend these are weights"
    digest = hashlib.sha256(payload).hexdigest()
    (root / f"resnet-{digest[:8]}.pth").write_bytes(payload)
    (root / "resnet-0badc0de.pth").write_bytes(payload)  # the URL names another hash: a corrupt download
    good = weights.url_file(f"{base}/resnet-{digest[:8]}.pth", None, name="resnet")
    assert good.read_bytes() == payload and good.parent == tmp_path / "home" / "weights"
    with pytest.raises(ModelLoadError, match=r"are corrupt: their SHA-256 is .* the URL names 0badc0de"):
        weights.url_file(f"{base}/resnet-0badc0de.pth", None, name="resnet")
    assert sorted(p.name for p in good.parent.iterdir()) == [good.name]  # nothing half-kept
    assert weights.expected_digest(f"https://x/clip/models/{digest}/ViT-B-32.pt") == digest
    assert weights.expected_digest("https://github.com/ultralytics/assets/releases/download/v8.3.0/yolo11n.pt") is None


def test_every_catalogue_url_that_names_a_hash_is_torchvisions():
    from verilabel.models.catalogue import builtin_catalogue

    for entry in builtin_catalogue():
        kind, _, url = entry.weights.partition(":")
        if kind in ("url", "torch"):
            named = weights.expected_digest(url) is not None
            assert named == ("download.pytorch.org" in url), entry.name


def test_missing_weights_are_caught_before_a_run_starts_with_the_loaders_message(file_server, tmp_path, monkeypatch):
    root, base = file_server
    monkeypatch.setenv("VERILABEL_HOME", str(tmp_path / "home"))
    url = f"{base}/yolo-test.pt"
    with pytest.raises(ModelLoadError) as offline:
        weights.ensure_obtainable(f"url:{url}", None, name="m")
    with pytest.raises(ModelLoadError) as loading:
        weights.source_file(f"url:{url}", None, name="m")
    assert str(offline.value) == str(loading.value) and "VERILABEL_OFFLINE is set" in str(offline.value)
    monkeypatch.delenv("VERILABEL_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(ModelLoadError, match=r"cannot be downloaded now \(HTTPError: HTTP Error 404"):
        weights.ensure_obtainable(f"url:{url}", None, name="m")
    (root / "yolo-test.pt").write_bytes(b"x")
    weights.ensure_obtainable(f"url:{url}", None, name="m")  # downloadable: fine, nothing fetched yet
    assert not (tmp_path / "home" / "weights" / "yolo-test.pt").exists()
    with pytest.raises(ModelLoadError, match="weights file for 'm' not found"):
        weights.ensure_obtainable(f"url:{url}", str(tmp_path / "nope.pt"), name="m")
