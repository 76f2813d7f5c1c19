"""Printing for the CLI: JSON for scripts, rich tables for people, and the exit codes scripts rely on."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich loads when something is printed for people: --json output does without it
    from rich.console import Console

JSON_OPTION_HELP = "Print machine-readable JSON."

# Exit codes (documented in the README): 0 done, 1 error, 2 invalid option, 3 a run waited for did not finish
# well (error, cancelled or stalled), 130 interrupted.
EXIT_RUN_FAILED = 3


def console() -> Console:
    """Rich output. Into a file or a pipe, lines are not cut at 80 columns (scripts and logs grep them whole);
    tables still fit the width."""
    from rich.console import Console

    out = Console(highlight=False)
    out.soft_wrap = not out.is_terminal
    return out


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def err(message: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False).print(message)


def escape(text: str) -> str:
    """``text`` printed as is by rich, brackets included (``pip install 'verilabel[all]'``)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 class``, ``2 classes``, ``0 labels``."""
    if count == 1:
        return f"{count} {word}"
    return f"{count} {many or (word + 'es' if word.endswith(('s', 'x', 'ch', 'sh')) else word + 's')}"


def fitted_table(columns: list[tuple[str, bool]], rows: list[list[str]], *, minimum: int = 6) -> Any:
    """A rich table that fits the terminal without breaking what the next command needs: ``(header, keep)``
    columns with ``keep`` (ids, statuses, counts) always show whole; the others share the width left, each cut
    with an ellipsis when it must be, and the last of them are left out when even ``minimum`` characters each
    would not fit (rich alone would squeeze every column, ids included)."""
    from rich.table import Table

    natural = [max([len(header), *(len(row[i]) for row in rows)]) for i, (header, _) in enumerate(columns)]
    shown = list(range(len(columns)))
    while True:
        flexible = [i for i in shown if not columns[i][1]]
        overhead = 3 * len(shown) + 1  # a space either side of each cell, and the borders
        budget = console().width - overhead - sum(natural[i] for i in shown if columns[i][1])
        if budget >= minimum * len(flexible) or len(flexible) <= 1:
            break
        shown.remove(flexible[-1])
    caps: dict[int, int] = {}
    for position, i in enumerate(sorted(flexible, key=lambda i: natural[i])):  # narrow columns take what they need
        caps[i] = min(natural[i], max(minimum, budget // (len(flexible) - position)))
        budget -= caps[i]
    table = Table()
    for i in shown:
        header, keep = columns[i]
        if keep:
            table.add_column(header, no_wrap=True)
        else:
            table.add_column(header, no_wrap=True, overflow="ellipsis", max_width=caps[i])
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    return table
