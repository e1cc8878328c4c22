"""The table of every run's converted outputs (``outputs.parquet``): its lines, types and round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from parity.core.records import Conversion, ConversionStatus, OnnxDetails
from parity.validators.outputs import COLUMNS, OutputLog, Run, empty, output_lines, read_parquet, to_parquet

KEYS = ("onnx", "onnxruntime", "host", "predict_proba")


def test_a_two_column_output_gives_one_line_per_row_and_column():
    expected = np.array([[0.25, 0.75], [0.5, 0.5]])
    actual = np.array([[0.25, 0.7500001], [0.5, 0.5]], dtype=np.float32)
    lines = output_lines(KEYS, np.array([3, 7]), expected, actual)
    assert list(lines.columns) == list(COLUMNS)
    assert lines[["row", "column"]].values.tolist() == [[3, 0], [3, 1], [7, 0], [7, 1]]
    assert lines["original"].tolist() == [0.25, 0.75, 0.5, 0.5]
    assert lines["converted"].tolist() == actual.astype(np.float64).ravel().tolist()
    assert lines["original_text"].isna().all() and set(lines["format"]) == {"onnx"}


def test_text_labels_are_kept_as_text_and_missing_ones_as_null():
    lines = output_lines(
        (*KEYS[:3], "predict"),
        np.arange(3),
        np.array(["a", "b", "c"], dtype=object),
        np.array(["a", None, "c"], dtype=object),
    )
    assert lines["original"].isna().all()
    assert lines["original_text"].tolist() == ["a", "b", "c"]
    assert lines["converted_text"].isna().tolist() == [False, True, False]


def test_outputs_of_another_shape_are_left_out():
    assert output_lines(KEYS, np.arange(2), np.zeros((2, 3)), np.zeros((2, 2))) is None


def _onnx(layouts: dict[str, str]) -> Conversion:
    details = OnnxDetails(
        inputs=[],
        outputs={},
        opset={},
        target_opset={},
        precision="float32",
        skl2onnx="test",
        layouts=layouts,
    )
    return Conversion(format="onnx", status=ConversionStatus.CONVERTED, details=details)


def test_a_run_is_kept_in_the_layout_it_was_compared_in_and_round_trips_through_parquet():
    d = np.array([-1.5, 0.25, 2.0])  # rows 4, 5 and 6 of seven reference rows
    predictions = {"decision_function": np.r_[np.zeros(4), d], "predict": np.zeros(7, dtype=int)}
    run = Run("host", "onnxruntime", np.array([4, 5, 6]), {"decision_function": np.column_stack([-d, d])})
    log = OutputLog()
    assert log.frame().equals(empty())
    log.add(predictions, _onnx({"decision_function": "(N, 2) = [-d, d]"}), [run])
    gathered = OutputLog()
    gathered.extend(log)
    back = read_parquet(gathered.to_parquet())
    assert back["row"].tolist() == [4, 4, 5, 5, 6, 6]
    assert back["original"].tolist() == back["converted"].tolist() == [1.5, -1.5, -0.25, 0.25, -2.0, 2.0]
    assert set(back["output"]) == {"decision_function"}  # predict: the run gave none
    pd.testing.assert_frame_equal(back, log.frame())


def test_a_table_without_the_columns_is_refused_saying_which_are_missing():
    frame = read_parquet(to_parquet(empty())).drop(columns=["converted"])
    buffer = frame.to_parquet(index=False)
    with pytest.raises(ValueError, match=r"lacks converted\. .*render the report without it"):
        read_parquet(buffer)
