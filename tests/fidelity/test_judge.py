"""The mutation suite's own yardsticks: what counts as naming a bug, and the judge's band arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from parity.core.tolerances import Band, Exact
from tests.fidelity.suite import names_a_bug, outside_band

#: explanation → whether it names a bug without putting the deviation down to rounding
EXPLANATIONS: dict[str, tuple[str, bool]] = {
    "double-precision": (
        "534 row(s) outside atol 1e-09, rtol 1e-09 in a double-precision artifact: a conversion or runtime bug, "
        "not rounding. Compare the runtimes' rows to see which side is wrong.",
        True,
    ),
    "label-flip": (
        "22 row(s) outside exact, 22 not explained by float32 input rounding: labels differ beyond input "
        "rounding: a conversion bug.",
        True,
    ),
    "hedged": (
        "231 row(s) outside atol 0.0001, rtol 0.001, 231 not explained by float32 input rounding: float32 "
        "arithmetic in the runtime (summed trees, reciprocal scaling) or a conversion bug; raise this model's "
        "tolerance only if the drift is acceptable.",
        False,
    ),
    "explained-by-rounding": (
        "3 row(s) outside the band are explained by float32 input rounding: scikit-learn on float32-rounded "
        "inputs agrees with the runtime (inputs near a split).",
        False,
    ),
    "no-bug-named": ("embedded verification failed: Values 0.99741 and 0.99762 do not match", False),
}


@pytest.mark.parametrize(("text", "expected"), list(EXPLANATIONS.values()), ids=list(EXPLANATIONS))
def test_names_a_bug(text: str, expected: bool):
    assert names_a_bug(text) is expected


def test_outside_band_scales_values_and_matches_nan_with_nan_only():
    expected = np.array([100.0, 0.5, np.nan, 1.0])
    band = Band(atol=1e-3, rtol=0.0, scaled=True)  # scale 100: 0.1 allowed

    found = outside_band(expected, np.array([100.05, 0.7, np.nan, np.nan]), band)

    assert found.tolist() == [False, True, False, True]


def test_outside_band_compares_labels_exactly_and_any_column_of_a_row():
    assert outside_band(np.array([0, 1, 2]), np.array([0, 2, 2]), Exact()).tolist() == [False, True, False]
    probabilities = np.array([[0.2, 0.8], [0.5, 0.5]])
    changed = np.array([[0.2, 0.8], [0.5, 0.6]])
    assert outside_band(probabilities, changed, Band(atol=1e-4, rtol=0.0)).tolist() == [False, True]
