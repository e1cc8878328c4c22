"""Runtimes × targets → comparison with the estimator's reference predictions.

:data:`RUNTIMES` is the one table of runtimes; each entry names its format. The PMML runtimes import
lazily so that a process that never evaluates PMML never starts a JVM.
"""

from __future__ import annotations

from typing import Any


def _build_runtimes() -> dict[str, Any]:
    from .runtimes.onnx import OnnxReferenceRuntime, OnnxruntimeRuntime
    from .runtimes.pmml import JpmmlRuntime, PypmmlRuntime

    table: dict[str, Any] = {}
    for runtime in (OnnxruntimeRuntime(), OnnxReferenceRuntime(), JpmmlRuntime(), PypmmlRuntime()):
        if runtime.name in table:
            raise ValueError(f"runtime {runtime.name!r} registered twice; each runtime needs a unique name.")
        table[runtime.name] = runtime
    return table


#: Every runtime, by name. One instance per process: JVM runtimes start their JVM once.
RUNTIMES: dict[str, Any] = _build_runtimes()


def runtimes_for(fmt: str) -> list[Any]:
    """The runtimes that evaluate artifacts of format ``fmt``, in table order."""
    return [runtime for runtime in RUNTIMES.values() if runtime.format == fmt]
