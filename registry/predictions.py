"""Reference predictions of the original estimator, and their lossless round trip through parquet."""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.base import is_clusterer, is_outlier_detector

from parity.core.errors import InvalidInputError

#: The estimator methods whose outputs are kept as the reference, in the order they are tried.
OUTPUT_METHODS: tuple[str, ...] = (
    "predict",
    "predict_proba",
    "decision_function",
    "score_samples",
    "transform",
)


def wanted(estimator: object, method: str, found: Mapping[str, object]) -> bool:
    """Whether ``method``'s output is a reference output of ``estimator`` (given those ``found`` so far).

    Every estimator kind keeps what it is used for: classifiers and regressors their predictions (and
    scores), outlier detectors ``predict``, ``decision_function`` and ``score_samples``, clusterers their
    labels and distances (``transform``), transformers their ``transform``.
    """
    if not hasattr(estimator, method):
        return False
    if method == "score_samples":
        return is_outlier_detector(estimator)
    if method == "transform":
        return "predict" not in found or is_clusterer(estimator)
    return True


_COLUMN = re.compile(r"^(?P<output>[a-z_]+)\[(?P<index>\d+)\]$")


def reference_outputs(estimator: object) -> list[str]:
    """The reference outputs :func:`reference_predictions` keeps for ``estimator``, without computing them."""
    found: dict[str, object] = {}
    for method in OUTPUT_METHODS:
        if wanted(estimator, method, found):
            found[method] = None
    return list(found)


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
        One entry per method in :data:`OUTPUT_METHODS` the estimator has and is used for (see
        :func:`wanted`): ``transform`` for transformers and clusterers, ``score_samples`` for outlier
        detectors.

    Raises
    ------
    InvalidInputError
        When the estimator offers none of the methods, or one of them fails on ``X``.
    """
    outputs: dict[str, np.ndarray] = {}
    for method in OUTPUT_METHODS:
        if not wanted(estimator, method, outputs):
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
