"""``verilabel dataset caption``: a caption per sample in its metadata, through the CLI, with a tiny random-weight
Florence-2 saved locally: resumable, --overwrite, unreadable images named, non-captioning models refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from sqlalchemy import select

from tests.support.images import write_blob_images
from tests.support.random_models_vlm import save_florence2
from verilabel.cli import main
from verilabel.store import Store
from verilabel.store.schema import SampleRow

pytestmark = pytest.mark.torch


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict | None, str]:
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def metadata() -> dict[str, dict]:
    with Store.open().read() as session:
        return {Path(p).name: dict(m or {}) for p, m in session.execute(select(SampleRow.path, SampleRow.meta))}


def test_captions_go_into_metadata_and_a_second_pass_skips_them(capsys, tmp_path: Path):
    weights = save_florence2(tmp_path / "florence")
    images = tmp_path / "imgs"
    write_blob_images(images, 3)
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    assert run(capsys, "dataset", "create", "d", "--from-dir", str(images))[0] == 0
    code, first, err = run(
        capsys, "dataset", "caption", "d", "--weights", str(weights), "--device", "cpu", "--batch-size", "2"
    )
    assert code == 0, err
    assert first["captioned"] == 3 and first["skipped"] == 0
    assert [Path(f["path"]).name for f in first["failed"]] == ["broken.jpg"] and first["failed"][0]["error"]
    captioned = {name: meta for name, meta in metadata().items() if "caption" in meta}
    assert len(captioned) == 3 and all(isinstance(meta["caption"], str) for meta in captioned.values())
    code, again, _ = run(capsys, "dataset", "caption", "d", "--weights", str(weights), "--device", "cpu")
    assert again["captioned"] == 0 and again["skipped"] == 3
    code, detailed, _ = run(
        capsys, "dataset", "caption", "d", "--weights", str(weights), "--device", "cpu",
        "--key", "long", "--detail", "detailed",
    )  # fmt: skip
    assert detailed["captioned"] == 3
    assert all("caption" in meta and "long" in meta for meta in metadata().values() if meta.get("long") is not None)
    code, redone, _ = run(
        capsys, "dataset", "caption", "d", "--weights", str(weights), "--device", "cpu", "--overwrite"
    )
    assert redone["captioned"] == 3 and redone["skipped"] == 0


def test_a_model_that_does_not_caption_is_refused_with_the_ones_that_do(capsys, tmp_path: Path):
    write_blob_images(tmp_path / "imgs", 1)
    assert run(capsys, "dataset", "create", "d", "--from-dir", str(tmp_path / "imgs"))[0] == 0
    code, _, err = run(capsys, "dataset", "caption", "d", "--model", "opencv-haar-face")
    assert code != 0 and "does not write captions" in err and "florence-2-base" in err
    code, _, err = run(capsys, "dataset", "caption", "nope", "--model", "opencv-haar-face")
    assert code != 0 and "nope" in err
