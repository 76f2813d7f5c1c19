"""The ``verilabel`` command line. Heavy modules load inside commands so ``--help`` stays fast."""

from __future__ import annotations

import sys

import typer

# Every command: its name -> the module and attribute defining it (a sub-app, or a command function). A run of one
# command builds only that one: typer introspects every function it registers, ~25 of them in all.
COMMANDS = {
    "dataset": ("verilabel.cli.dataset", "app"),
    "run": ("verilabel.cli.run", "app"),
    "review": ("verilabel.cli.review", "app"),
    "tag": ("verilabel.cli.misc", "tag_app"),
    "export": ("verilabel.cli.misc", "export"),
    "models": ("verilabel.cli.models", "list_models"),
    "demo": ("verilabel.cli.demo", "demo"),
    "serve": ("verilabel.cli.serve", "serve"),
    "users": ("verilabel.cli.serve", "users_app"),
    "cache": ("verilabel.cli.cache", "app"),
    "labelstudio": ("verilabel.cli.labelstudio", "app"),
    "cvat": ("verilabel.cli.cvat", "app"),
}


def _print_version(value: bool) -> None:
    if value:
        from verilabel import __version__

        print(f"verilabel {__version__}")
        raise typer.Exit()


def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Global options."""


def build_app(only: str | None = None) -> typer.Typer:
    """The ``verilabel`` app: every command, or with ``only`` just that one."""
    import importlib

    app = typer.Typer(
        name="verilabel",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        help="Verified auto-labeling: generate labels with models in the background, review them, approve them.",
    )
    app.callback()(_root)
    for name, (module, attribute) in COMMANDS.items():
        if only is not None and name != only:
            continue
        target = getattr(importlib.import_module(module), attribute)
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=name)
        else:
            app.command(name)(target)
    return app


def _command_named(args: list[str]) -> str | None:
    """The command the arguments ask for, if they name one (global options may come first)."""
    first = next((arg for arg in args if not arg.startswith("-")), None)
    return first if first in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    """Entry point: errors are one line on stderr with a non-zero exit code; ``--debug`` shows tracebacks."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    from verilabel.errors import ConfigError, VerilabelError

    try:
        build_app(_command_named(args))(args=args, prog_name="verilabel")  # typer reports usage errors and exits
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
