"""Reading the README's code blocks and running them as a user would."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def readme_block(after_heading: str, language: str) -> str:
    """The first ``language`` code block after the line ``after_heading`` (or any line starting with it)."""
    text = (REPO / "README.md").read_text()
    start = text.index(after_heading)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    assert match, f"no {language} block after {after_heading!r}"
    return match.group(1)


def sample_photos(folder: Path, count: int = 4) -> list[Path]:
    """Photos that ship with scikit-image (a face, a cat, a coffee...), the demo's own images."""
    skimage_data = pytest.importorskip("skimage.data")
    source = Path(skimage_data.__file__).parent
    folder.mkdir(parents=True, exist_ok=True)
    chosen = [source / name for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")][:count]
    return [Path(shutil.copy(path, folder / path.name)) for path in chosen]


def readme_environment(tmp_path: Path, home: Path) -> dict[str, str]:
    """A user's shell: HOME (for ``~/data/pets``), the test's verilabel home, the venv's commands first."""
    return {
        **os.environ,
        "HOME": str(tmp_path),
        "VERILABEL_HOME": str(home),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "COLUMNS": "120",
    }
