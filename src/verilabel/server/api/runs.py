"""Runs: show, follow live (Server-Sent Events), cancel, resume, delete; and their history."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from verilabel import history
from verilabel.runs import service as runs
from verilabel.server.api.deps import StoreDep
from verilabel.server.auth import Editor, Viewer
from verilabel.server.payloads import RunControl

router = APIRouter(prefix="/runs", tags=["runs"])
POLL_SECONDS = 1.0


def run_json(info: runs.RunInfo) -> dict[str, Any]:
    return info.to_json() | {"active": info.status in runs.ACTIVE and not info.stalled}


@router.get("/{run}")
def show_run(run: str, who: Viewer, store: StoreDep) -> dict[str, Any]:
    return run_json(runs.get_run(store, run))


@router.get("/{run}/stream")
async def stream_run(
    run: str, who: Viewer, store: StoreDep, request: Request, review: bool = False
) -> StreamingResponse:
    """The run as Server-Sent Events: one ``run`` event now and one whenever it changes (progress; with ``review``,
    also labels promoted or undone by other reviewers), until it stops being active, or with ``review`` until it is
    no longer in review. A client that cannot stream polls ``GET /runs/{run}`` instead."""
    first = await asyncio.to_thread(runs.get_run, store, run)  # 404 before the stream starts

    async def events() -> AsyncIterator[str]:
        info, last = first, ""
        while True:
            payload = json.dumps(run_json(info), default=str)
            if payload != last:
                yield f"event: run\ndata: {payload}\n\n"
                last = payload
            live = info.status in runs.ACTIVE and not info.stalled
            if not (live or (review and info.status == "in_review")) or await request.is_disconnected():
                return
            await asyncio.sleep(POLL_SECONDS)
            info = await asyncio.to_thread(runs.get_run, store, info.id)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@router.post("/{run}/cancel")
def cancel_run(run: str, who: Editor, store: StoreDep) -> dict[str, Any]:
    return run_json(runs.cancel_run(store, run, actor=who.actor))


@router.post("/{run}/resume")
def resume_run(run: str, body: RunControl, who: Editor, store: StoreDep) -> dict[str, Any]:
    info = runs.resume_run(store, run, workers=body.workers, retry_failed=body.retry_failed, actor=who.actor)
    return run_json(info)


@router.delete("/{run}")
def delete_run(run: str, who: Editor, store: StoreDep) -> dict[str, Any]:
    return runs.delete_run(store, run, actor=who.actor).to_json()


@router.get("/{run}/history")
def run_history(run: str, who: Viewer, store: StoreDep, limit: int = Query(200, ge=1, le=1000)) -> list[Any]:
    run_id = runs.get_run(store, run).id
    return [event.to_json() for event in history.events(store, run_id=run_id, limit=limit)]
