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
