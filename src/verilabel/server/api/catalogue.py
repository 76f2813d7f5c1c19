"""The model catalogue, with what each model needs to run here."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from verilabel.server.auth import Viewer

router = APIRouter(prefix="/models", tags=["models"])


@router.get("")
def list_models(who: Viewer, task: str | None = None, vocabulary: bool = False) -> list[dict[str, Any]]:
    from verilabel.datasets.embeddings import embeds
    from verilabel.models.registry import catalogue, unavailable_because

    return [
        entry.to_json(available=(why := unavailable_because(entry)) is None, vocabulary=vocabulary)
        | {"missing": why, "embeds": embeds(entry)}
        for entry in catalogue()
        if task is None or task in entry.tasks
    ]
