"""Reference predictions of the original estimator, and their lossless round trip through parquet."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from parity.core.errors import InvalidInputError

from . import estimator_outputs

# The outputs themselves are computed by estimator_outputs, a module without Parity imports that a training
# run's own environment runs too (parity.registry.environments): one piece of code serves both sides.
OUTPUT_METHODS = estimator_outputs.OUTPUT_METHODS
MIN_LAST_ROWS = estimator_outputs.MIN_LAST_ROWS
#: Rows the estimator predicts on at a time (see :func:`row_chunks`); read at each call, so a patch of this
#: name reaches every caller of the default.
PREDICT_ROWS = estimator_outputs.PREDICT_ROWS
wanted = estimator_outputs.wanted
reference_outputs = estimator_outputs.reference_outputs
concat_rows = estimator_outputs.concat_rows

_COLUMN = re.compile(r"^(?P<output>[a-z_]+)\[(?P<index>\d+)\]$")


def row_chunks(n_rows: int, chunk_rows: int | None = None) -> list[slice]:
    """Slices of ``n_rows`` rows into pieces of ``chunk_rows`` (default :data:`PREDICT_ROWS`): see
    :func:`parity.registry.estimator_outputs.row_chunks`, which keeps every row's place in its BLAS group so
    the outputs in pieces are the outputs in one piece, bit for bit."""
    return estimator_outputs.row_chunks(n_rows, PREDICT_ROWS if chunk_rows is None else chunk_rows)


def reference_predictions(
    estimator: object, X: pd.DataFrame, chunk_rows: int | None = None
) -> dict[str, np.ndarray]:
    """Run every available output method of ``estimator`` on ``X``, ``chunk_rows`` rows at a time.

    Parameters
    ----------
    estimator : fitted scikit-learn estimator or pipeline
    X : pandas.DataFrame
        The reference rows, with the columns the estimator was fitted on.
    chunk_rows : int, optional
        The most rows one call of a method gets (see :func:`row_chunks`; default :data:`PREDICT_ROWS`):
        memory stays bounded on large
        reference sets; scikit-learn's methods work row by row, so the outputs are the same as in one piece.

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
    rows = PREDICT_ROWS if chunk_rows is None else chunk_rows
    return estimator_outputs.reference_predictions(estimator, X, rows, error=InvalidInputError)


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
