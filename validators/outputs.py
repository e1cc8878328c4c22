"""Every runtime's converted outputs, row by row, next to the reference outputs they were compared with.

A report row (:class:`~parity.core.records.Check`) keeps summary figures only; :class:`OutputLog` keeps what
they summarise, so that a bundle can hold it (``outputs.parquet``) and its HTML report can be drawn again
from the bundle alone. The table is long: one line per runtime, target, output, reference row and column of
that output, with the reference value and the converted one, both in the reference's layout (a converter's
own layout, e.g. ``(N, 2) = [-d, d]``, is arranged as the comparison arranged it).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from parity.core.records import Conversion, Role

from .compare import align
from .formats import format_of

#: The columns of the table, in order: which cell, which reference row and column, and the two values.
#: ``original``/``converted`` hold numbers (NaN where an output is text); ``original_text``/``converted_text``
#: hold text outputs (string labels) and are null for numeric ones.
COLUMNS = (
    "format",
    "runtime",
    "target",
    "output",
    "row",
    "column",
    "original",
    "converted",
    "original_text",
    "converted_text",
)
_KEYS = COLUMNS[:4]


@dataclass(frozen=True)
class Run:
    """Outputs of one runtime on one target, mapped to reference outputs, for cross-target comparison."""

    target: str
    runtime: str
    index: np.ndarray
    outputs: dict[str, np.ndarray]
    role: Role = Role.DEPLOY
    #: whether its cells block the model (a deploy runtime on a deploy target)
    blocking: bool = True


def empty() -> pd.DataFrame:
    """The table with no line (a bundle of a version no runtime evaluated)."""
    return _typed(pd.DataFrame({c: [] for c in COLUMNS}))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype(
        {
            "format": "string",
            "runtime": "string",
            "target": "string",
            "output": "string",
            "row": "int64",
            "column": "int32",
            "original": "float64",
            "converted": "float64",
            "original_text": "string",
            "converted_text": "string",
        }
    )
    return frame[list(COLUMNS)]


def _as_2d(values: np.ndarray) -> np.ndarray:
    return values.reshape(len(values), -1) if values.ndim != 2 else values


def _numeric(values: np.ndarray) -> bool:
    return values.dtype.kind in "biuf"


def output_lines(
    keys: tuple[str, str, str, str], index: np.ndarray, expected: np.ndarray, actual: np.ndarray
) -> pd.DataFrame | None:
    """The lines of one output of one run (None when the two sides have different shapes: not compared)."""
    expected, actual = _as_2d(np.asarray(expected)), _as_2d(np.asarray(actual))
    if expected.shape != actual.shape:
        return None
    rows, columns = expected.shape
    numeric = _numeric(expected) and _numeric(actual)
    frame = pd.DataFrame(
        {
            "row": np.repeat(np.asarray(index, dtype=np.int64), columns),
            "column": np.tile(np.arange(columns, dtype=np.int32), rows),
        }
    )
    for name, values in (("original", expected), ("converted", actual)):
        flat = values.reshape(-1)
        frame[name] = flat.astype(np.float64) if numeric else np.nan
        frame[f"{name}_text"] = None if numeric else pd.Series(flat, dtype=object).map(_text).to_numpy()
    for key, value in zip(_KEYS, keys, strict=True):
        frame[key] = value
    return _typed(frame)


def _text(value: object) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def run_lines(predictions: Mapping[str, np.ndarray], conversion: Conversion, run: Run) -> list[pd.DataFrame]:
    """The lines of every reference output one run gave, arranged as :func:`~.compare.align` arranges them.

    Parameters
    ----------
    predictions : mapping of str to numpy.ndarray
        The reference outputs on every reference row.
    conversion : Conversion
    run : Run
    """
    spec = format_of(conversion.format)
    frames = []
    for output, actual in run.outputs.items():
        if output not in predictions:
            continue
        expected, actual, _ = align(predictions[output][run.index], actual, spec.layout(conversion, output))
        keys = (conversion.name, run.runtime, run.target, output)
        lines = output_lines(keys, run.index, expected, actual)
        if lines is not None:
            frames.append(lines)
    return frames


class OutputLog:
    """The converted outputs of the runs a validation made, gathered as it makes them.

    Pass one to :func:`~parity.validators.validate.validate_conversion` (and
    :func:`~parity.validators.validate.remedied`); :meth:`frame` then gives the table of :data:`COLUMNS`.
    """

    def __init__(self) -> None:
        self._frames: list[pd.DataFrame] = []

    def add(self, predictions: Mapping[str, np.ndarray], conversion: Conversion, runs: Iterable[Run]) -> None:
        """Keep the outputs of ``runs`` of ``conversion``, next to the reference ``predictions``."""
        for run in runs:
            self._frames.extend(run_lines(predictions, conversion, run))

    def extend(self, other: OutputLog) -> None:
        """Keep what another log kept (one log per format, gathered for the bundle)."""
        self._frames.extend(other._frames)

    def frame(self) -> pd.DataFrame:
        """Every line kept, in the order the runs were made."""
        return pd.concat(self._frames, ignore_index=True) if self._frames else empty()

    def to_parquet(self) -> bytes:
        """The table as parquet bytes (``outputs.parquet`` in a bundle)."""
        return to_parquet(self.frame())


def to_parquet(frame: pd.DataFrame) -> bytes:
    """``frame`` (of :data:`COLUMNS`) as parquet bytes."""
    buffer = io.BytesIO()
    _typed(frame).to_parquet(buffer, index=False)
    return buffer.getvalue()


def read_parquet(source: bytes | str) -> pd.DataFrame:
    """The table back from parquet bytes or a path, checked to have :data:`COLUMNS`.

    Raises
    ------
    ValueError
        The file lacks some of the columns: it is not an outputs table of this version of Parity.
    """
    frame = pd.read_parquet(io.BytesIO(source) if isinstance(source, bytes) else source)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"an outputs table needs the columns {', '.join(COLUMNS)}; this one lacks {', '.join(missing)}. "
            "It was not written by Parity's OutputLog: render the report without it."
        )
    return _typed(frame)
