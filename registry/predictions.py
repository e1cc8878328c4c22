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


#: Rows the estimator predicts on at a time: its temporaries (a pipeline's scaled copy of the rows, each
#: method's outputs) stay bounded whatever the reference set's size.
PREDICT_ROWS = 65_536
#: The shortest last piece; a shorter remainder joins the piece before it (see :func:`row_chunks`).
MIN_LAST_ROWS = 256

_COLUMN = re.compile(r"^(?P<output>[a-z_]+)\[(?P<index>\d+)\]$")


def reference_outputs(estimator: object) -> list[str]:
    """The reference outputs :func:`reference_predictions` keeps for ``estimator``, without computing them."""
    found: dict[str, object] = {}
    for method in OUTPUT_METHODS:
        if wanted(estimator, method, found):
            found[method] = None
    return list(found)


def row_chunks(n_rows: int, chunk_rows: int | None = None) -> list[slice]:
    """Slices of ``n_rows`` rows into pieces of ``chunk_rows`` (default :data:`PREDICT_ROWS`), the last one
    longer by a short remainder.

    Each piece starts at a multiple of its size, a power of two (``chunk_rows`` is rounded down to one), and
    a remainder shorter than :data:`MIN_LAST_ROWS` joins the last piece: BLAS kernels take rows in groups of
    a few, so a row's arithmetic can depend on its place in a group (a last-bit difference); pieces aligned
    this way keep every row's place, and the same rows at the end, so the outputs in pieces are the outputs
    in one piece, bit for bit. One piece when ``n_rows < chunk_rows + MIN_LAST_ROWS``.
    """
    limit = max(1, PREDICT_ROWS if chunk_rows is None else chunk_rows)
    size = 1 << (limit.bit_length() - 1)
    starts = list(range(0, n_rows, size)) or [0]
    if len(starts) > 1 and n_rows - starts[-1] < min(MIN_LAST_ROWS, size):
        starts.pop()
    return [slice(a, b) for a, b in zip(starts, [*starts[1:], n_rows], strict=True)]


def concat_rows(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-piece outputs (each a dict of arrays whose rows run along axis 0) as one dict of arrays."""
    if len(parts) == 1:
        return parts[0]
    return {key: np.concatenate([part[key] for part in parts], axis=0) for key in parts[0]}


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
    pieces = row_chunks(len(X), chunk_rows)
    if len(pieces) == 1:
        return _predict(estimator, X)
    return concat_rows([_predict(estimator, X.iloc[rows]) for rows in pieces])


def _predict(estimator: object, X: pd.DataFrame) -> dict[str, np.ndarray]:
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
