"""Lazy re-exports for package facades: ``verilabel.datasets.add_images`` without importing SQLAlchemy until a
name is used (``import verilabel`` and the CLI's ``--help`` stay fast)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], subpackages: tuple[str, ...] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` for ``package`` that resolve, on first use, each name of
    ``exports`` (name -> the module holding it) and each of its ``subpackages``. A subpackage is handed out as
    itself, never as one of its modules: importing that module later rebinds the package's attribute to the
    package, so a facade that handed out a module would change under the user's feet."""

    def __getattr__(name: str) -> Any:
        if name in subpackages:
            return importlib.import_module(f"{package}.{name}")
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted([*exports, *subpackages])

    return __getattr__, __dir__
