"""``verilabel labelstudio``: verilabel's models inside Label Studio."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Serve verilabel's models to Label Studio as its ML backend.")


@app.command("backend")
def backend(
    model: str = typer.Option(
        ..., "--model", help="Catalogue name or python:pkg.mod:factory (a control's `model=` attribute picks another)."
    ),
    weights: str | None = typer.Option(None, "--weights", help="Local weights file/folder or another hub id."),
    min_confidence: float | None = typer.Option(
        None, "--min-confidence", help="Floor of the predictions (a control's model_score_threshold overrides it)."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    runtime: str = typer.Option("auto", "--runtime", help="auto, torch or onnx (see `run create --help`)."),
    model_option: list[str] = typer.Option([], "--model-option", help="KEY=VALUE passed to the model; repeatable."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (Label Studio must reach it)."),
    port: int = typer.Option(9090, "--port", help="Port to listen on."),
) -> None:
    """Run Label Studio's ML backend: connect it in the project's Settings > Model with this server's URL.
    Label Studio asks for predictions of its tasks; models load once and stay loaded."""
    import uvicorn

    from verilabel.cli.run import _model_options
    from verilabel.integrations.label_studio_backend import Backend, create_app

    served = Backend(
        model,
        weights=weights,
        device=device,
        min_confidence=min_confidence,
        options=_model_options(model_option),
        runtime=runtime,
    )
    typer.echo(
        f"Label Studio ML backend for {model} at http://{host}:{port} (connect it in the project's Settings > Model)"
    )
    uvicorn.run(create_app(served), host=host, port=port, log_level="warning")
