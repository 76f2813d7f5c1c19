"""The README is executed as written: its Python snippet in a fresh process (the tour: ``test_readme_tour.py``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.readme_helpers import readme_block, readme_environment, sample_photos


@pytest.mark.slow
def test_the_python_snippet_runs_as_written_in_a_fresh_process(tmp_path: Path, home: Path):
    pytest.importorskip("mediapipe")
    sample_photos(tmp_path / "data" / "pets")
    snippet = readme_block("The same from Python:", "python")
    assert "~/data/pets" in snippet and "vl.datasets.add_images" in snippet and "vl.runs.wait_run" in snippet
    done = subprocess.run(
        [sys.executable, "-c", snippet],
        capture_output=True,
        text=True,
        env=readme_environment(tmp_path, home),
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    progress = ast.literal_eval(done.stdout.strip())  # the snippet prints the run's progress dict
    assert progress["done"] == progress["total"] == 4 and progress["failed"] == 0
