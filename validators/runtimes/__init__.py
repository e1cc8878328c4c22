"""The runtimes that evaluate a converted model file, as plain classes without Prefect."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class Runtime(Protocol):
    """What every entry of :data:`validators.RUNTIMES` offers.

    ``evaluate`` takes ONNX feeds (a dict of arrays) or, for PMML, a DataFrame of rows, and returns the
    runtime's raw outputs (a dict of arrays, or a DataFrame).
    """

    name: str
    format: str

    def unavailable_reason(self) -> str | None: ...

    def evaluate(self, path: Path, inputs: Any) -> Any: ...
