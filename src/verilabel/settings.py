"""Where verilabel keeps its state, read from the environment at call time (never at import)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("VERILABEL_HOME", "~/.verilabel")).expanduser()
        url = os.environ.get("VERILABEL_DATABASE_URL") or f"sqlite:///{home / 'verilabel.db'}"
        return cls(home=home, database_url=url)
