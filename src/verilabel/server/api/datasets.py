"""Datasets, their samples (a page at a time, with the labels of chosen fields) and their runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response

from verilabel import history
from verilabel.datasets import service as datasets
from verilabel.datasets.views import View, parse_view
from verilabel.errors import ConfigError
from verilabel.server.api.deps import MasksDep, StoreDep
from verilabel.server.auth import Editor, Viewer
from verilabel.server.media import mask_png
from verilabel.server.payloads import EmbeddingCreate, RunCreate, SampleTags, label_json, sample_json

router = APIRouter(prefix="/datasets", tags=["datasets"])


def refuse_python_model(model: str) -> None:
    """A ``python:`` reference would import a module named by a client: the CLI only."""
    if model.startswith("python:"):
        raise ConfigError(
            "model",
            "models given as python:module:factory run from the CLI only; to use yours here, register it as a "
            "plugin (the `verilabel.models` entry-point group, see docs/models.md)",
        )


@router.get("")
def list_datasets(who: Viewer, store: StoreDep) -> list[dict[str, Any]]:
    return [info.to_json() for info in datasets.list_datasets(store)]


@router.get("/{name}")
def show_dataset(name: str, who: Viewer, store: StoreDep) -> dict[str, Any]:
    return datasets.dataset_info(store, name).to_json()


@router.get("/{name}/samples")
def list_samples(
    name: str,
    who: Viewer,
    store: StoreDep,
    view: str | None = None,
    fields: str | None = Query(None, description="Comma-separated label fields whose labels come with each sample."),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=2**31 - 1),
) -> dict[str, Any]:
    """A page of the samples matching ``view`` (the CLI's view expressions), with their labels in ``fields``."""
    parsed = parse_view(view) if view else None
    page = datasets.samples(store, name, parsed, limit=limit, offset=offset)
    ids = [sample.id for sample in page]
    labels = {
        field: datasets.field_labels(store, name, field, ids)
        for field in ([f.strip() for f in fields.split(",") if f.strip()] if fields else [])
    }
    return {
        "total": datasets.count_samples(store, name, parsed),
        "offset": offset,
        "samples": [
            sample_json(
                s.id,
                s.path,
                s.width,
                s.height,
                tags=s.tags,
                unreadable=s.metadata.get("import_error"),
                labels={field: [label_json(label) for label in by_sample[s.id]] for field, by_sample in labels.items()},
            )
            for s in page
        ],
    }


@router.get("/{name}/labels/{label_id}/mask", response_class=Response)
def label_mask(name: str, label_id: str, who: Viewer, store: StoreDep) -> Response:
    """A dataset label's mask over its box, as a PNG (white, and transparent where the mask is not)."""
    png = mask_png(store, label_id, dataset_id=datasets.dataset_info(store, name).id)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})


@router.post("/{name}/tags")
def tag_samples(name: str, body: SampleTags, who: Editor, store: StoreDep) -> dict[str, int]:
    """Tag (or untag) the samples of a view or a selection: tags work in views afterwards (tags=needs-fix)."""
    view = parse_view(body.view) if body.view else View()
    if body.sample_ids is not None:
        view.ids = list(body.sample_ids)
    change = datasets.untag_samples if body.remove else datasets.tag_samples
    return {"untagged" if body.remove else "tagged": change(store, name, body.tags, view, actor=who.actor)}


@router.get("/{name}/runs")
def list_runs(name: str, who: Viewer, store: StoreDep) -> list[dict[str, Any]]:
    from verilabel.runs.service import list_runs

    return [info.to_json() for info in list_runs(store, name)]


@router.post("/{name}/runs", status_code=201)
def create_run(name: str, body: RunCreate, who: Editor, store: StoreDep, masks: MasksDep) -> dict[str, Any]:
    """Start a run: validated as the CLI validates it (errors name the field), generated in the background."""
    from verilabel.runs.config import RunRequest
    from verilabel.runs.service import create_run

    refuse_python_model(body.model)
    options = body.model_dump(exclude={"view", "sample_ids"})
    request = RunRequest(
        dataset=name,
        **options,
        view=parse_view(body.view, option="view") if body.view else None,
        sample_ids=body.sample_ids,
        mask_dir=str(masks) if body.task == "segmentation" else None,
    )
    return create_run(store, request, actor=who.actor).to_json()


@router.get("/{name}/export", response_class=FileResponse)
def export(
    name: str,
    who: Viewer,
    store: StoreDep,
    field: str,
    format: str = Query(
        "coco", description="coco, label-studio or cvat (YOLO and VOC folders link images: use the CLI)"
    ),
    view: str | None = None,
) -> FileResponse:
    """A label field as a file to download: COCO JSON, Label Studio tasks or CVAT XML. Written to a temporary
    folder on the server (never to a path the client names), streamed, then removed."""
    import shutil
    import tempfile

    from starlette.background import BackgroundTask

    from verilabel.datasets.export import export_field

    files = {"coco": "coco.json", "label-studio": "label-studio-tasks.json", "cvat": "cvat-annotations.xml"}
    if format not in files:
        raise ConfigError(
            "format", f"{format!r}: the app downloads coco, label-studio or cvat; YOLO and VOC come from the CLI"
        )
    folder = tempfile.mkdtemp(prefix="verilabel-export-")
    try:
        summary = export_field(store, name, field, format, folder, view=parse_view(view) if view else None)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    filename = f"{name}-{field}-{files[format]}"
    return FileResponse(
        summary.path,
        media_type="application/xml" if format == "cvat" else "application/json",
        filename=filename,
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )


@router.get("/{name}/history")
def dataset_history(name: str, who: Viewer, store: StoreDep, limit: int = Query(200, ge=1, le=1000)) -> list[Any]:
    dataset_id = datasets.dataset_info(store, name).id
    return [event.to_json() for event in history.events(store, dataset_id=dataset_id, limit=limit)]


@router.get("/{name}/embeddings")
def list_embeddings(
    name: str, who: Viewer, store: StoreDep, run: str | None = Query(None, description="Only this run's patches.")
) -> list[dict[str, Any]]:
    """The dataset's 2-D maps (``verilabel dataset embed``): of its samples, or of a run's label patches."""
    from verilabel.datasets.embeddings import list_embeddings

    return [info.to_json() for info in list_embeddings(store, name, run=run)]


@router.post("/{name}/embeddings", status_code=202)
def start_embeddings(name: str, body: EmbeddingCreate, who: Editor, store: StoreDep) -> dict[str, Any]:
    """Compute a map in the background (checked first: a wrong setting is a 422 naming it); the list then shows
    its points growing, ``ready`` once projected, or the ``error`` that stopped it."""
    from verilabel.datasets.embeddings import start_embeddings

    refuse_python_model(body.model)
    return start_embeddings(
        store, name, body.model, key=body.key, patches=body.patches, method=body.method, overwrite=body.overwrite
    ).to_json()


@router.get("/{name}/embeddings/{key}")
def embedding_map(
    name: str,
    key: str,
    who: Viewer,
    store: StoreDep,
    field: str | None = Query(None, description="Samples: colour each by its most confident label in this field."),
) -> dict[str, Any]:
    """The map's points, column by column: ids, x and y in [0, 1], class indices into ``class_names`` (-1: none);
    for patches also each label's confidence and whether it is promoted."""
    from verilabel.datasets.embeddings import embedding_map

    return embedding_map(store, name, key, field=field).to_json()


@router.delete("/{name}/embeddings/{key}", status_code=204)
def delete_embeddings(name: str, key: str, who: Editor, store: StoreDep) -> Response:
    from verilabel.datasets.embeddings import delete_embeddings

    delete_embeddings(store, name, key)
    return Response(status_code=204)
