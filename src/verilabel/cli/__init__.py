"""The ``verilabel`` command line. Heavy modules load inside commands so ``--help`` stays fast."""

from __future__ import annotations

import sys
from typing import Any

import typer
import typer.main

from verilabel.cli import dataset, demo, misc, models, review, run

app = typer.Typer(
    name="verilabel",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Verified auto-labeling: generate labels with models in the background, review them, approve them.",
)
app.add_typer(dataset.app, name="dataset")
app.add_typer(run.app, name="run")
app.add_typer(review.app, name="review")
app.add_typer(misc.tag_app, name="tag")
app.command("export")(misc.export)
app.command("models")(models.list_models)
app.command("demo")(demo.demo)


def _print_version(value: bool) -> None:
    if value:
        from verilabel import __version__

        print(f"verilabel {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Global options."""


def command() -> Any:
    """The click command behind ``app``, with flags shown as flags: typer labels every boolean flag ``<bool>``
    in help, where click users expect the flag alone (``--json  Print machine-readable JSON.``)."""
    root = typer.main.get_command(app)
    pending = [root]
    while pending:
        current = pending.pop()
        helper = current.get_help_option(typer.Context(current))
        for param in [*current.params, *([helper] if helper is not None else [])]:
            if getattr(param, "is_flag", False):
                param.metavar = ""
        pending.extend(getattr(current, "commands", {}).values())
    return root


def main(argv: list[str] | None = None) -> int:
    """Entry point: errors are one line on stderr with a non-zero exit code; ``--debug`` shows tracebacks."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    from verilabel.errors import ConfigError, VerilabelError

    try:
        command()(args=args, prog_name="verilabel")  # typer reports usage errors itself and exits
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except ConfigError as exc:
        if debug:
            raise
        print(f"error: invalid {exc.field}: {exc.reason}", file=sys.stderr)
        return 2
    except VerilabelError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        print(
            f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


def run_main() -> None:
    sys.exit(main())
