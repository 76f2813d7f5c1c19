"""``verilabel labelstudio``: verilabel's models inside Label Studio, and labels to and from its projects."""

from __future__ import annotations

import typer

from verilabel.cli.output import JSON_OPTION_HELP, console, escape, plural, print_json

app = typer.Typer(
    no_args_is_help=True,
    help="Serve verilabel's models to Label Studio as its ML backend; push labels to a project, pull its annotations.",
)
URL_OPTION = typer.Option(..., "--url", envvar="LABEL_STUDIO_URL", help="Label Studio's address (LABEL_STUDIO_URL).")
TOKEN_OPTION = typer.Option(
    ...,
    "--token",
    envvar="LABEL_STUDIO_API_KEY",
    help="Access token (Account & Settings > Access Token; LABEL_STUDIO_API_KEY).",
)
PROJECT_OPTION = typer.Option(..., "--project", help="The project's id (in its URL: /projects/ID).")


@app.command("backend")
def backend(
    model: str = typer.Option(
        ..., "--model", help="Catalogue name or python:pkg.mod:factory (a control's `model=` attribute picks another)."
    ),
    classes: str = typer.Option(
        "", "--classes", help="Comma-separated model classes it may answer with (default: all the labels match)."
    ),
    alias: list[str] = typer.Option(
        [], "--alias", help="LABEL=MODEL_CLASS[,...] for labels without predicted_values; repeatable."
    ),
    negative: list[str] = typer.Option(
        [],
        "--negative",
        help="A prompt that suppresses look-alikes (zero-shot), for every control (besides its model_negatives); "
        "repeatable, comma-separated.",
    ),
    weights: str | None = typer.Option(None, "--weights", help="Local weights file/folder or another hub id."),
    min_confidence: float | None = typer.Option(
        None, "--min-confidence", help="Floor of the predictions (a control's model_score_threshold overrides it)."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    runtime: str = typer.Option("auto", "--runtime", help="auto, torch or onnx (see `run create --help`)."),
    model_option: list[str] = typer.Option([], "--model-option", help="KEY=VALUE passed to the model; repeatable."),
    allow_model: list[str] = typer.Option(
        [], "--allow-model", help="A python:pkg.mod:factory model a control's model= may name; repeatable."
    ),
    storage: list[str] = typer.Option(
        [],
        "--storage",
        help="An object-storage prefix (s3://bucket/dir/) whose task URIs it reads with its own credentials; "
        "repeatable (for projects on cloud storage without pre-signed URLs).",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (Label Studio must reach it)."),
    port: int = typer.Option(9090, "--port", help="Port to listen on."),
) -> None:
    """Run Label Studio's ML backend: connect it in the project's Settings > Model with this server's URL.
    Label Studio asks for predictions of its tasks; models load once and stay loaded."""
    import uvicorn

    from verilabel.cli.run import _model_options
    from verilabel.integrations.label_studio_backend import Backend, create_app
    from verilabel.models.mapping import parse_aliases, parse_negatives

    served = Backend(
        model,
        weights=weights,
        device=device,
        min_confidence=min_confidence,
        options=_model_options(model_option),
        runtime=runtime,
        allowed=allow_model,
        classes=[c.strip() for c in classes.split(",") if c.strip()],
        aliases=parse_aliases(alias),
        negatives=parse_negatives(negative),
        storage=storage,
    )
    typer.echo(
        f"Label Studio ML backend for {model} at http://{host}:{port} (connect it in the project's Settings > Model)"
    )
    uvicorn.run(create_app(served), host=host, port=port, log_level="warning")


@app.command("push")
def push(
    source: str = typer.Argument(..., help="A run (id, name or field), or with --field a dataset."),
    field: str | None = typer.Option(None, "--field", help="Push this field of the dataset SOURCE."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    project: int = PROJECT_OPTION,
    model_version: str | None = typer.Option(
        None, "--model-version", help="Name of the predictions in Label Studio (default: the model and run)."
    ),
    chunk: int = typer.Option(5000, "--chunk", min=1, help="Predictions per request."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Upload labels as predictions of the project's tasks (matched by image file), in chunks. A run under
    review sends all its labels, for people to correct; started again, a push resumes where it stopped."""
    from verilabel.cli.dataset import _with_progress
    from verilabel.integrations import label_studio_sync as sync
    from verilabel.integrations.label_studio_api import LabelStudioClient
    from verilabel.store import Store

    store = Store.open()
    client = LabelStudioClient(url, token)
    if field is None:
        labels, default_version = sync.push_source(store, run=source)
    else:
        labels, default_version = sync.push_source(store, dataset=source, field_name=field)
    version = model_version or default_version
    summary = _with_progress(
        "pushing", lambda progress: sync.push(store, client, project, labels, version, chunk=chunk, progress=progress)
    )
    if as_json:
        print_json(summary.to_json())
        return
    out = console()
    out.print(
        f"project {project}: {plural(summary.predictions, 'prediction')} created ({summary.regions} regions) as "
        f"[bold]{escape(version)}[/]" + (f", {summary.already} sent by an earlier push" if summary.already else "")
    )
    if summary.unmatched:
        out.print(
            f"[yellow]{plural(len(summary.unmatched), 'sample')} with labels match no task[/] of the project's "
            f"{summary.tasks} (import their images into it first), e.g. " + escape(", ".join(summary.unmatched[:3]))
        )
    if summary.sizeless:
        out.print(f"[yellow]{plural(summary.sizeless, 'sample')} left out: their image could not be read[/]")


@app.command("pull")
def pull(
    dataset: str = typer.Argument(..., help="The dataset whose samples the project's tasks show."),
    field: str = typer.Option(..., "--field", help="New label field for the annotations."),
    url: str = URL_OPTION,
    token: str = TOKEN_OPTION,
    project: int = PROJECT_OPTION,
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Import the project's annotations (who and when as label attributes) into a new field of the dataset,
    each task matched to its sample by image file."""
    from verilabel.integrations import label_studio_sync as sync
    from verilabel.integrations.label_studio_api import LabelStudioClient
    from verilabel.store import Store

    summary = sync.pull(Store.open(), LabelStudioClient(url, token), project, dataset, field)
    if as_json:
        print_json(summary.to_json())
        return
    out = console()
    out.print(f"[bold]{escape(dataset)}[/]: {plural(summary.labels, 'label')} pulled into field {escape(field)}")
    if summary.unmatched:
        out.print(
            f"[yellow]{plural(len(summary.unmatched), 'annotated task')} match no sample[/] (add their images to the "
            "dataset first), e.g. " + escape(", ".join(summary.unmatched[:3]))
        )
    if summary.skipped:
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(summary.skipped.items()))
        out.print(f"[yellow]not imported[/] (kinds of regions verilabel does not take): {escape(kinds)}")
