"""An estimator's reference outputs, computed the same way in Parity's process and in a training run's own
environment.

This file imports nothing of Parity: besides being :mod:`parity.registry.predictions`' engine, it is run by
its path (``python -I estimator_outputs.py REQUEST_DIR``) by the interpreter of a virtual environment built
from a training run's recorded requirements (:mod:`parity.registry.environments`), so both sides share one
piece of code. It therefore keeps to what every Python from 3.8 and every scikit-learn, numpy and pandas of
the last years offer.

Rows and outputs cross the process boundary as ``.npz`` files read with ``allow_pickle=False`` plus a small
JSON description: text as numpy unicode arrays with a mask of the missing values, never a pickle.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
from sklearn.base import is_clusterer, is_outlier_detector

#: The estimator methods whose outputs are kept as the reference, in the order they are tried.
OUTPUT_METHODS: tuple[str, ...] = (
    "predict",
    "predict_proba",
    "decision_function",
    "score_samples",
    "transform",
)

#: Rows the estimator predicts on at a time: its temporaries (a pipeline's scaled copy of the rows, each
#: method's outputs) stay bounded whatever the reference set's size.
PREDICT_ROWS = 65_536
#: The shortest last piece; a shorter remainder joins the piece before it (see :func:`row_chunks`).
MIN_LAST_ROWS = 256


def wanted(estimator: object, method: str, found: Any) -> bool:
    """Whether ``method``'s output is a reference output of ``estimator`` (given those ``found`` so far).

    Every estimator kind keeps what it is used for: classifiers and regressors their predictions (and
    scores), outlier detectors ``predict``, ``decision_function`` and ``score_samples``, clusterers their
    labels and distances (``transform``), transformers their ``transform``.
    """
    if not hasattr(estimator, method):
        return False
    if method == "score_samples":
        return bool(is_outlier_detector(estimator))
    if method == "transform":
        return "predict" not in found or bool(is_clusterer(estimator))
    return True


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
    ends = [*starts[1:], n_rows]
    return [slice(start, ends[i]) for i, start in enumerate(starts)]


def concat_rows(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-piece outputs (each a dict of arrays whose rows run along axis 0) as one dict of arrays."""
    if len(parts) == 1:
        return parts[0]
    return {key: np.concatenate([part[key] for part in parts], axis=0) for key in parts[0]}


def reference_predictions(
    estimator: object, X: pd.DataFrame, chunk_rows: int | None = None, error: type[Exception] = ValueError
) -> dict[str, np.ndarray]:
    """Run every wanted output method of ``estimator`` on ``X``, ``chunk_rows`` rows at a time.

    Parameters
    ----------
    estimator : fitted scikit-learn estimator or pipeline
    X : pandas.DataFrame
        The reference rows, with the columns the estimator was fitted on.
    chunk_rows : int, optional
        The most rows one call of a method gets (see :func:`row_chunks`).
    error : type of Exception
        What to raise when a method fails or none is offered (Parity passes its ``InvalidInputError``).

    Returns
    -------
    dict of str to numpy.ndarray
        One entry per method in :data:`OUTPUT_METHODS` the estimator has and is used for (:func:`wanted`).
    """
    pieces = row_chunks(len(X), chunk_rows)
    if len(pieces) == 1:
        return _predict(estimator, X, error)
    return concat_rows([_predict(estimator, X.iloc[rows], error) for rows in pieces])


def _predict(estimator: object, X: pd.DataFrame, error: type[Exception]) -> dict[str, np.ndarray]:
    outputs: dict[str, np.ndarray] = {}
    for method in OUTPUT_METHODS:
        if not wanted(estimator, method, outputs):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                result = getattr(estimator, method)(X)
        except Exception as err:
            raise error(
                f"{type(estimator).__name__}.{method} failed on the reference data: {err}. "
                "Check that the reference rows look like the training rows (same columns and types)."
            ) from err
        if hasattr(result, "toarray"):
            result = result.toarray()
        outputs[method] = np.asarray(result)
    if not outputs:
        raise error(
            f"{type(estimator).__name__} has none of {', '.join(OUTPUT_METHODS)}: "
            "register a fitted estimator, pipeline or transformer."
        )
    return outputs


# --- crossing the process boundary: arrays a .npz holds without pickle, and a JSON description -------------

#: How a missing text value is written in a text column's mask (0: a value), so each comes back as it was.
_MISSING: tuple[tuple[int, Any], ...] = ((1, float("nan")), (2, None), (3, pd.NA))


class CarryError(ValueError):
    """A column or an output holds values that cannot cross the process boundary without pickle."""


def _missing_code(value: Any) -> int:
    if value is None:
        return 2
    if value is pd.NA:
        return 3
    if isinstance(value, float) and value != value:
        return 1
    return 0


def _text_arrays(values: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Object values (strings and missing values) as a unicode array and its mask of missing codes."""
    flat = values.ravel()
    mask = np.array([_missing_code(v) for v in flat], dtype=np.int8)
    bad = [v for v in flat[mask == 0] if not isinstance(v, str)]
    if bad:
        raise CarryError(
            f"{what} holds {type(bad[0]).__name__} values (e.g. {bad[0]!r}) among its text: only text, "
            "numbers and missing values cross to the run's environment. Give the column one type."
        )
    present = flat.copy()
    present[mask != 0] = ""
    text = np.array(present.tolist(), dtype=str)
    return text.reshape(values.shape), mask.reshape(values.shape)


def _object_from_text(text: np.ndarray, mask: np.ndarray) -> np.ndarray:
    values = text.astype(object)
    for code, missing in _MISSING:
        values[mask == code] = missing
    return values


def frame_to_arrays(frame: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``frame``'s columns as arrays (keys ``c0``, ``m0``, ``k0``...) and the JSON that rebuilds them."""
    arrays: dict[str, np.ndarray] = {}
    columns = []
    for i, name in enumerate(frame.columns):
        column = frame.iloc[:, i]
        dtype = column.dtype
        entry: dict[str, Any] = {"name": name, "dtype": str(dtype)}
        if isinstance(dtype, pd.CategoricalDtype):
            categories = np.asarray(dtype.categories)
            if categories.dtype == object:
                arrays[f"k{i}"], _ = _text_arrays(categories, f"column {name!r}'s categories")
            else:
                arrays[f"k{i}"] = categories
            arrays[f"c{i}"] = np.asarray(column.cat.codes)
            entry.update(kind="category", ordered=bool(dtype.ordered))
        elif isinstance(dtype, np.dtype) and dtype.kind in "biufcmM":
            arrays[f"c{i}"] = column.to_numpy()
            entry["kind"] = "array"
        else:
            arrays[f"c{i}"], arrays[f"m{i}"] = _text_arrays(
                column.to_numpy(dtype=object), f"column {name!r} ({dtype})"
            )
            entry["kind"] = "text"
        columns.append(entry)
    return arrays, {"columns": columns}


def frame_from_arrays(arrays: Any, meta: dict[str, Any]) -> pd.DataFrame:
    """Invert :func:`frame_to_arrays` (text columns keep their dtype where this pandas knows it)."""
    data = {}
    for i, entry in enumerate(meta["columns"]):
        values = arrays[f"c{i}"]
        if entry["kind"] == "category":
            categories = arrays[f"k{i}"]
            if categories.dtype.kind == "U":
                categories = categories.astype(object)
            series = pd.Series(pd.Categorical.from_codes(values, categories, ordered=entry["ordered"]))
        elif entry["kind"] == "text":
            series = _text_series(_object_from_text(values, arrays[f"m{i}"]), entry["dtype"])
        else:
            series = pd.Series(values)
        data[i] = series
    frame = pd.DataFrame(data)
    frame.columns = [entry["name"] for entry in meta["columns"]]
    return frame


def _text_series(values: np.ndarray, dtype: str) -> pd.Series:
    try:
        return pd.Series(values, dtype=dtype)
    except (TypeError, ValueError):  # a string dtype this pandas does not have: plain objects
        return pd.Series(values, dtype=object)


def outputs_to_arrays(outputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Outputs as arrays (``o0``, ``p0``...) plus the JSON that restores their names, order and dtypes."""
    arrays: dict[str, np.ndarray] = {}
    entries = []
    for i, (name, values) in enumerate(outputs.items()):
        entry: dict[str, Any] = {"name": name, "dtype": str(values.dtype)}
        if values.dtype == object:
            flat = values.ravel()
            if all(isinstance(v, (str, type(None))) or _missing_code(v) for v in flat):
                arrays[f"o{i}"], arrays[f"p{i}"] = _text_arrays(values, f"output {name}")
                entry["kind"] = "text"
            else:
                try:
                    arrays[f"o{i}"] = np.array(flat.tolist()).reshape(values.shape)
                except ValueError as err:
                    raise CarryError(f"output {name} holds values of mixed types: {err}") from err
                if arrays[f"o{i}"].dtype == object:
                    raise CarryError(f"output {name} holds values that are neither text nor numbers")
                entry["kind"] = "numbers"
        else:
            arrays[f"o{i}"] = values
            entry["kind"] = "array"
        entries.append(entry)
    return arrays, {"outputs": entries}


def outputs_from_arrays(arrays: Any, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """Invert :func:`outputs_to_arrays`: object outputs (string labels) come back as object arrays."""
    outputs = {}
    for i, entry in enumerate(meta["outputs"]):
        values = arrays[f"o{i}"]
        if entry["kind"] == "text":
            values = _object_from_text(values, arrays[f"p{i}"])
        elif entry["kind"] == "numbers":
            values = values.astype(object)
        outputs[entry["name"]] = values
    return outputs


def write_arrays(folder: Path, stem: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """``stem.npz`` and ``stem.json`` in ``folder``."""
    np.savez(folder / f"{stem}.npz", **arrays)  # type: ignore[arg-type]  # numpy's stubs: a key may be allow_pickle
    (folder / f"{stem}.json").write_text(json.dumps(meta))


def read_arrays(folder: Path, stem: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """What :func:`write_arrays` wrote, read without pickle."""
    with np.load(folder / f"{stem}.npz", allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    return arrays, json.loads((folder / f"{stem}.json").read_text())


# --- the child: load the model, compute its outputs, write them -------------------------------------------


def _load_skops(path: str, trusted: list[str]) -> object:
    import skops.io

    return skops.io.load(path, trusted=trusted)


def _load_pickle(path: str, trusted: list[str]) -> object:
    import pickle

    with open(path, "rb") as file:
        return pickle.load(file)


def _load_joblib(path: str, trusted: list[str]) -> object:
    import joblib

    return joblib.load(path)


#: Each model format: how the child loads it (the caller has checked trust and SHA-256 already), and the
#: packages loading needs besides numpy, pandas and scikit-learn.
FORMATS: dict[str, tuple[Any, tuple[str, ...]]] = {
    "skops": (_load_skops, ("skops",)),
    "pickle": (_load_pickle, ()),
    "joblib": (_load_joblib, ("joblib",)),
}


def _limit_resources(memory_mb: int) -> None:
    """At most ``memory_mb`` MiB of address space beyond what is mapped now, no core dumps, and death with the
    parent (best effort where prctl is missing)."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_mb > 0:
        with open("/proc/self/status") as status:
            mapped = next((int(line.split()[1]) << 10 for line in status if line.startswith("VmSize:")), 0)
        limit = mapped + (memory_mb << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _fail(what: str, err: BaseException) -> NoReturn:
    """Exit with the traceback, then one line saying what failed (the line the parent quotes last)."""
    import traceback

    traceback.print_exception(type(err), err, err.__traceback__)
    why = (
        "it needed more memory than allowed"
        if isinstance(err, MemoryError)
        else f"{type(err).__name__}: {err}"
    )
    sys.exit(f"{what} failed in Python {sys.version.split()[0]}: {why}")


def run_request(folder: Path) -> None:
    """In the child: answer the request in ``folder`` (``request.json``, ``rows.npz``/``rows.json``) with
    ``outputs.npz``/``outputs.json``."""
    request = json.loads((folder / "request.json").read_text())
    arrays, meta = read_arrays(folder, "rows")
    rows = frame_from_arrays(arrays, meta)
    _limit_resources(int(request.get("memory_mb", 0)))
    load, _ = FORMATS[request["format"]]
    try:
        estimator = load(request["model"], list(request.get("trusted", [])))
    except BaseException as err:
        _fail(f"loading the {request['format']} model", err)
    try:
        outputs = reference_predictions(estimator, rows)
    except BaseException as err:
        _fail("predicting on the reference rows", err)
    out_arrays, out_meta = outputs_to_arrays(outputs)
    out_meta["versions"] = {
        "python": ".".join(str(part) for part in sys.version_info[:3]),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": __import__("sklearn").__version__,
    }
    write_arrays(folder, "outputs", out_arrays, out_meta)


if __name__ == "__main__":
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit("usage: python -I estimator_outputs.py REQUEST_DIR")
    run_request(Path(sys.argv[1]))
