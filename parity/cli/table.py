"""Tables on stdout through rich: a header, a dashed rule, one line per row when piped, nothing cut off."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from rich.box import Box
from rich.console import Console
from rich.table import Table
from rich.text import Text

#: No borders, a dashed rule under the header, a space between columns: the same plain text in a
#: terminal, a pipe or a log file, and easy for scripts (and tests) to cut at the rule's dashes.
DASHED_HEAD = Box("    \n    \n -  \n    \n    \n    \n    \n    \n")
#: Width of the console a table is drawn on when stdout is not a terminal: wide enough that no row wraps.
PIPE_WIDTH = 100_000


def build_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> Table:
    """A rich table of ``rows`` with ``columns`` as its headers, every cell as plain text (no markup).

    Parameters
    ----------
    rows : sequence of mappings
        One mapping per row; a column missing from a row is an empty cell.
    columns : sequence of str
        The headers, in order; also the keys read from each row.

    Returns
    -------
    rich.table.Table
        Cells fold rather than end in an ellipsis when a terminal is too narrow.
    """
    table = Table(box=DASHED_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text(str(row.get(column, ""))) for column in columns))
    return table


def print_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> None:
    """Print :func:`build_table` to stdout; print nothing when there are no rows.

    Parameters
    ----------
    rows : sequence of mappings
    columns : sequence of str
    """
    if not rows:
        return
    console = Console(file=sys.stdout, highlight=False)
    if not console.is_terminal:
        console = Console(file=sys.stdout, highlight=False, width=PIPE_WIDTH)
    console.print(build_table(rows, columns))
