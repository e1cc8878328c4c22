"""Map each runtime's raw outputs onto the reference outputs they stand for."""

from __future__ import annotations

import numpy as np
import pandas as pd

from parity.converters import Conversion


def onnx_outputs(raw: dict[str, np.ndarray], conversion: Conversion) -> dict[str, np.ndarray]:
    """ONNX output names → reference outputs (``label`` → ``predict``...), by the conversion's roles."""
    return {
        role: np.asarray(raw[name]) for name, role in conversion.details["outputs"].items() if name in raw
    }


def pmml_outputs(frame: pd.DataFrame, conversion: Conversion) -> dict[str, np.ndarray]:
    """PMML result columns → reference outputs.

    JPMML names the prediction after the target field (``y``), pypmml ``predicted_y``; class probabilities
    are ``probability(<class>)`` in both, put back in the estimator's ``classes_`` order. A runtime that
    gives no label (pypmml for classifiers) simply has no ``predict`` output to compare.
    """
    details = conversion.details
    target = details["target"]
    outputs: dict[str, np.ndarray] = {}
    for column in (target, f"predicted_{target}"):
        if column in frame.columns:
            outputs["predict"] = frame[column].to_numpy()
            break
    classes = details.get("classes")
    if classes:
        columns = [f"probability({c})" for c in classes]
        if all(c in frame.columns for c in columns):
            outputs["predict_proba"] = frame[columns].to_numpy(dtype=np.float64)
    return outputs
