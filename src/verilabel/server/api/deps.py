"""Short handler signatures: the store and the server's home, as dependencies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from verilabel.store import Store


def _store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


def _cache(request: Request) -> Path:
    return request.app.state.cache  # type: ignore[no-any-return]


def _masks(request: Request) -> Path:
    return request.app.state.masks  # type: ignore[no-any-return]


StoreDep = Annotated[Store, Depends(_store)]
CacheDep = Annotated[Path, Depends(_cache)]
MasksDep = Annotated[Path, Depends(_masks)]
