"""What `pip install` brings: the wheel holds the app's assets, the catalogue data and the migrations."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_carries_the_app_the_catalogue_and_the_migrations(tmp_path: Path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("verilabel-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    static = REPO / "src" / "verilabel" / "server" / "static"
    for asset in static.iterdir():
        assert f"verilabel/server/static/{asset.name}" in names, asset.name
    assert any(name.startswith("verilabel/models/families/") and name.endswith(".toml") for name in names)
    assert "verilabel/store/migrations/versions/0004_accounts_and_history.py" in names
    assert "verilabel/py.typed" in names
