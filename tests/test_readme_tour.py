"""The README's quick tour, run command by command as a new user would: after the demo (the README's first
command), on photos in ``~/data/pets``, each command must exit 0.

Models that need hub weights (OWLv2, YOLO11m, SAM 2.1) find them where a download would have put them: the
Hugging Face cache and verilabel's weights folder hold random-weight models of the same architectures, built
here. Nothing touches the network (VERILABEL_OFFLINE and HF_HUB_OFFLINE stay set)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.readme_helpers import readme_block, readme_environment, sample_photos

pytestmark = pytest.mark.slow


def plant_hf_snapshot(hub: Path, repo: str, folder: Path) -> None:
    """Lay ``folder`` out as huggingface_hub caches a download of ``repo`` (refs/main -> snapshots/<commit>)."""
    root = hub / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    snapshot.parent.mkdir(parents=True)
    folder.rename(snapshot)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(snapshot.name)


def plant_tour_weights(tmp_path: Path, home: Path) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("ultralytics")
    from tests.support import random_models_hf, random_models_sam, random_models_ultralytics

    hub = tmp_path / "hf" / "hub"
    plant_hf_snapshot(
        hub, "google/owlv2-base-patch16-ensemble", random_models_hf.save_owl(tmp_path / "owl", "owlv2", "tiny")
    )
    _, sam = random_models_sam.save("sam2", tmp_path / "sam2", "tiny")
    plant_hf_snapshot(hub, "facebook/sam2.1-hiera-small", sam)
    yolo = random_models_ultralytics.save_yolo(tmp_path / "yolo", "detect", "tiny")
    (home / "weights").mkdir(parents=True, exist_ok=True)
    yolo.rename(home / "weights" / "yolo11m.pt")


def tour_commands() -> list[str]:
    """The tour's commands: continuation lines joined, blank lines dropped (bash itself skips the comments)."""
    joined = readme_block("## Quick tour", "bash").replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip()]


def test_the_quick_tour_runs_verbatim_after_the_demo(tmp_path: Path, home: Path):
    pytest.importorskip("mediapipe")
    sample_photos(tmp_path / "data" / "pets")
    plant_tour_weights(tmp_path, home)
    env = readme_environment(tmp_path, home) | {"HF_HOME": str(tmp_path / "hf")}

    def run(command: str, timeout: float = 300) -> str:
        done = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=timeout
        )
        assert done.returncode == 0, f"`{command}` exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    run("verilabel demo")  # the README's first command, minus the install: its runs are named demo-*
    commands = tour_commands()
    assert len(commands) >= 15 and all(c.startswith("verilabel ") for c in commands)
    outputs = {command: run(command) for command in commands}

    shown = json.loads(next(out for command, out in outputs.items() if command.startswith("verilabel run show")))
    assert shown["status"] == "in_review" and shown["progress"]["done"] == 4 and shown["labels"] >= 1
    exported = json.loads((tmp_path / "out" / "labels.json").read_text())
    assert exported["annotations"] and {c["name"] for c in exported["categories"]} == {"face"}
    # the runs on downloaded-model stand-ins finish too, their masks where the tour put them
    for run_name in ("pets_owl", "pet_masks"):
        run(f"verilabel run watch {run_name}")
    assert (tmp_path / "masks").is_dir()
