"""Compare one runtime output with the estimator's reference output, under a named tolerance."""

from __future__ import annotations

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
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.ndim == 2 and actual.shape[1] == 1 and expected.ndim == 1:
        actual = actual[:, 0]
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
