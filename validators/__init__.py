"""Runtimes × targets → comparison with the estimator's reference predictions.

:data:`RUNTIMES` is gathered from the format specs (:data:`parity.validators.formats.FORMATS`): each spec
lists its runtimes. The PMML runtimes start their JVM lazily, so a process that never evaluates PMML never
starts one.
"""

from __future__ import annotations

from parity.core.tables import table_of

from .formats import FORMATS, format_of
from .runtimes import Runtime


def _gather_runtimes() -> dict[str, Runtime]:
    misplaced = [
        f"{r.name} ({r.format}, under {s.name})"
        for s in FORMATS.values()
        for r in s.runtimes
        if r.format != s.name
    ]
    if misplaced:
        raise ValueError(f"runtimes listed under another format than their own: {', '.join(misplaced)}.")
    return table_of("runtime", [runtime for spec in FORMATS.values() for runtime in spec.runtimes])


#: Every runtime, by name. One instance per process: JVM runtimes start their JVM once.
RUNTIMES: dict[str, Runtime] = _gather_runtimes()


def runtimes_for(fmt: str) -> list[Runtime]:
    """The runtimes that evaluate artifacts of format ``fmt``, in table order."""
    return list(format_of(fmt).runtimes)
