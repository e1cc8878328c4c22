"""Named tolerances, the comparison of one output with its reference, and report rows (no runtimes, no JVM)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from parity.core.tolerances import (
    OUTPUT_KINDS,
    TOLERANCES,
    Band,
    Exact,
    OutputKind,
    kind_of,
    scale_of,
    tolerance_for,
)
from parity.validators.compare import FIRST_ROWS, LAYOUTS, align, compare
from parity.validators.report import Check, Verdict, outcome

PRECISIONS = ("float32", "float64")

# --- tolerances ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(OutputKind), ids=str)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_precision_and_kind_has_a_tolerance(precision: str, kind: OutputKind):
    tolerance = TOLERANCES[(precision, kind)]
    assert tolerance_for(precision, kind) == tolerance
    if kind is OutputKind.LABEL:
        assert tolerance == Exact()
    else:
        assert isinstance(tolerance, Band)
        assert tolerance.atol > 0
        assert tolerance.rtol > 0
        # probabilities live in [0, 1]; decisions and values may be any size, so their band scales
        assert tolerance.scaled is (kind is not OutputKind.PROBABILITY)


def test_the_table_holds_nothing_else():
    assert set(TOLERANCES) == {(p, k) for p in PRECISIONS for k in OutputKind}


@pytest.mark.parametrize("kind", [k for k in OutputKind if k is not OutputKind.LABEL], ids=str)
def test_double_precision_bands_are_tighter_than_float32(kind: OutputKind):
    loose, tight = TOLERANCES[("float32", kind)], TOLERANCES[("float64", kind)]
    assert tight.atol < loose.atol
    assert tight.rtol < loose.rtol


@pytest.mark.parametrize(
    ("output", "is_classifier", "kind"),
    [
        ("predict", True, OutputKind.LABEL),
        ("predict", False, OutputKind.VALUE),
        ("predict_proba", True, OutputKind.PROBABILITY),
        ("decision_function", True, OutputKind.DECISION),
        ("transform", False, OutputKind.TRANSFORM),
        ("predict", True, OutputKind.LABEL),
        ("score_samples", True, OutputKind.DECISION),
    ],
)
def test_kind_of(output: str, is_classifier: bool, kind: OutputKind):
    assert kind_of(output, is_classifier) is kind


def test_kind_of_an_unknown_output_is_a_key_error():
    with pytest.raises(KeyError, match="predict_log_proba"):
        kind_of("predict_log_proba", False)
    assert "predict_log_proba" not in OUTPUT_KINDS


def test_override_by_kind_applies_to_both_precisions():
    overrides = {"probability": {"atol": 1e-3}}
    for precision in PRECISIONS:
        default = TOLERANCES[(precision, OutputKind.PROBABILITY)]
        assert tolerance_for(precision, OutputKind.PROBABILITY, overrides) == Band(
            atol=1e-3, rtol=default.rtol, scaled=default.scaled
        )


def test_override_by_precision_and_kind_applies_to_that_precision_only():
    overrides = {"float32:value": {"rtol": 0.5}}
    default = TOLERANCES[("float32", OutputKind.VALUE)]
    assert tolerance_for("float32", OutputKind.VALUE, overrides) == Band(
        atol=default.atol, rtol=0.5, scaled=True
    )
    assert tolerance_for("float64", OutputKind.VALUE, overrides) == TOLERANCES[("float64", OutputKind.VALUE)]
    assert (
        tolerance_for("float32", OutputKind.DECISION, overrides)
        == TOLERANCES[("float32", OutputKind.DECISION)]
    )


def test_precision_specific_override_wins_over_the_kind_override():
    overrides = {"probability": {"atol": 1e-3, "rtol": 1e-2}, "float32:probability": {"atol": 5e-3}}
    assert tolerance_for("float32", OutputKind.PROBABILITY, overrides) == Band(atol=5e-3, rtol=1e-2)
    assert tolerance_for("float64", OutputKind.PROBABILITY, overrides) == Band(atol=1e-3, rtol=1e-2)


def test_override_values_become_floats():
    tolerance = tolerance_for("float32", OutputKind.PROBABILITY, {"probability": {"atol": 1}})
    assert tolerance.atol == 1.0
    assert isinstance(tolerance.atol, float)


def test_labels_stay_exact_without_overrides():
    for precision in PRECISIONS:
        assert tolerance_for(precision, OutputKind.LABEL, {"probability": {"atol": 1.0}}) == Exact()


@pytest.mark.parametrize(
    "key", ["label", "float32:label", "probabilty", "float16:probability", "cross_target"]
)
def test_override_keys_that_would_change_nothing_are_refused(key: str):
    with pytest.raises(ValueError, match=rf"tolerance override '{key}' is not a known output kind"):
        tolerance_for("float32", OutputKind.PROBABILITY, {key: {"atol": 1.0}})


def test_negative_override_is_refused():
    with pytest.raises(ValueError, match="must be >= 0"):
        tolerance_for("float32", OutputKind.VALUE, {"value": {"atol": -1.0}})


def test_cross_target_override_tightens_only_target_comparisons():
    from parity.core.tolerances import cross_target_tolerance

    overrides = {"cross-target": {"atol": 0, "rtol": 0}}
    assert cross_target_tolerance("float32", OutputKind.VALUE, overrides) == Band(0.0, 0.0, scaled=True)
    assert tolerance_for("float32", OutputKind.VALUE, overrides) == TOLERANCES[("float32", OutputKind.VALUE)]
    assert cross_target_tolerance("float32", OutputKind.LABEL, overrides) == Exact()


@pytest.mark.parametrize("key", ["probability", "float32:probability"])
def test_override_with_an_unknown_key_is_a_value_error(key: str):
    with pytest.raises(
        ValueError, match=rf"tolerance override '{key}' has unknown key\(s\) abs, tol; use atol"
    ):
        tolerance_for("float32", OutputKind.PROBABILITY, {key: {"tol": 1e-3, "abs": 1e-3}})


def test_describe():
    assert Band(atol=1e-5, rtol=1e-4, scaled=True).describe() == "atol 1e-05×scale, rtol 0.0001"
    assert Band(atol=1e-9, rtol=1e-9).describe() == "atol 1e-09, rtol 1e-09"
    assert Exact().describe() == "exact"


@pytest.mark.parametrize(
    ("values", "scale"),
    [
        pytest.param([0.5, -0.25], 1.0, id="small-values-scale-1"),
        pytest.param([-300.0, 2.0], 300.0, id="max-abs"),
        pytest.param([[3.0, -7.5], [1.0, 2.0]], 7.5, id="2-D"),
        pytest.param([np.nan, 40.0], 40.0, id="ignores-nan"),
        pytest.param([np.inf, -np.inf, 12.0], 12.0, id="ignores-inf"),
        pytest.param([np.nan, np.inf], 1.0, id="nothing-finite"),
        pytest.param([], 1.0, id="empty"),
    ],
)
def test_scale_of(values, scale: float):
    assert scale_of(np.asarray(values, dtype=np.float64)) == scale


# --- compare: exact ---------------------------------------------------------------------------------------


def test_int_labels_match_their_string_spelling():
    """ONNX returns int64 labels, JPMML the PMML's "0"/"1" strings: both mean the same classes."""
    expected = np.array([0, 1, 1, 2])
    for actual in (np.array([0, 1, 1, 2], dtype=np.int64), np.array(["0", "1", "1", "2"], dtype=object)):
        diff = compare(expected, actual, Exact())
        assert diff.n_outside == 0
        assert diff.max_abs is None
        assert diff.max_rel is None


def test_string_spelling_of_a_different_label_is_outside():
    diff = compare(np.array([0, 1, 1, 2]), np.array(["0", "2", "1", "two"], dtype=object), Exact())
    assert diff.outside.tolist() == [False, True, False, True]


def test_float_labels_match_int_spelling():
    assert compare(np.array([0.0, 1.0]), np.array(["0", "1"], dtype=object), Exact()).n_outside == 0


def test_string_labels():
    expected = np.array(["setosa", "versicolor", "virginica"], dtype=object)
    assert compare(expected, expected.copy(), Exact()).n_outside == 0
    diff = compare(expected, np.array(["setosa", "virginica", "virginica"], dtype=object), Exact())
    assert diff.first_outside() == [1]


def test_column_of_labels_is_flattened():
    expected = np.array([0, 1, 2])
    assert compare(expected, np.array([[0], [1], [2]]), Exact()).n_outside == 0


def test_nan_labels_match_nan_only():
    diff = compare(np.array([np.nan, 1.0, np.nan]), np.array([np.nan, 1.0, 0.0]), Exact())
    assert diff.outside.tolist() == [False, False, True]


# --- compare: bands ---------------------------------------------------------------------------------------


def test_nan_matches_nan_and_nan_against_a_number_is_outside():
    expected = np.array([np.nan, 1.0, np.nan, 2.0])
    actual = np.array([np.nan, 1.0, 0.5, np.nan])
    diff = compare(expected, actual, Band(atol=1e-3, rtol=0.0))
    assert diff.outside.tolist() == [False, False, True, True]
    assert diff.max_abs == 0.0  # only rows where both sides are numbers (or both NaN) count


def test_all_rows_nan_on_one_side_give_nan_figures():
    diff = compare(np.array([1.0, 2.0]), np.array([np.nan, np.nan]), Band(atol=1.0, rtol=1.0))
    assert diff.n_outside == 2
    assert math.isnan(diff.max_abs)
    assert math.isnan(diff.max_rel)


def test_scaled_band_grows_with_the_output_magnitude():
    expected = np.array([50.0, 0.0])
    actual = np.array([50.01, 0.0])
    assert compare(expected, actual, Band(atol=1e-3, rtol=0.0, scaled=True)).n_outside == 0  # 1e-3 × 50
    assert compare(expected, actual, Band(atol=1e-3, rtol=0.0, scaled=False)).first_outside() == [0]


def test_scaled_band_protects_values_near_zero():
    """Relative error is meaningless near zero: the scaled atol, not rtol, accepts a tiny absolute drift."""
    expected = np.array([100.0, 1e-6])
    actual = np.array([100.0, 2e-6])
    assert compare(expected, actual, Band(atol=1e-5, rtol=1e-4, scaled=True)).n_outside == 0
    assert compare(expected, actual, Band(atol=0.0, rtol=1e-4, scaled=True)).first_outside() == [1]


def test_rtol_term():
    expected = np.array([1000.0])
    assert compare(expected, np.array([1000.5]), Band(atol=0.0, rtol=1e-3)).n_outside == 0
    assert compare(expected, np.array([1001.5]), Band(atol=0.0, rtol=1e-3)).n_outside == 1


def test_band_boundary_is_inside():
    assert compare(np.array([0.0]), np.array([0.25]), Band(atol=0.25, rtol=0.0)).n_outside == 0


def test_2d_row_is_outside_when_any_column_is():
    expected = np.array([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]])
    actual = expected.copy()
    actual[1, 1] += 0.01
    diff = compare(expected, actual, Band(atol=1e-4, rtol=0.0))
    assert diff.outside.tolist() == [False, True, False]
    assert diff.n_outside == 1


def test_figures():
    diff = compare(np.array([2.0, 4.0, 0.0]), np.array([2.2, 4.1, 0.0]), Band(atol=1.0, rtol=0.0))
    assert diff.max_abs == pytest.approx(0.2)
    assert diff.max_rel == pytest.approx(0.1)
    assert diff.n_outside == 0


def test_relative_figure_of_a_drift_away_from_zero_is_infinite():
    diff = compare(np.array([0.0, 1.0]), np.array([1e-3, 1.0]), Band(atol=1e-2, rtol=0.0))
    assert diff.max_rel == math.inf
    assert diff.n_outside == 0


def test_float32_actual_against_float64_expected():
    expected = np.array([0.1, 0.7], dtype=np.float64)
    diff = compare(expected, expected.astype(np.float32), TOLERANCES[("float32", OutputKind.PROBABILITY)])
    assert diff.n_outside == 0
    assert 0 < diff.max_abs < 1e-7


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        pytest.param(np.zeros((3, 2)), np.zeros((3, 3)), id="columns"),
        pytest.param(np.zeros(3), np.zeros(4), id="rows"),
        pytest.param(np.zeros(3), np.zeros((3, 3)), id="1-D-vs-2-D"),
        pytest.param(np.zeros(3), np.zeros((2, 3)), id="not-one-row"),
    ],
)
@pytest.mark.parametrize("tolerance", [Exact(), Band(atol=1e-5, rtol=1e-4)], ids=["exact", "band"])
def test_shape_mismatch_is_a_value_error(expected, actual, tolerance):
    with pytest.raises(ValueError, match=rf"shape \({actual.shape[0]}, ?.*\) where the reference has"):
        compare(expected, actual, tolerance)


def test_shape_message_names_both_shapes():
    with pytest.raises(ValueError, match=r"^shape \(3, 3\) where the reference has \(3, 2\)$"):
        compare(np.zeros((3, 2)), np.zeros((3, 3)), Exact())


def test_first_outside_is_limited():
    expected = np.zeros(100)
    actual = np.where(np.arange(100) % 2 == 1, 1.0, 0.0)
    diff = compare(expected, actual, Band(atol=0.5, rtol=0.0))
    assert diff.n_outside == 50
    assert diff.first_outside() == list(range(1, 2 * FIRST_ROWS, 2))
    assert len(diff.first_outside()) == FIRST_ROWS == 20
    assert diff.first_outside(limit=3) == [1, 3, 5]


# --- report ----------------------------------------------------------------------------------------------


def _check(verdict: Verdict) -> Check:
    return Check(
        format="onnx", runtime="onnxruntime", output="predict", verdict=verdict, target="linux/x86_64"
    )


@pytest.mark.parametrize(
    ("verdicts", "unsupported", "expected"),
    [
        pytest.param([Verdict.PASS, Verdict.PASS], False, "passed", id="all-pass"),
        pytest.param([Verdict.PASS, Verdict.FAIL], False, "failed", id="one-fail"),
        pytest.param([Verdict.PASS, Verdict.ERROR], False, "failed", id="one-error"),
        pytest.param([Verdict.PASS, Verdict.UNAVAILABLE], False, "failed", id="one-unavailable"),
        pytest.param([Verdict.PASS, Verdict.UNSUPPORTED], False, "unsupported", id="one-unsupported"),
        pytest.param([Verdict.PASS], True, "unsupported", id="conversion-unsupported"),
        pytest.param([Verdict.FAIL, Verdict.UNSUPPORTED], True, "failed", id="fail-beats-unsupported"),
        pytest.param([], False, "failed", id="nothing-checked"),
        pytest.param([], True, "unsupported", id="nothing-converted"),
    ],
)
def test_outcome(verdicts: list[Verdict], unsupported: bool, expected: str):
    assert outcome([_check(v) for v in verdicts], unsupported) == expected


def test_check_to_json_turns_nan_into_none():
    check = Check(
        format="onnx",
        runtime="onnxruntime",
        output="predict_proba",
        verdict=Verdict.FAIL,
        max_abs=math.nan,
        max_rel=0.5,
        n_outside=3,
    )
    data = check.to_json()
    assert data["max_abs"] is None
    assert data["max_rel"] == 0.5
    assert data["verdict"] == "fail"
    assert json.loads(json.dumps(data, allow_nan=False)) == data


def test_check_cell_names_format_runtime_target_output():
    check = Check(
        format="pmml", runtime="pypmml", output="predict_proba", verdict=Verdict.PASS, target="linux/aarch64"
    )
    assert check.cell == "pmml/pypmml/linux/aarch64/predict_proba"


def test_an_infinite_reference_matches_only_the_same_infinity():
    expected = np.array([np.inf, -np.inf, np.inf, 1.0])
    actual = np.array([np.inf, -np.inf, 1e308, 1.0])
    diff = compare(expected, actual, Band(atol=1e-5, rtol=1e-4, scaled=True))
    assert diff.outside.tolist() == [False, False, True, False]


# --- known layouts: mapped onto the reference's shape, every column of the artifact still compared -------
@pytest.mark.parametrize(
    ("layout", "actual"),
    [
        pytest.param(LAYOUTS[0], lambda d: d.reshape(-1, 1), id="column"),
        pytest.param(LAYOUTS[1], lambda d: d.reshape(1, -1), id="row"),
        pytest.param(LAYOUTS[2], lambda d: np.column_stack([-d, d]), id="minus-d-d"),
        pytest.param(LAYOUTS[3], lambda d: np.column_stack([d, -d]), id="d-minus-d"),
    ],
)
def test_a_known_layout_is_mapped_and_compared(layout, actual):
    d = np.array([-2.5, 0.25, 3.0])
    band = Band(atol=1e-9, rtol=0)
    expected, arranged, name = align(d, actual(d), prefer=layout.name)
    assert name == layout.name
    assert compare(expected, arranged, band).n_outside == 0
    wrong = actual(d).astype(float)
    wrong.flat[-1] += 1  # the last element of the artifact's own layout: the second column of [d, -d]
    expected, arranged, _ = align(d, wrong, prefer=layout.name)
    assert compare(expected, arranged, band).n_outside == 1


def test_of_two_layouts_that_fit_the_first_is_taken_unless_the_conversion_names_the_other():
    d = np.array([1.0, -2.0])
    assert align(d, np.column_stack([-d, d]))[2] == "(N, 2) = [-d, d]"
    assert align(d, np.column_stack([d, -d]), prefer="(N, 2) = [d, -d]")[2] == "(N, 2) = [d, -d]"
