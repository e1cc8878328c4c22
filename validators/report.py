"""Report rows and a model's outcome: the :class:`~parity.core.records.Check` records and the one rule
that turns them into an :class:`~parity.core.records.Outcome` (kept with the records, where reports read it)."""

from __future__ import annotations

import math

from parity.core.records import Check, Verdict
from parity.core.records import decide_outcome as outcome

SCHEMA = 1

__all__ = ["SCHEMA", "Check", "Verdict", "fmt_float", "outcome"]


def fmt_float(value: float | None) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"
