"""Named tolerances, derived from the output's kind and the artifact's numeric precision.

Why these numbers (measured on correct conversions, see FACTS.md and README "Bands"): float32 ONNX drifted at
most 1.0e-6 on probabilities (GaussianNB; 15 classifiers on bundled data: logistic regression 3.9e-7, SVC
4.2e-7, MLP 3.1e-7, forests and boosting <= 1.8e-7; 4.2e-6 on an MLP over 100k synthetic rows) and at most
2.1e-7 of the output's scale on regression values (forests, boosting, linear, MLP); the estimator matrix
(``docs/coverage.md``) saw at most 1.8e-6 on probabilities (MultinomialNB). The float32 probability band (atol
4e-6 plus 4e-6 relative: 4e-6 to 8e-6) is about 2-4x the largest drift seen, and the smallest
logistic-regression coefficient change it catches is 7.1e-6 relative (``benchmarks/fidelity.py``; the goal
was 1e-5, and 5e-4 passed before); values and decision values get 2e-6 of the scale plus 1e-5 relative
(about 10x the drift seen). PMML in JPMML stayed within 1e-12 of scikit-learn on every model tried: its bands are 1e-9.
Relative error alone means nothing near zero, so values get an absolute band scaled by the output's magnitude
plus a relative band. Rows outside a band are re-checked before anything is called a bug (float32 inputs,
ties: see ``parity.validators.validate``).
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
    #: a transformer's output or a clusterer's distances (``transform``)
    TRANSFORM = "transform"


#: Which kind each reference output is.
OUTPUT_KINDS: dict[str, OutputKind] = {
    "predict": OutputKind.VALUE,  # LABEL for classifiers, clusterers and outlier detectors, see kind_of()
    "predict_proba": OutputKind.PROBABILITY,
    "decision_function": OutputKind.DECISION,
    "score_samples": OutputKind.DECISION,
    "transform": OutputKind.TRANSFORM,
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
    ("float32", OutputKind.PROBABILITY): Band(atol=4e-6, rtol=4e-6),
    ("float32", OutputKind.DECISION): Band(atol=2e-6, rtol=1e-5, scaled=True),
    ("float32", OutputKind.VALUE): Band(atol=2e-6, rtol=1e-5, scaled=True),
    # distances are computed as |x|^2 - 2 x.c + |c|^2: float32 cancellation (KMeans: 8.9e-6 of the scale)
    ("float32", OutputKind.TRANSFORM): Band(atol=5e-5, rtol=1e-4, scaled=True),
    ("float64", OutputKind.LABEL): Exact(),
    ("float64", OutputKind.PROBABILITY): Band(atol=1e-9, rtol=1e-9),
    ("float64", OutputKind.DECISION): Band(atol=1e-9, rtol=1e-9, scaled=True),
    ("float64", OutputKind.VALUE): Band(atol=1e-9, rtol=1e-9, scaled=True),
    ("float64", OutputKind.TRANSFORM): Band(atol=1e-9, rtol=1e-9, scaled=True),
}


def kind_of(output: str, labels: bool) -> OutputKind:
    """The kind of a reference output; ``predict`` is a label when the estimator predicts labels.

    Parameters
    ----------
    output : str
        A reference output (``predict``, ``predict_proba``...).
    labels : bool
        Whether ``predict`` gives labels (classifiers, clusterers, outlier detectors), not values.

    Raises
    ------
    KeyError
        For an output that is not in :data:`OUTPUT_KINDS`.
    """
    if output == "predict" and labels:
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


#: Unit roundoff (half an ulp of 1) of each precision.
UNIT_ROUNDOFF: dict[str, float] = {"float32": 2.0**-24, "float64": 2.0**-53}
#: How many rounding steps one output of a converted graph may chain, at most. The error of a computation
#: of n roundings is at most about n unit roundoffs of the magnitudes it sums (Higham, *Accuracy and Stability
#: of Numerical Algorithms*, 2nd ed., §3.1 and §4.2: ``|error| <= gamma_n * sum |x_i|``, ``gamma_n ~ n*u``).
#: The deepest outputs converters emit are sums over trees (hundreds of trees, a few roundings each) and
#: dot products over features (tens to hundreds): 4096 steps bounds them with room to spare.
ARITHMETIC_STEPS = 4096


def arithmetic_bound(precision: str, kind: OutputKind) -> float:
    """The largest deviation arithmetic at ``precision`` can produce, per unit of the output's scale.

    ``ARITHMETIC_STEPS * unit roundoff``: 2.4e-4 in float32, 4.5e-13 in float64. A deviation beyond it is
    not rounding of any kind: it is a conversion (or runtime) bug. Labels have no such bound (they are
    exact or wrong).
    """
    return 0.0 if kind is OutputKind.LABEL else ARITHMETIC_STEPS * UNIT_ROUNDOFF[precision]


#: The deviation bands a failing output is put in (after mlprodict's validation reports): the largest
#: deviation, per unit of the output's scale, is below the first edge it is under.
BAND_EDGES: tuple[float, ...] = (1e-6, 1e-4, 1e-2, 1.0)
#: A label that differs, or a deviation beyond the last edge.
BIG_DIFF = "big-diff"
WITHIN = "OK"


def deviation_band(deviation: float | None, within: bool) -> str:
    """The band of a deviation (``max |actual - expected| / scale``): ``OK`` when within tolerance.

    ``None`` (labels, strings: nothing to measure) is ``big-diff`` when it is outside tolerance.
    """
    if within:
        return WITHIN
    if deviation is None or not np.isfinite(deviation):
        return BIG_DIFF
    return next((f"e<{edge:g}" for edge in BAND_EDGES if deviation < edge), BIG_DIFF)
