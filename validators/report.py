"""Report rows and a model's outcome. The rows themselves are :class:`~parity.core.records.Check` records."""

from __future__ import annotations

import math

from parity.core.records import Check, Outcome, Verdict

SCHEMA = 1

__all__ = ["SCHEMA", "Check", "Verdict", "fmt_float", "outcome"]


def outcome(checks: list[Check], conversions_unsupported: bool) -> Outcome:
    """A model's outcome: ``passed``, ``failed`` or ``unsupported``; optional targets never block."""
    checks = [c for c in checks if c.required]
    if any(c.verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.UNAVAILABLE) for c in checks):
        return Outcome.FAILED
    if conversions_unsupported or any(c.verdict is Verdict.UNSUPPORTED for c in checks):
        return Outcome.UNSUPPORTED
    if not any(c.verdict is Verdict.PASS for c in checks):
        return Outcome.FAILED
    return Outcome.PASSED


def fmt_float(value: float | None) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"
