"""``verilabel models``: the catalogue."""

from __future__ import annotations

import typer

from verilabel.cli.output import JSON_OPTION_HELP, console, escape, print_json


def list_models(
    task: str | None = typer.Option(None, "--task", help="classification, detection, segmentation or keypoints."),
    zero_shot: bool | None = typer.Option(None, "--zero-shot/--fixed", help="Only zero-shot / fixed-vocabulary."),
    available: bool = typer.Option(False, "--available", help="Only models that run here with no download."),
    vocabulary: bool = typer.Option(False, "--vocabulary", help="Show each fixed model's vocabulary (its classes)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """List the model catalogue (and models registered by plugins)."""
    from verilabel.errors import ConfigError
    from verilabel.models.interface import TASKS
    from verilabel.models.registry import catalogue, unavailable_because

    if task is not None and task not in TASKS:
        raise ConfigError("task", f"{task!r} is not a task; choose one of {', '.join(TASKS)}")
    rows = []
    for entry in catalogue():
        if (task and task not in entry.tasks) or (zero_shot is not None and entry.zero_shot != zero_shot):
            continue
        why = unavailable_because(entry)
        if available and why is not None:
            continue
        rows.append((entry, why))
    if as_json:
        print_json(
            [entry.to_json(available=why is None, vocabulary=vocabulary) | {"missing": why} for entry, why in rows]
        )
        return
    from rich.table import Table

    table = Table("name", "family", "tasks", "type", "speed", "accuracy", "licence", "available")
    for entry, why in rows:
        table.add_row(
            entry.name,
            f"{entry.family} {entry.version}",
            ",".join(entry.tasks),
            "zero-shot" if entry.zero_shot else f"fixed ({len(entry.vocabulary)})",
            "*" * entry.speed,
            "*" * entry.accuracy,
            entry.licence,
            "[green]yes[/]" if why is None else f"[dim]no: {escape(why)}[/]",
        )
    console().print(table)
    if vocabulary:
        for entry, _ in rows:
            if entry.vocabulary:
                console().print(f"[bold]{entry.name}[/]: {escape(', '.join(entry.vocabulary))}", soft_wrap=True)
