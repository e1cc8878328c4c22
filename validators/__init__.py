"""Runtimes × targets → comparison with the estimator's reference predictions.

:data:`RUNTIMES` is gathered from the format specs (:data:`parity.validators.formats.FORMATS`): each spec
lists its runtimes. The PMML runtimes start their JVM lazily, so a process that never evaluates PMML never
starts one.
"""

from __future__ import annotations

from .formats import FORMATS, format_of
from .runtimes import Runtime


def _gather_runtimes() -> dict[str, Runtime]:
    table: dict[str, Runtime] = {}
    for spec in FORMATS.values():
        for runtime in spec.runtimes:
            if runtime.name in table:
                raise ValueError(
                    f"runtime {runtime.name!r} registered twice; each runtime needs a unique name."
                )
            if runtime.format != spec.name:
                raise ValueError(
                    f"runtime {runtime.name!r} evaluates {runtime.format}, but is listed under {spec.name}."
                )
            table[runtime.name] = runtime
    return table


#: Every runtime, by name. One instance per process: JVM runtimes start their JVM once.
RUNTIMES: dict[str, Runtime] = _gather_runtimes()


def runtimes_for(fmt: str) -> list[Runtime]:
    """The runtimes that evaluate artifacts of format ``fmt``, in table order."""
    return list(format_of(fmt).runtimes)
