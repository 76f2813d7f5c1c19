"""``verilabel cache``: the ONNX exports kept under VERILABEL_HOME (see ``verilabel.models.runtimes``)."""

from __future__ import annotations

import typer

from verilabel.cli.output import JSON_OPTION_HELP, console, fitted_table, plural, print_json

app = typer.Typer(
    no_args_is_help=True,
    help="The models' ONNX exports, built once per model and weights and kept for the next runs (--runtime).",
)


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


@app.command("list")
def list_exports(as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP)) -> None:
    """Show the kept exports, newest first (an entry whose file no longer matches its hash is rebuilt when
    next used)."""
    from verilabel.models.runtimes.export_cache import cache_dir, entries

    found = entries()
    if as_json:
        print_json({"folder": str(cache_dir()), "exports": [entry.to_json() for entry in found]})
        return
    if not found:
        console().print(f"no exports in {cache_dir()}")
        return
    rows = [[entry.model, _size(entry.size), entry.created, "ok" if entry.valid else "corrupt"] for entry in found]
    columns = [("model", False), ("size", True), ("created", True), ("state", True)]
    console().print(fitted_table(columns, rows))
    console().print(f"{plural(len(found), 'export')}, {_size(sum(e.size for e in found))} in {cache_dir()}")


@app.command("clear")
def clear(
    yes: bool = typer.Option(False, "--yes", help="Confirm: exports are rebuilt when a run next needs them."),
    as_json: bool = typer.Option(False, "--json", help=JSON_OPTION_HELP),
) -> None:
    """Delete every kept export to free the disk space."""
    from verilabel.errors import ConfigError
    from verilabel.models.runtimes.export_cache import cache_dir, clear

    if not yes:
        raise ConfigError("yes", f"this deletes the exports in {cache_dir()} (rebuilt when needed): pass --yes")
    removed, freed = clear()
    if as_json:
        print_json({"files": removed, "bytes": freed})
    else:
        console().print(f"removed {removed} files, {_size(freed)} freed")
