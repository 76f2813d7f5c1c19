"""Images and thumbnails by sample id: the client never names a file."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse

from verilabel.server.api.deps import CacheDep, StoreDep
from verilabel.server.auth import Viewer
from verilabel.server.media import MediaFile, sample_file, thumbnail

router = APIRouter(prefix="/samples", tags=["media"])
SampleId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def file_response(media: MediaFile, max_age: int = 3600) -> FileResponse:
    """The file with its type stated (never sniffed), an ETag that changes with it, and range requests."""
    return FileResponse(
        media.path,
        media_type=media.media_type,
        headers={
            "ETag": media.etag,
            "Cache-Control": f"private, max-age={max_age}",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": "inline",
        },
    )


@router.get("/{sample_id}/image", response_class=FileResponse)
def image(sample_id: SampleId, who: Viewer, store: StoreDep, cache: CacheDep) -> FileResponse:
    return file_response(sample_file(store, sample_id, cache))


@router.get("/{sample_id}/thumbnail", response_class=FileResponse)
def sample_thumbnail(
    sample_id: SampleId,
    who: Viewer,
    store: StoreDep,
    cache: CacheDep,
    size: int = Query(256, description="128, 256 or 512"),
) -> FileResponse:
    return file_response(thumbnail(store, cache, sample_id, size), max_age=86400)
