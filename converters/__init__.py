"""Estimator → artifact converters: one entry per format in :data:`FORMATS`, PMML first (archived first)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .base import Conversion, Status

_shared_pmml = None
_shared_lock = threading.Lock()


def shared_pmml_converter():
    """The process's one warm PMML converter JVM, started on first use."""
    global _shared_pmml
    with _shared_lock:
        if _shared_pmml is None:
            from .pmml_server import WarmPmmlConverter

            _shared_pmml = WarmPmmlConverter()
        return _shared_pmml


def _to_pmml(estimator: object, X: pd.DataFrame, out_path: Path) -> Conversion:
    from .pmml import convert_pmml

    return convert_pmml(estimator, X, out_path, shared_pmml_converter())


def _to_onnx(estimator: object, X: pd.DataFrame, out_path: Path) -> Conversion:
    from .onnx import convert_onnx

    return convert_onnx(estimator, X, out_path)


@dataclass(frozen=True)
class Format:
    """A target format: the artifact's file name in a bundle, and how to convert to it."""

    name: str
    filename: str
    convert: Callable[[object, pd.DataFrame, Path], Conversion]


#: Every format Parity converts to. Order is archive priority: PMML is the long-term format.
FORMATS: dict[str, Format] = {
    "pmml": Format("pmml", "model.pmml", _to_pmml),
    "onnx": Format("onnx", "model.onnx", _to_onnx),
}


def convert(fmt: str, estimator: object, X: pd.DataFrame, out_dir: Path) -> Conversion:
    """Convert ``estimator`` to format ``fmt`` into ``out_dir``; see :data:`FORMATS`.

    Raises
    ------
    KeyError
        For a format not in :data:`FORMATS` (the message lists those that are).
    """
    try:
        entry = FORMATS[fmt]
    except KeyError:
        raise KeyError(f"no format {fmt!r}; known formats: {', '.join(FORMATS)}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    return entry.convert(estimator, X, out_dir / entry.filename)


__all__ = ["FORMATS", "Conversion", "Format", "Status", "convert", "shared_pmml_converter"]
