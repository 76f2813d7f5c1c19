"""Printing for the CLI: JSON for scripts, rich tables for people."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console


def console() -> Console:
    return Console(highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def err(message: str) -> None:
    Console(stderr=True, highlight=False).print(message)


JSON_OPTION_HELP = "Print machine-readable JSON."
