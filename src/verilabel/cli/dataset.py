"""``verilabel dataset ...``: create datasets from folders, COCO or YOLO; list and show them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from verilabel.cli.output import JSON_OPTION_HELP, console, escape, fitted_table, plural, print_json

if TYPE_CHECKING:
    from verilabel.datasets.service import ImportSummary

app = typer.Typer(no_args_is_help=True, help="Create, list and inspect datasets.")


def _with_progress(label: str, work: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True, console=console()
    ) as bar:
        task = bar.add_task(label, total=None)
        return work(lambda done, total: bar.update(task, completed=done, total=total))


def _counting(progress: Any) -> Any:
    """An ``on_batch(n)`` callback that moves ``_with_progress``'s bar on by ``n`` (no total known)."""
    done = [0]

    def step(n: int) -> None:
        done[0] += n
        progress(done[0], None)

    return step


def _print_failures(failed: list[tuple[str, str]], what: str) -> None:
    """The first few (path, why) failures of a command, and how many more."""
    out = console()
    for path, error in failed[:5]:
        out.print(f"[yellow]{what}[/] {escape(path)}: {escape(error)}")
    if len(failed) > 5:
        out.print(f"... and {len(failed) - 5} more")


def _report(summary: ImportSummary, as_json: bool) -> None:
    if as_json:
        print_json(summary.to_json())
        return
    out = console()
    out.print(
        f"[bold]{summary.dataset}[/]: {summary.added} samples added, {summary.already_present} already "
        f"present, {summary.labels} labels imported"
    )
    if summary.unreadable:
        out.print(
            f"[yellow]{plural(len(summary.unreadable), 'file')} cannot be decoded as they are[/] (unreadable, or "
            "above the decompression-bomb limit; kept as samples, runs record them as failures; `verilabel dataset "
            "show` gives the reason), e.g. " + escape(", ".join(summary.unreadable[:3]))
        )
    if summary.skipped:
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(summary.skipped.items()))
        out.print(f"[yellow]not imported[/] (kinds of regions this import does not take yet): {escape(kinds)}")


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Dataset name."),
    from_dir: str | None = typer.Option(
        None, "--from-dir", help="Folder of images (searched recursively), or a bucket prefix: s3://, gs://, az://."
    ),
    from_list: Path | None = typer.Option(
        None, "--from-list", help="A text file of images, one path or URI (https://, s3://...) per line."
    ),
    from_coco: Path | None = typer.Option(None, "--from-coco", help="COCO detection JSON file."),
    from_label_studio: Path | None = typer.Option(
        None, "--from-label-studio", help="A Label Studio project's JSON export: its annotations become labels."
    ),
    images: Path | None = typer.Option(
        None,
        "--images",
        help="Image folder of --from-coco, --from-cvat or --from-label-studio (Label Studio's local files: its "
        "document root).",
    ),
    from_yolo: Path | None = typer.Option(None, "--from-yolo", help="YOLO dataset root (data.yaml, images/, labels/)."),
    from_voc: Path | None = typer.Option(
        None, "--from-voc", help="Pascal VOC root (Annotations/, JPEGImages/), or a folder of XML files beside images."
    ),
    from_cvat: Path | None = typer.Option(
        None, "--from-cvat", help="CVAT for images 1.1 XML (annotations.xml); image names relative to --images."
    ),
    from_fiftyone: str | None = typer.Option(
        None, "--from-fiftyone", help="A FiftyOne dataset's name (needs `pip install 'verilabel[fiftyone]'`)."
    ),
    fiftyone_field: str = typer.Option(
        "ground_truth", "--fiftyone-field", help="The label field of --from-fiftyone to import."
    ),
    field: str = typer.Option("ground_truth", "--field", help="Label field for the imported labels."),
    exist_ok: bool = typer.Option(False, "--exist-ok", help="Add to the dataset if it already exists."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Create a dataset (media files stay where they are)."""
    from verilabel.datasets import service
    from verilabel.errors import ConfigError
    from verilabel.store import Store

    sources = [
        s
        for s in (from_dir, from_list, from_coco, from_yolo, from_voc, from_label_studio, from_cvat, from_fiftyone)
        if s is not None
    ]
    if len(sources) > 1:
        raise ConfigError(
            "source",
            "pass only one of --from-dir, --from-list, --from-coco, --from-yolo, --from-voc, --from-label-studio, "
            "--from-cvat, --from-fiftyone",
        )
    if from_coco is not None and images is None:
        raise ConfigError("images", "--from-coco needs --images DIR (the folder its file_name values are in)")
    if from_cvat is not None and images is None:
        raise ConfigError("images", "--from-cvat needs --images DIR (the folder its image names are relative to)")
    if from_label_studio is not None and images is None:
        raise ConfigError("images", "--from-label-studio needs --images DIR (the folder that holds the task images)")
    store = Store.open()
    if not sources:
        info = service.create_dataset(store, name, exist_ok=exist_ok)
        if as_json:
            print_json(info.to_json())
        else:
            console().print(
                f"created empty dataset [bold]{escape(name)}[/]; add images with "
                f"`verilabel dataset add {escape(name)} --from-dir DIR`"
            )
        return
    # The dataset is made in the import's own transaction: an import that fails leaves no empty dataset behind.
    exists = service.dataset_exists(store, name)
    if exists and not exist_ok:
        service.create_dataset(store, name)  # raises the "already exists" error, with its fix
    create = not exists
    summary: ImportSummary
    if from_dir is not None:
        summary = _with_progress(
            "probing images", lambda p: service.add_images(store, name, from_dir, create=create, progress=p)
        )
    elif from_list is not None:
        summary = _with_progress(
            "probing images", lambda p: service.add_listed(store, name, from_list, create=create, progress=p)
        )
    elif from_coco is not None:
        assert images is not None
        summary = service.import_coco(store, name, from_coco, images, field_name=field, create=create)
    elif from_label_studio is not None:
        assert images is not None
        summary = service.import_label_studio(store, name, from_label_studio, images, field_name=field, create=create)
    elif from_fiftyone is not None:
        summary = service.import_fiftyone(store, name, from_fiftyone, fiftyone_field, field_name=field, create=create)
    elif from_cvat is not None:
        assert images is not None
        summary = service.import_cvat(store, name, from_cvat, images, field_name=field, create=create)
    elif from_yolo is not None:
        summary = _with_progress(
            "probing images",
            lambda p: service.import_yolo(store, name, from_yolo, field_name=field, create=create, progress=p),
        )
    else:
        assert from_voc is not None
        summary = service.import_voc(store, name, from_voc, field_name=field, create=create)
    _report(summary, as_json)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Dataset name."),
    from_dir: str = typer.Option(
        ..., "--from-dir", help="Folder of images or bucket prefix; only images not yet in the dataset are added."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Add the new images of a folder to a dataset."""
    from verilabel.datasets import service
    from verilabel.store import Store

    store = Store.open()
    _report(_with_progress("probing images", lambda p: service.add_images(store, name, from_dir, progress=p)), as_json)


@app.command("caption")
def caption(
    name: str = typer.Argument(..., help="Dataset name."),
    model: str = typer.Option("florence-2-base", "--model", help="A captioning model (Florence-2)."),
    detail: str = typer.Option("caption", "--detail", help="caption, detailed or more_detailed."),
    key: str = typer.Option("caption", "--key", help="The metadata key the caption goes under."),
    weights: str | None = typer.Option(None, "--weights", help="Local weights folder or another hub id."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per model call (model default)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Caption samples that already have one again."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Write a caption of each sample into its metadata (resumable: captioned samples are skipped)."""
    from verilabel.datasets.captions import caption_dataset
    from verilabel.store import Store

    store = Store.open()

    def work(progress: Any) -> Any:
        return caption_dataset(
            store,
            name,
            model,
            key=key,
            detail=detail,
            weights=weights,
            device=device,
            overwrite=overwrite,
            batch_size=batch_size,
            on_batch=_counting(progress),
        )

    summary = _with_progress("captioning", work)
    if as_json:
        print_json(summary.to_json())
        return
    console().print(
        f"[bold]{escape(name)}[/]: {summary.captioned} captioned, {summary.skipped} already had one ({key})"
    )
    _print_failures(summary.failed, "not captioned")


@app.command("embed")
def embed(
    name: str = typer.Argument(..., help="Dataset name."),
    model: str = typer.Option(
        ..., "--model", help="A model that embeds images: CLIP, SigLIP, OpenCLIP or an ImageNet classifier."
    ),
    patches: str | None = typer.Option(
        None, "--patches", help="Embed the crops of this run's labels (default: the whole samples)."
    ),
    key: str | None = typer.Option(None, "--key", help="Name of the map (default: samples, or RUN-patches)."),
    method: str = typer.Option("pca", "--method", help="2-D projection: pca, or umap (verilabel[umap])."),
    weights: str | None = typer.Option(None, "--weights", help="Local weights folder or another hub id."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per model call (model default)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Compute the map under KEY again from scratch."),
    executor: str = typer.Option("local", "--executor", help="local, or ray: shards as Ray tasks on a cluster."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Ray: auto, ray://HOST:PORT (default: local)."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Ray: shards embedded at once (default 1)."),
    gpus_per_worker: float | None = typer.Option(
        None, "--gpus-per-worker", min=0, help="Ray: GPUs per task (default: 1 where the cluster has GPUs)."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Embed samples (or a run's label patches) and project them to a 2-D map for the app's embeddings view
    (resumable: points embedded by an interrupted call are kept)."""
    from verilabel.datasets.embeddings import RayOptions, compute_embeddings
    from verilabel.store import Store

    store = Store.open()
    ray = None
    if executor == "ray" or any(v is not None for v in (ray_address, workers, gpus_per_worker)):
        ray = RayOptions(address=ray_address, workers=workers or 1, gpus_per_worker=gpus_per_worker)

    def work(progress: Any) -> Any:
        return compute_embeddings(
            store,
            name,
            model,
            key=key,
            patches=patches,
            method=method,
            weights=weights,
            device=device,
            batch_size=batch_size,
            overwrite=overwrite,
            on_batch=_counting(progress),
            executor=executor,
            ray=ray,
        )

    summary = _with_progress("embedding", work)
    if as_json:
        print_json(summary.to_json())
        return
    console().print(
        f"[bold]{escape(name)}[/]: {summary.embedded} embedded, {summary.skipped} kept from before, "
        f"{summary.projected} on the map {escape(summary.key)!r} ({method})"
    )
    _print_failures(summary.failed, "not embedded")


@app.command("embeddings")
def embeddings(
    name: str = typer.Argument(..., help="Dataset name."),
    delete: str | None = typer.Option(None, "--delete", help="Delete the map with this key."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """List the dataset's embedding maps (or delete one)."""
    from verilabel.datasets.embeddings import delete_embeddings, list_embeddings
    from verilabel.store import Store

    store = Store.open()
    if delete is not None:
        delete_embeddings(store, name, delete)
        if as_json:
            print_json({"deleted": delete})
        else:
            console().print(f"deleted the embeddings {escape(delete)!r} of {escape(name)}")
        return
    infos = list_embeddings(store, name)
    if as_json:
        print_json([info.to_json() for info in infos])
        return
    rows = [
        [
            info.key,
            info.kind + (f" of {info.run}" if info.run else ""),
            info.model,
            info.method,
            str(info.points) + ("" if info.ready else " (not projected: run embed again)"),
        ]
        for info in infos
    ]
    table = fitted_table([("key", True), ("of", False), ("model", False), ("method", True), ("points", True)], rows)
    console().print(table if infos else f"no embeddings yet: `verilabel dataset embed {escape(name)} --model MODEL`")


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP)) -> None:
    """List datasets."""
    from verilabel.datasets import service
    from verilabel.store import Store

    infos = service.list_datasets(Store.open())
    if as_json:
        print_json([i.to_json() for i in infos])
        return
    rows = [
        [info.name, str(info.samples), f"{info.created_at:%Y-%m-%d %H:%M}", ", ".join(info.fields) or "-"]
        for info in infos
    ]
    table = fitted_table([("name", True), ("samples", True), ("created", True), ("label fields", False)], rows)
    console().print(table if infos else "no datasets yet: `verilabel dataset create NAME --from-dir DIR`")


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Dataset name."),
    view: str | None = typer.Option(None, "--view", help="Only samples matching this view expression."),
    limit: int = typer.Option(10, "--limit", help="How many samples to list."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Show a dataset: counts, label fields, tags and its first samples."""
    from verilabel.datasets import service
    from verilabel.datasets.views import parse_view
    from verilabel.store import Store

    store = Store.open()
    info = service.dataset_info(store, name)
    parsed = parse_view(view) if view else None
    matching = len(service.sample_ids(store, name, parsed)) if parsed else info.samples
    rows = service.samples(store, name, parsed, limit=limit)
    if as_json:
        print_json({**info.to_json(), "matching": matching, "first_samples": [s.to_json() for s in rows]})
        return
    out = console()
    out.print(f"[bold]{info.name}[/]: {info.samples} samples" + (f", {matching} match the view" if parsed else ""))
    for field_name, meta in info.fields.items():
        out.print(f"  field [cyan]{escape(field_name)}[/] ({meta['kind']}): {escape(field_state(meta))}")
    if info.tags:
        out.print("  tags: " + ", ".join(f"{t} ({n})" for t, n in info.tags.items()))
    from rich.table import Table

    table = Table("id", "path", "size", "tags")
    for s in rows:
        table.add_row(str(s.id), s.path, f"{s.width}x{s.height}" if s.width else "unreadable", ",".join(s.tags))
    out.print(table)


def field_state(meta: dict[str, Any]) -> str:
    """Where a field's labels are: in the dataset, or still with the run that generates them."""
    labels = plural(meta["labels"], "label")
    status = meta.get("run_status")
    if status is None:
        return labels
    run = meta["run_name"]
    if status == "in_review":
        return (
            f"{plural(meta['run_labels'], 'label')} in review in run {run} ({meta['promoted']} promoted); "
            f"approving the run writes the promoted ones here"
        )
    if status in ("queued", "generating"):
        return f"run {run} is generating it: {plural(meta['run_labels'], 'label')} so far, in review when done"
    return f"reserved by run {run} ({status}); `verilabel run resume {run}` or `verilabel run delete {run} --yes`"


@app.command("delete")
def delete(name: str = typer.Argument(...), yes: bool = typer.Option(False, "--yes", help="Confirm.")) -> None:
    """Delete a dataset with its samples, labels and runs (media files are left alone)."""
    from verilabel.datasets import service
    from verilabel.errors import ConfigError
    from verilabel.store import Store

    if not yes:
        raise ConfigError("yes", f"deleting {name!r} removes its labels and runs: pass --yes to confirm")
    service.delete_dataset(Store.open(), name)
    console().print(f"deleted dataset {name}")
