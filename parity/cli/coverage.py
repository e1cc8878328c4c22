"""``parity coverage``: run the generated estimator matrix (:mod:`parity.validators.matrix`) and write
``docs/coverage.md``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from .exits import EXIT_FAILED, EXIT_OK
from .table import print_table

DEFAULT_OUT = "docs/coverage.md"
COLUMNS = ("estimator", "format", "parity", "cell", "reason")


def coverage(
    only: Annotated[
        list[str] | None, typer.Option("--only", metavar="NAME", help="only this matrix entry (repeatable)")
    ] = None,
    out: Annotated[
        str, typer.Option("--out", metavar="FILE", help="where the table is written")
    ] = DEFAULT_OUT,
) -> int:
    """Run every cell of the estimator matrix (or of the entries named) and write the coverage table.

    Returns
    -------
    int
        ``EXIT_OK`` when every cell is pass, unsupported or a confirmed defect; ``EXIT_FAILED`` when a cell
        is a false alarm or a crash; ``EXIT_USAGE`` for an entry name that is not in the matrix.
    """
    from parity.validators import matrix

    for name in only or []:
        try:
            matrix.entry_of(name)
        except KeyError as err:
            raise typer.BadParameter(str(err.args[0]), param_hint="--only") from None
    start = time.perf_counter()
    cells = matrix.run_matrix(only)
    seconds = time.perf_counter() - start
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(f".{target.name}.tmp")
    scratch.write_text(matrix.markdown(cells, seconds))
    os.replace(scratch, target)  # never a half-written table
    rows = [
        {
            "estimator": c.entry,
            "format": c.format,
            "parity": c.outcome,
            "cell": c.kind,
            "reason": c.reason[:120],
        }
        for c in cells
        if c.kind is not matrix.Kind.PASS
    ]
    print_table(rows, COLUMNS)
    total = matrix.counts(cells)
    print(", ".join(f"{n} {kind}" for kind, n in total.items()) + f" ({seconds:.0f} s); written to {target}")
    wrong = total[matrix.Kind.FALSE_ALARM] + total[matrix.Kind.CRASH]
    return EXIT_FAILED if wrong else EXIT_OK
