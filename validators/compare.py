"""Compare one runtime output with the estimator's reference output, under a named tolerance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd

from parity.core.tolerances import Band, Exact, Tolerance, scale_of

#: How many indices of rows outside tolerance a report keeps.
FIRST_ROWS = 20


@dataclass(frozen=True)
class Difference:
    """How far ``actual`` is from ``expected``, per row."""

    max_abs: float | None
    max_rel: float | None
    outside: np.ndarray  # bool per row

    @property
    def n_outside(self) -> int:
        return int(self.outside.sum())

    def first_outside(self, limit: int = FIRST_ROWS) -> list[int]:
        return np.flatnonzero(self.outside)[:limit].tolist()


@dataclass(frozen=True)
class Layout:
    """A shape a converter emits an output in, and how the reference output is laid out the same way.

    Attributes
    ----------
    name : str
        How the report names it.
    matches : callable
        ``(expected shape, actual shape) -> bool``.
    arrange : callable
        ``(expected, actual) -> (expected, actual)`` in one shape, losing no column of either.
    """

    name: str
    matches: Callable[[tuple[int, ...], tuple[int, ...]], bool]
    arrange: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _flat(expected: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return expected, actual.reshape(-1)


def _scores_of_both_classes(expected: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.column_stack([-expected.astype(np.float64), expected]), actual


def _with_negation(expected: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.column_stack([expected, -expected.astype(np.float64)]), actual


def _binary(e: tuple[int, ...], a: tuple[int, ...]) -> bool:
    return len(e) == 1 and a == (e[0], 2)


#: The layouts converters are known to emit an output in, other than the reference's own (FACTS.md:
#: skl2onnx gives a binary linear classifier's scores as (N, 2) = [-d, d] (column j scores class j) but a
#: binary SVC's as [d, -d], QDA's label as (1, N), outlier labels as (N, 1)). Where two layouts fit one
#: shape, the first is taken unless the conversion names the other (``OnnxDetails.layouts``).
LAYOUTS: tuple[Layout, ...] = (
    Layout("(N, 1) column", lambda e, a: len(e) == 1 and a == (e[0], 1), _flat),
    Layout("(1, N) row", lambda e, a: len(e) == 1 and a == (1, e[0]) and e[0] != 1, _flat),
    Layout("(N, 2) = [-d, d]", _binary, _scores_of_both_classes),
    Layout("(N, 2) = [d, -d]", _binary, _with_negation),
)


def align(
    expected: np.ndarray, actual: np.ndarray, prefer: str | None = None
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """``expected`` and ``actual`` in one shape, through a known layout when their shapes differ.

    Parameters
    ----------
    expected, actual : numpy.ndarray
    prefer : str, optional
        The name of the layout to take where several fit the shapes (the converter's own, for this output).

    Returns
    -------
    expected, actual : numpy.ndarray
    layout : str or None
        The layout's name; None when the shapes were the same (or no layout applies: :func:`compare` then
        says both shapes).
    """
    expected, actual = np.asarray(expected), np.asarray(actual)
    if expected.shape == actual.shape:
        return expected, actual, None
    fitting = [layout for layout in LAYOUTS if layout.matches(expected.shape, actual.shape)]
    for layout in sorted(fitting, key=lambda layout: layout.name != prefer):
        arranged, actual = layout.arrange(expected, actual)
        return arranged, actual, layout.name
    return expected, actual, None


def compare(expected: np.ndarray, actual: np.ndarray, tolerance: Tolerance) -> Difference:
    """Rows where ``actual`` is outside ``tolerance`` of ``expected``.

    Parameters
    ----------
    expected, actual : numpy.ndarray
        Same number of rows; 1-D or 2-D (a row is outside when any of its columns is).
    tolerance : Band or Exact

    Raises
    ------
    ValueError
        When the shapes differ: the output is not comparable and the message says both shapes.
    """
    expected, actual, _ = align(expected, actual)
    if actual.shape != expected.shape:
        raise ValueError(f"shape {actual.shape} where the reference has {expected.shape}")
    if isinstance(tolerance, Exact):
        return _compare_exact(expected, actual)
    return _compare_band(expected.astype(np.float64), actual.astype(np.float64), tolerance)


def _rows(mask: np.ndarray) -> np.ndarray:
    return mask if mask.ndim == 1 else cast(np.ndarray, mask.any(axis=1))


def _compare_exact(expected: np.ndarray, actual: np.ndarray) -> Difference:
    if expected.dtype.kind in "biuf":
        numeric = pd.to_numeric(pd.Series(actual.ravel()), errors="coerce").to_numpy(np.float64)
        numeric = numeric.reshape(actual.shape)
        want = expected.astype(np.float64)
        same = (numeric == want) | (np.isnan(numeric) & np.isnan(want))
    else:
        same = np.vectorize(str, otypes=[object])(actual) == np.vectorize(str, otypes=[object])(expected)
    return Difference(None, None, _rows(~same))


def _compare_band(expected: np.ndarray, actual: np.ndarray, band: Band) -> Difference:
    both_nan = np.isnan(expected) & np.isnan(actual)
    one_nan = np.isnan(expected) ^ np.isnan(actual)
    with np.errstate(invalid="ignore"):  # inf - inf is NaN here; infinities are judged below
        diff = np.where(both_nan | (actual == expected), 0.0, np.abs(actual - expected))
    scale = scale_of(expected) if band.scaled else 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(diff == 0, 0.0, diff / np.abs(expected))
    # an infinite expected value makes the relative term infinite: only the same infinity matches it
    inf_mismatch = (np.isinf(expected) | np.isinf(actual)) & (expected != actual)
    outside = one_nan | inf_mismatch | (diff > band.atol * scale + band.rtol * np.abs(expected))
    finite = ~one_nan
    max_abs = float(np.nanmax(diff[finite])) if finite.any() else float("nan")
    max_rel = float(np.nanmax(rel[finite])) if finite.any() else float("nan")
    return Difference(max_abs, max_rel, _rows(outside))
