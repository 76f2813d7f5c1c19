"""``verilabel cvat``: verilabel's models in CVAT (the cvat-sdk function module is ``verilabel.integrations.cvat``)."""

from __future__ import annotations

from pathlib import Path

import typer

from verilabel.cli.output import console, escape

app = typer.Typer(
    no_args_is_help=True,
    help="verilabel's models in CVAT: a nuclio function for its Models page (for cvat-cli's auto-annotate, "
    "use --function-module verilabel.integrations.cvat).",
)


@app.command("nuclio")
def nuclio(
    model: str = typer.Argument(..., help="Catalogue name (see `verilabel models`)."),
    out: Path = typer.Option(..., "--out", help="Folder for function.yaml and main.py."),
    classes: str = typer.Option("", "--classes", help="Comma-separated classes (default: the model's vocabulary)."),
    weights: str | None = typer.Option(None, "--weights", help="Weights file (copied into the function) or hub id."),
    task: str | None = typer.Option(None, "--task", help="detection, segmentation, classification or keypoints."),
    keypoints: str = typer.Option("", "--keypoints", help="A keypoint model's point names, in order."),
    gpu: bool = typer.Option(False, "--gpu", help="A GPU function (function-gpu.yaml, CUDA image, one GPU)."),
    name: str | None = typer.Option(None, "--name", help="The function's name (default: verilabel-MODEL)."),
) -> None:
    """Write a nuclio function that runs MODEL for CVAT's automatic annotation; deploy it with CVAT's
    serverless tools (`nuctl deploy --path OUT` or serverless/deploy_cpu.sh OUT)."""
    from verilabel.integrations.cvat import Plan
    from verilabel.integrations.nuclio import write_function

    plan = Plan.of(model, classes=classes, weights=weights, task=task, keypoints=keypoints)
    files = write_function(plan, out, weights=weights, gpu=gpu, name=name)
    console().print(
        f"nuclio function for [bold]{escape(model)}[/] ({plan.task}, {len(plan.labels)} labels): "
        + ", ".join(escape(str(f)) for f in files)
    )
    console().print(f"deploy: nuctl deploy --project-name cvat --path {escape(str(out))} --platform local")
