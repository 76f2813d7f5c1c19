"""``verilabel models``: the catalogue."""

from __future__ import annotations

import typer

from verilabel.cli.output import JSON_OPTION_HELP, console, print_json


def list_models(
    task: str | None = typer.Option(None, "--task", help="classification, detection, segmentation or keypoints."),
    zero_shot: bool | None = typer.Option(None, "--zero-shot/--fixed", help="Only zero-shot / fixed-vocabulary."),
    available: bool = typer.Option(False, "--available", help="Only models that run here with no download."),
    vocabulary: bool = typer.Option(False, "--vocabulary", help="Include vocabularies in --json."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """List the model catalogue (and models registered by plugins)."""
    from rich.table import Table

    from verilabel.errors import ConfigError
    from verilabel.models.interface import TASKS
    from verilabel.models.registry import catalogue, is_available

    if task is not None and task not in TASKS:
        raise ConfigError("task", f"{task!r} is not a task; choose one of {', '.join(TASKS)}")
    rows = []
    for entry in catalogue():
        if (task and task not in entry.tasks) or (zero_shot is not None and entry.zero_shot != zero_shot):
            continue
        ok = is_available(entry)
        if available and not ok:
            continue
        rows.append((entry, ok))
    if as_json:
        print_json([entry.to_json(available=ok, vocabulary=vocabulary) for entry, ok in rows])
        return
    table = Table("name", "family", "tasks", "type", "speed", "accuracy", "licence", "available")
    for entry, ok in rows:
        table.add_row(
            entry.name,
            f"{entry.family} {entry.version}",
            ",".join(entry.tasks),
            "zero-shot" if entry.zero_shot else f"fixed ({len(entry.vocabulary)})",
            "*" * entry.speed,
            "*" * entry.accuracy,
            entry.licence,
            "[green]yes[/]" if ok else f"[dim]no: pip install 'verilabel[{entry.extra}]'[/]",
        )
    console().print(table)
