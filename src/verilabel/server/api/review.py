"""Review of a run: class table, confidence histogram, the grid's samples, labels and their patches; promote, undo,
tag, approve."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, Response

from verilabel.datasets.service import samples_by_id
from verilabel.review import service as review
from verilabel.server.api.deps import CacheDep, StoreDep
from verilabel.server.api.media import file_response
from verilabel.server.auth import Editor, Viewer
from verilabel.server.media import mask_png, patch
from verilabel.server.payloads import ApproveRequest, LabelFilter, TagRequest, label_json, sample_json

router = APIRouter(prefix="/runs", tags=["review"])
IMMUTABLE = {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"}


def label_filter(
    min_confidence: float | None = Query(None, ge=0, le=1),
    max_confidence: float | None = Query(None, ge=0, le=1),
    below: float | None = Query(None, ge=0, le=1, description="Only labels with a confidence under this."),
    classes: list[str] = Query([], description="Only these classes; repeat the parameter for several."),
    tags: list[str] = Query([], description="Only labels with one of these tags."),
    view: str | None = Query(None, description="Only samples matching this view expression."),
) -> LabelFilter:
    return LabelFilter(
        min_confidence=min_confidence,
        max_confidence=max_confidence,
        below=below,
        classes=classes,
        tags=tags,
        view=view,
    )


FilterDep = Annotated[LabelFilter, Depends(label_filter)]


@router.get("/{run}/classes")
def class_table(run: str, who: Viewer, store: StoreDep, filter: FilterDep, approval: bool = False) -> list[Any]:
    """Per class: instances matching the filter of the set's total, and their mean confidence."""
    return [row.to_json() for row in review.class_table(store, run, filter.query(), approval=approval)]


@router.get("/{run}/histogram")
def histogram(run: str, who: Viewer, store: StoreDep, approval: bool = False) -> dict[str, Any]:
    """Per class, counts and confidence sums in 100 bins: the app's slider computes the class table from it."""
    return review.histogram(store, run, approval=approval).to_json()


@router.get("/{run}/samples")
def samples(
    run: str,
    who: Viewer,
    store: StoreDep,
    filter: FilterDep,
    approval: bool = False,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=2**31 - 1),
) -> dict[str, Any]:
    """A page of the samples with labels matching the filter, each with those labels (the review grid); ``more``
    says whether another page follows."""
    more, page = review.sample_page(store, run, filter.query(), approval=approval, limit=limit, offset=offset)
    found = samples_by_id(store, [sample_id for sample_id, _ in page])
    return {
        "more": more,
        "offset": offset,
        "samples": [
            sample_json(
                sample_id,
                found[sample_id].path,
                found[sample_id].width,
                found[sample_id].height,
                tags=found[sample_id].tags,
                labels=[label_json(label) for label in labels],
            )
            for sample_id, labels in page
            if sample_id in found
        ],
    }


@router.get("/{run}/labels")
def labels(
    run: str,
    who: Viewer,
    store: StoreDep,
    filter: FilterDep,
    approval: bool = False,
    sort: str = Query("-confidence", description="confidence, -confidence, id or sample"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=2**31 - 1),
) -> list[dict[str, Any]]:
    """A page of labels (the patches view), each with its sample."""
    page = review.list_labels(store, run, filter.query(), approval=approval, limit=limit, offset=offset, sort=sort)
    found = samples_by_id(store, list({sample_id for sample_id, _ in page}))
    return [
        label_json(label)
        | {"sample": sample_json(sample_id, found[sample_id].path, found[sample_id].width, found[sample_id].height)}
        for sample_id, label in page
        if sample_id in found
    ]


@router.get("/{run}/labels/{label_id}/patch", response_class=FileResponse)
def label_patch(
    run: str, label_id: str, who: Viewer, store: StoreDep, cache: CacheDep, size: int = Query(256, ge=32, le=512)
) -> FileResponse:
    from verilabel.runs.service import get_run

    return file_response(patch(store, cache, get_run(store, run).id, label_id, size))


@router.get("/{run}/labels/{label_id}/mask", response_class=Response)
def label_mask(run: str, label_id: str, who: Viewer, store: StoreDep) -> Response:
    """The label's mask over its box, as a PNG (white, and transparent where the mask is not)."""
    from verilabel.runs.service import get_run

    png = mask_png(store, label_id, run_id=get_run(store, run).id)
    return Response(png, media_type="image/png", headers=IMMUTABLE)


@router.post("/{run}/promote")
def promote(run: str, body: LabelFilter, who: Editor, store: StoreDep) -> dict[str, int]:
    return {"promoted": review.promote(store, run, body.query(), actor=who.actor)}


@router.post("/{run}/undo")
def undo(run: str, body: LabelFilter, who: Editor, store: StoreDep) -> dict[str, int]:
    return {"undone": review.undo(store, run, body.query(), actor=who.actor)}


@router.post("/{run}/tag")
def tag(run: str, body: TagRequest, who: Editor, store: StoreDep) -> dict[str, int]:
    changed = review.tag_labels(store, run, body.tags, body.filter.query(), remove=body.remove, actor=who.actor)
    return {"untagged" if body.remove else "tagged": changed}


@router.post("/{run}/approve")
def approve(run: str, body: ApproveRequest, who: Editor, store: StoreDep) -> dict[str, Any]:
    return review.approve(store, run, allow_empty=body.allow_empty, actor=who.actor).to_json()
