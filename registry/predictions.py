"""Reference predictions of the original estimator, and their lossless round trip through parquet."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

from parity.core.errors import InvalidInputError

#: The estimator methods whose outputs are kept as the reference, in the order they are tried.
OUTPUT_METHODS: tuple[str, ...] = ("predict", "predict_proba", "decision_function", "transform")

_COLUMN = re.compile(r"^(?P<output>[a-z_]+)\[(?P<index>\d+)\]$")


def reference_predictions(estimator: object, X: pd.DataFrame) -> dict[str, np.ndarray]:
    """Run every available output method of ``estimator`` on ``X``.

    Parameters
    ----------
    estimator : fitted scikit-learn estimator or pipeline
    X : pandas.DataFrame
        The reference rows, with the columns the estimator was fitted on.

    Returns
    -------
    dict of str to numpy.ndarray
        One entry per method in :data:`OUTPUT_METHODS` the estimator has; ``transform`` only for
        estimators without ``predict``.

    Raises
    ------
    InvalidInputError
        When the estimator offers none of the methods, or one of them fails on ``X``.
    """
    outputs: dict[str, np.ndarray] = {}
    for method in OUTPUT_METHODS:
        if method == "transform" and "predict" in outputs:
            continue
        if not hasattr(estimator, method):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                result = getattr(estimator, method)(X)
        except Exception as err:
            raise InvalidInputError(
                f"{type(estimator).__name__}.{method} failed on the reference data: {err}. "
                "Check that the reference rows look like the training rows (same columns and types)."
            ) from err
        if hasattr(result, "toarray"):
            result = result.toarray()
        outputs[method] = np.asarray(result)
    if not outputs:
        raise InvalidInputError(
            f"{type(estimator).__name__} has none of {', '.join(OUTPUT_METHODS)}: "
            "register a fitted estimator, pipeline or transformer."
        )
    return outputs


def predictions_to_frame(outputs: dict[str, np.ndarray]) -> pd.DataFrame:
    """Lay outputs out as columns: ``predict`` for 1-D outputs, ``predict_proba[0]``... for 2-D ones."""
    columns: dict[str, np.ndarray] = {}
    for name, values in outputs.items():
        if values.ndim == 1:
            columns[name] = values
        else:
            for j in range(values.shape[1]):
                columns[f"{name}[{j}]"] = values[:, j]
    return pd.DataFrame(columns)


def predictions_from_frame(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Invert :func:`predictions_to_frame`."""
    plain: dict[str, np.ndarray] = {}
    parts: dict[str, dict[int, np.ndarray]] = {}
    for column in frame.columns:
        match = _COLUMN.match(column)
        values = frame[column].to_numpy()
        if match:
            parts.setdefault(match["output"], {})[int(match["index"])] = values
        else:
            plain[column] = values
    for name, by_index in parts.items():
        plain[name] = np.column_stack([by_index[j] for j in sorted(by_index)])
    return plain
