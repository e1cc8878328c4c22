"""Named tolerances, derived from the output's kind and the artifact's numeric precision.

Why these numbers (measured, see FACTS.md "How far converted outputs drift"): PMML keeps doubles and stayed
within 1e-12 of scikit-learn on every model tried; float32 ONNX drifted up to 4.2e-6 on probabilities of
correct conversions and up to ~1e-6 of the output's scale on summed tree ensembles. A fixed 1e-5 fails correct
float32 conversions, and relative error alone means nothing near zero, so values get an absolute band scaled
by the output's magnitude plus a relative band.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import numpy as np


class OutputKind(StrEnum):
    """What an output means, which decides how it is compared."""

    LABEL = "label"
    PROBABILITY = "probability"
    DECISION = "decision"
    VALUE = "value"


#: Which kind each reference output is.
OUTPUT_KINDS: dict[str, OutputKind] = {
    "predict": OutputKind.VALUE,  # LABEL for classifiers, see kind_of()
    "predict_proba": OutputKind.PROBABILITY,
    "decision_function": OutputKind.DECISION,
    "transform": OutputKind.VALUE,
}


@dataclass(frozen=True)
class Band:
    """``|actual - expected| <= atol * scale + rtol * |expected|``, elementwise; NaN matches only NaN.

    ``scale`` is 1 for probabilities and ``max(1, max |expected|)`` for decision values and regression values,
    so one band serves outputs of any magnitude.
    """

    atol: float
    rtol: float
    scaled: bool = False

    def describe(self) -> str:
        scale = "×scale" if self.scaled else ""
        return f"atol {self.atol:g}{scale}, rtol {self.rtol:g}"


@dataclass(frozen=True)
class Exact:
    """Equal, element by element."""

    def describe(self) -> str:
        return "exact"


Tolerance = Band | Exact

#: Defaults per (artifact precision, output kind). README documents this table; models may override it.
TOLERANCES: dict[tuple[str, OutputKind], Tolerance] = {
    ("float32", OutputKind.LABEL): Exact(),
    ("float32", OutputKind.PROBABILITY): Band(atol=1e-4, rtol=1e-3),
    ("float32", OutputKind.DECISION): Band(atol=1e-5, rtol=1e-4, scaled=True),
    ("float32", OutputKind.VALUE): Band(atol=1e-5, rtol=1e-4, scaled=True),
    ("float64", OutputKind.LABEL): Exact(),
    ("float64", OutputKind.PROBABILITY): Band(atol=1e-9, rtol=1e-9),
    ("float64", OutputKind.DECISION): Band(atol=1e-9, rtol=1e-9, scaled=True),
    ("float64", OutputKind.VALUE): Band(atol=1e-9, rtol=1e-9, scaled=True),
}


def kind_of(output: str, is_classifier: bool) -> OutputKind:
    """The kind of a reference output; ``predict`` of a classifier is a label."""
    if output == "predict" and is_classifier:
        return OutputKind.LABEL
    return OUTPUT_KINDS[output]


PRECISIONS = ("float32", "float64")
#: Override key for comparisons of one engine's outputs across targets (architectures, thread counts).
CROSS_TARGET = "cross-target"


def check_overrides(overrides: Mapping[str, Mapping[str, float]] | None) -> None:
    """Refuse override keys that would silently change nothing (a typo must not pass unnoticed).

    Raises
    ------
    ValueError
        For an unknown outer key, or an inner key other than ``atol``/``rtol``, or a negative number.
    """
    kinds = [str(k) for k in OutputKind if k is not OutputKind.LABEL]
    allowed = {*kinds, *(f"{p}:{k}" for p in PRECISIONS for k in kinds), CROSS_TARGET}
    for key, band in (overrides or {}).items():
        if key not in allowed:
            raise ValueError(
                f"tolerance override {key!r} is not a known output kind; use one of {', '.join(sorted(allowed))} "
                "(labels are always exact)."
            )
        unknown = set(band) - {"atol", "rtol"}
        if unknown:
            raise ValueError(
                f"tolerance override {key!r} has unknown key(s) {', '.join(sorted(unknown))}; "
                "use atol and/or rtol, e.g. {'probability': {'atol': 1e-3}}."
            )
        if any(float(v) < 0 for v in band.values()):
            raise ValueError(f"tolerance override {key!r}: atol and rtol must be >= 0, got {dict(band)}.")


def tolerance_for(
    precision: str, kind: OutputKind, overrides: Mapping[str, Mapping[str, float]] | None = None
) -> Tolerance:
    """The band for one output, after a model's overrides.

    Parameters
    ----------
    precision : {"float32", "float64"}
        The artifact's numeric precision.
    kind : OutputKind
    overrides : mapping, optional
        From the registration: ``{"probability": {"atol": 1e-3}}`` or, for one format only,
        ``{"float32:probability": {...}}``. Labels are always exact.

    Raises
    ------
    ValueError
        For an override with keys other than ``atol``, ``rtol``.
    """
    check_overrides(overrides)
    tolerance = TOLERANCES[(precision, kind)]
    if isinstance(tolerance, Exact):
        return tolerance
    for key in (str(kind), f"{precision}:{kind}"):
        change = dict((overrides or {}).get(key, {}))
        fields: dict[str, Any] = {k: float(v) for k, v in change.items()}  # atol/rtol only: check_overrides
        tolerance = replace(tolerance, **fields)
    return tolerance


def cross_target_tolerance(
    precision: str, kind: OutputKind, overrides: Mapping[str, Mapping[str, float]] | None = None
) -> Tolerance:
    """The band two targets' outputs of one engine must agree within.

    By default the same band as against the reference; a model may demand tighter agreement across
    architectures and thread counts with the ``"cross-target"`` override (e.g. ``{"atol": 0, "rtol": 0}``
    for bit-identical outputs).
    """
    tolerance = tolerance_for(precision, kind, overrides)
    change = dict((overrides or {}).get(CROSS_TARGET, {}))
    if isinstance(tolerance, Exact) or not change:
        return tolerance
    fields: dict[str, Any] = {k: float(v) for k, v in change.items()}  # atol/rtol only: check_overrides
    return replace(tolerance, **fields)


def scale_of(expected: np.ndarray) -> float:
    """The magnitude a scaled band multiplies its atol by: ``max(1, max |expected|)`` over finite values."""
    finite = np.abs(expected[np.isfinite(expected)]) if expected.size else np.array([])
    return float(max(1.0, finite.max())) if finite.size else 1.0
