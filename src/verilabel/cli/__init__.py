"""The ``verilabel`` command line. Heavy modules load inside commands so ``--help`` stays fast."""

from __future__ import annotations

import sys

import typer

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


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    """Global options."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: errors are one line on stderr with a non-zero exit code; ``--debug`` shows tracebacks."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    from verilabel.errors import ConfigError, VerilabelError

    try:
        app(args=args, prog_name="verilabel")  # typer reports usage errors itself and exits
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
