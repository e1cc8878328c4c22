"""Report rows: one per (format, runtime, target, output), JSON-serialisable and versioned."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from parity.core.defaults import host_platform

SCHEMA = 1


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    #: the format could not be produced: the converter does not support the estimator
    UNSUPPORTED = "unsupported"
    #: the runtime is not installed / not reachable here
    UNAVAILABLE = "unavailable"
    #: the runtime raised while evaluating
    ERROR = "error"


@dataclass(frozen=True)
class Check:
    """One cell of the verdict table."""

    format: str
    runtime: str
    output: str
    verdict: Verdict
    target: str = field(default_factory=host_platform)
    kind: str = ""
    rows: int = 0
    max_abs: float | None = None
    max_rel: float | None = None
    n_outside: int = 0
    first_outside: list[int] = field(default_factory=list)
    tolerance: str = ""
    explanation: str = ""
    #: whether this cell's target must pass for the model to pass
    required: bool = True
    #: where the outputs really came from (the runner's own description) and the target's settings
    where: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        data = asdict(self)
        data["verdict"] = str(self.verdict)
        for key in ("max_abs", "max_rel"):
            value = data[key]
            data[key] = None if value is None or (isinstance(value, float) and math.isnan(value)) else value
        return data

    def cell(self) -> str:
        """A short label naming this cell, e.g. ``onnx/onnxruntime/linux/x86_64/predict_proba``."""
        return f"{self.format}/{self.runtime}/{self.target}/{self.output}"


def outcome(checks: list[Check], conversions_unsupported: bool) -> str:
    """A model's outcome: ``passed``, ``failed`` or ``unsupported``; optional targets never block."""
    checks = [c for c in checks if c.required]
    if any(c.verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.UNAVAILABLE) for c in checks):
        return "failed"
    if conversions_unsupported or any(c.verdict is Verdict.UNSUPPORTED for c in checks):
        return "unsupported"
    if not any(c.verdict is Verdict.PASS for c in checks):
        return "failed"
    return "passed"


def fmt_float(value: float | None) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"
