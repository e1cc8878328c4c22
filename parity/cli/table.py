"""Tables on stdout through rich: a header, a dashed rule, one line per row when piped, nothing cut off;
and the verdict table of ``run``/``demo``/``pipeline``: a summary per model, then the detail per target."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.box import Box
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from parity.core.records import Check, Report

#: No borders, a dashed rule under the header, a space between columns: the same plain text in a
#: terminal, a pipe or a log file, and easy for scripts (and tests) to cut at the rule's dashes.
DASHED_HEAD = Box("    \n    \n -  \n    \n    \n    \n    \n    \n")
#: Width of the console a table is drawn on when stdout is not a terminal: wide enough that no row wraps.
PIPE_WIDTH = 100_000
#: Columns of the detail table of one model on one target (the model and the target are its heading).
DETAIL_COLUMNS = ("runtime", "output", "vs", "rows", "max_abs", "n_outside", "verdict")
#: Detail columns that hold short figures: never wrapped, right-aligned.
FIGURES = ("rows", "max_abs", "n_outside")


def stdout_console() -> Console:
    """A console on stdout: the terminal's width in a terminal, one line per row when piped."""
    console = Console(file=sys.stdout, highlight=False)
    if not console.is_terminal:
        console = Console(file=sys.stdout, highlight=False, width=PIPE_WIDTH)
    return console


def build_table(
    rows: Sequence[Mapping[str, object]], columns: Sequence[str], figures: Sequence[str] = ()
) -> Table:
    """A rich table of ``rows`` with ``columns`` as its headers, every cell as plain text (no markup).

    Parameters
    ----------
    rows : sequence of mappings
        One mapping per row; a column missing from a row is an empty cell.
    columns : sequence of str
        The headers, in order; also the keys read from each row.
    figures : sequence of str
        Columns of short figures: right-aligned and never wrapped.

    Returns
    -------
    rich.table.Table
        Cells fold rather than end in an ellipsis when a terminal is too narrow.
    """
    table = Table(box=DASHED_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold")
    for column in columns:
        if column in figures:
            table.add_column(column, justify="right", no_wrap=True)
        else:
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
    if rows:
        stdout_console().print(build_table(rows, columns))


def print_summary(console: Console, report: Report) -> None:
    """One model's summary: its verdict line, then each cell that did not pass, one line each.

    Parameters
    ----------
    console : rich.console.Console
    report : Report
        Each failing cell is shown as its verdict, then its cell, stage and reason (which wrap at words,
        under themselves, in a narrow terminal).
    """
    from parity.flows.summary import SUMMARY_CELLS, findings, headline

    console.print(Text(headline(report), overflow="fold"))
    found = findings(report)
    if not found:
        return
    grid = Table.grid(padding=(0, 2, 0, 0), pad_edge=False)
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for f in found[:SUMMARY_CELLS]:
        grid.add_row(Text(f"  {f.verdict}"), Text(f.line()))
    if len(found) > SUMMARY_CELLS:
        grid.add_row(Text("  …"), Text(f"and {len(found) - SUMMARY_CELLS} more (see the detail below)"))
    console.print(grid)


def detail_rows(checks: Sequence[Check]) -> list[dict[str, str]]:
    """The rows of a detail table: a witness runtime says so; figures as short strings."""
    from parity.core.records import Role
    from parity.flows.summary import compared_with
    from parity.validators.report import fmt_float

    return [
        {
            "runtime": f"{c.format}/{c.runtime}" + (" (witness)" if c.role is Role.WITNESS else ""),
            "output": c.output,
            "vs": compared_with(c),
            "rows": str(c.rows),
            "max_abs": fmt_float(c.max_abs),
            "n_outside": str(c.n_outside),
            "verdict": str(c.verdict),
        }
        for c in checks
    ]


def detail_heading(report: Report, target: str) -> str:
    """``iris-lr:1 on linux-x86_64 (required)``, or ``iris-lr:1 (all targets)`` for the rows of no one
    target (a conversion that produced no artifact)."""
    model = f"{report.name}:{report.version}"
    if target == "*":
        return f"{model} (all targets)"
    entry = report.targets.get(target)
    required = entry.required if entry else any(c.required for c in report.checks if c.target == target)
    return f"{model} on {target} ({'required' if required else 'optional'})"


def print_verdicts(reports: Sequence[Report], console: Console | None = None) -> None:
    """Print the verdict table: every model's summary first, then each model's detail, one table per target.

    Parameters
    ----------
    reports : sequence of Report
        As the sweep returned them (a crashed validation has no checks: its summary says why).
    console : rich.console.Console, optional
        Where to print; default :func:`stdout_console`.
    """
    if not reports:
        return
    console = console or stdout_console()
    for report in reports:
        print_summary(console, report)
    for report in reports:
        targets = list(dict.fromkeys(c.target for c in report.checks))
        for target in sorted(targets, key=lambda t: t != "*"):  # conversions first, then the table's order
            console.print()
            console.print(Text(detail_heading(report, target), style="bold"))
            rows = detail_rows([c for c in report.checks if c.target == target])
            console.print(build_table(rows, DETAIL_COLUMNS, FIGURES))
