"""The formats Parity converts to, one spec per format in :data:`FORMATS`, each carrying all its behaviour.

A spec knows its artifact's file name, its converter, how reference rows are fed to its runtimes and to its
runner, how raw outputs map to the estimator's reference outputs, the artifact's precision, its in-process
runtimes, its runner for targets away from this process, and which of its runtimes is the same engine as
that runner (their outputs are compared across targets). Nothing outside this module asks which format a
conversion is: it asks the conversion's spec. Adding a format is one spec here (plus its converter module
and its details record).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from parity.converters import convert_onnx, convert_pmml, shared_pmml_converter
from parity.converters import onnx as onnx_converter
from parity.converters import pmml as pmml_converter
from parity.core.records import Conversion, OnnxDetails, OnnxInput, PmmlDetails, PmmlField, Precision
from parity.core.tables import table_of

from .runtimes import Runtime
from .runtimes.engine import pmml_runtimes
from .runtimes.onnx import OnnxReferenceRuntime, OnnxruntimeRuntime
from .targets.local import OnnxRunner
from .targets.pmml_runner import PmmlRunner
from .targets.runners import RemoteRunner


class FormatSpec(ABC):
    """One format: everything Parity does differently for its artifacts.

    Attributes
    ----------
    name : str
        The format's name in reports (``onnx``, ``pmml``).
    filename : str
        The artifact's file name in a bundle.
    runtimes : tuple of Runtime
        The in-process runtimes that evaluate its artifacts, in report order.
    remote : RemoteRunner
        The runner that evaluates its artifacts on targets away from this process.
    engine : str
        The runtime (of :attr:`runtimes`) that is the same engine as :attr:`remote`: cross-target
        comparisons put its outputs next to the runner's.
    starts_jvm : bool
        Whether converting or evaluating its artifacts starts a JVM (seconds, not milliseconds).
    remedy : str or None
        The variant converted when an artifact fails on its float32 numerics (see :meth:`convert_remedy`).
    """

    name: str
    filename: str
    runtimes: tuple[Runtime, ...]
    remote: RemoteRunner
    engine: str
    starts_jvm: bool = False
    remedy: str | None = None

    def convert(self, estimator: object, X: pd.DataFrame, out_dir: Path) -> Conversion:
        """Convert ``estimator`` into ``out_dir / filename``; a refusal is a result, not an exception."""
        out_dir.mkdir(parents=True, exist_ok=True)
        return self._convert(estimator, X, out_dir / self.filename)

    @abstractmethod
    def _convert(self, estimator: object, X: pd.DataFrame, out_path: Path) -> Conversion: ...

    def convert_remedy(self, estimator: object, X: pd.DataFrame, out_dir: Path) -> Conversion:
        """Convert the :attr:`remedy` variant into ``out_dir`` (a format without one has nothing to try)."""
        raise NotImplementedError(f"the {self.name} format has no remedy variant")

    @abstractmethod
    def feeds(self, conversion: Conversion, X: pd.DataFrame) -> Any:
        """Rows ``X`` as this format's in-process runtimes take them."""

    @abstractmethod
    def remote_inputs(self, conversion: Conversion, X: pd.DataFrame) -> Any:
        """Rows ``X`` as this format's runner takes them (nothing that would need pickling)."""

    @abstractmethod
    def outputs(self, raw: Any, conversion: Conversion) -> dict[str, np.ndarray]:
        """A runtime's (or the runner's) raw outputs as reference outputs (``predict``, ``predict_proba``...)."""

    def precision(self, conversion: Conversion) -> Precision:
        """The artifact's numeric precision, as its converter read it from the artifact."""
        return self.details(conversion).precision

    @abstractmethod
    def details(self, conversion: Conversion) -> OnnxDetails | PmmlDetails:
        """The conversion's details record, checked to be this format's."""

    def embedded_rows(self, conversion: Conversion) -> int:
        """How many verification rows the converter embedded in the artifact (0: the format has none)."""
        return 0

    @abstractmethod
    def float_inputs(self, conversion: Conversion) -> list[str]:
        """The reference columns the artifact declares float32: its runtimes round them before evaluating."""

    @abstractmethod
    def field_names(self, conversion: Conversion, output: str) -> str:
        """What in the artifact should hold reference output ``output`` (for a coverage failure)."""

    def layout(self, conversion: Conversion, output: str) -> str | None:
        """The known layout the artifact gives ``output`` in, where several fit its shape (None: the first)."""
        return None

    def not_emitted(self, conversion: Conversion, estimator: object) -> dict[str, str]:
        """Reference outputs the converter is known not to emit for this estimator, each with the reason.

        A conversion recorded before Parity said so (a schema-1 report) gets them from the estimator.
        """
        recorded = self.details(conversion).not_emitted
        return dict(recorded) if recorded is not None else self._not_emitted(conversion, estimator)

    @abstractmethod
    def _not_emitted(self, conversion: Conversion, estimator: object) -> dict[str, str]: ...

    def same_engine(self, runtime: str) -> bool:
        """Whether outputs named ``runtime`` come from the engine compared across targets."""
        return runtime in (self.engine, self.remote.runtime)

    def __repr__(self) -> str:
        return f"<format {self.name}>"


def _checked(conversion: Conversion, kind: type, fmt: str) -> Any:
    if not isinstance(conversion.details, kind):
        raise ValueError(
            f"the {conversion.format} conversion ({conversion.status}) has no {fmt} details: it produced no "
            f"{fmt} artifact to run."
        )
    return conversion.details


class OnnxFormat(FormatSpec):
    """ONNX through skl2onnx: float32 matrix or per-column inputs; onnxruntime and onnx's reference."""

    name = "onnx"
    filename = "model.onnx"
    engine = "onnxruntime"

    def __init__(self) -> None:
        self.runtimes = (OnnxruntimeRuntime(), OnnxReferenceRuntime())
        self.remote = OnnxRunner()

    remedy = "double"

    def _convert(self, estimator: object, X: pd.DataFrame, out_path: Path) -> Conversion:
        return convert_onnx(estimator, X, out_path)

    def convert_remedy(self, estimator: object, X: pd.DataFrame, out_dir: Path) -> Conversion:
        """The same model with double-precision inputs, as ``model-double.onnx``."""
        out_dir.mkdir(parents=True, exist_ok=True)
        return convert_onnx(estimator, X, out_dir / "model-double.onnx", double=True)

    def details(self, conversion: Conversion) -> OnnxDetails:
        return _checked(conversion, OnnxDetails, self.name)

    def feeds(self, conversion: Conversion, X: pd.DataFrame) -> dict[str, np.ndarray]:
        """One array per ONNX input, in the dtype the model declares; missing strings become ''."""
        return self.feed_inputs(self.details(conversion).inputs, X)

    @staticmethod
    def feed_inputs(inputs: list[OnnxInput], X: pd.DataFrame) -> dict[str, np.ndarray]:
        """Arrays for the given ONNX inputs (see :meth:`feeds`)."""
        arrays = {}
        for entry in inputs:
            block = X[entry.columns]
            if entry.dtype == "string":
                arrays[entry.name] = (
                    block.astype(object).where(block.notna(), "").astype(str).to_numpy(object)
                )
            else:
                arrays[entry.name] = block.to_numpy(dtype=np.float64).astype(entry.dtype)
        return arrays

    def layout(self, conversion: Conversion, output: str) -> str | None:
        return self.details(conversion).layouts.get(output)

    def _not_emitted(self, conversion: Conversion, estimator: object) -> dict[str, str]:
        return onnx_converter.not_emitted(estimator, onnx_converter.output_roles(estimator))

    def field_names(self, conversion: Conversion, output: str) -> str:
        names = [name for name, role in self.details(conversion).outputs.items() if role == output]
        return f"output {', '.join(names)}" if names else f"output for {output}"

    def float_inputs(self, conversion: Conversion) -> list[str]:
        """Every column fed as a float32 tensor (a schema-1 report did not list them: its float inputs)."""
        details = self.details(conversion)
        if details.float_inputs is not None:
            return list(details.float_inputs)
        return [c for entry in details.inputs if entry.dtype == "float32" for c in entry.columns]

    def remote_inputs(self, conversion: Conversion, X: pd.DataFrame) -> dict[str, np.ndarray]:
        """The feeds with strings as unicode arrays, never pickled objects."""
        return {
            name: (a.astype(str) if a.dtype == object else a) for name, a in self.feeds(conversion, X).items()
        }

    def outputs(self, raw: dict[str, np.ndarray], conversion: Conversion) -> dict[str, np.ndarray]:
        """ONNX output names → reference outputs (``label`` → ``predict``...), by the conversion's roles."""
        roles = self.details(conversion).outputs
        return {role: np.asarray(raw[name]) for name, role in roles.items() if name in raw}


class PmmlFormat(FormatSpec):
    """PMML through sklearn2pmml (a warm converter JVM), verification rows embedded; JPMML and PMML4S."""

    name = "pmml"
    filename = "model.pmml"
    engine = "jpmml_evaluator"
    starts_jvm = True

    def __init__(self) -> None:
        self.runtimes = pmml_runtimes()
        self.remote = PmmlRunner()

    def _convert(self, estimator: object, X: pd.DataFrame, out_path: Path) -> Conversion:
        return convert_pmml(estimator, X, out_path, shared_pmml_converter())

    def details(self, conversion: Conversion) -> PmmlDetails:
        return _checked(conversion, PmmlDetails, self.name)

    def embedded_rows(self, conversion: Conversion) -> int:
        return self.details(conversion).verification_rows

    def feeds(self, conversion: Conversion, X: pd.DataFrame) -> pd.DataFrame:
        return X

    def remote_inputs(self, conversion: Conversion, X: pd.DataFrame) -> pd.DataFrame:
        return X

    def _not_emitted(self, conversion: Conversion, estimator: object) -> dict[str, str]:
        target = self.details(conversion).target
        return pmml_converter.not_emitted(estimator, pmml_converter.result_fields(estimator, target))

    def field_names(self, conversion: Conversion, output: str) -> str:
        entry = _fields(self.details(conversion)).get(output)
        return f"field(s) {', '.join(entry.columns)}" if entry else f"field for {output}"

    def float_inputs(self, conversion: Conversion) -> list[str]:
        """The columns the PMML's DataDictionary declares ``float`` (a schema-1 report: none recorded)."""
        return list(self.details(conversion).float_inputs or [])

    def outputs(self, raw: pd.DataFrame, conversion: Conversion) -> dict[str, np.ndarray]:
        """PMML result columns → reference outputs, as the conversion's ``fields`` say.

        JPMML names the prediction after the target field (``y``), pypmml ``predicted_y``: a one-column
        output is read from either. A reference output whose columns are not all in the results is absent
        (the runtime does not give it; coverage says so).
        """
        outputs: dict[str, np.ndarray] = {}
        for output, entry in _fields(self.details(conversion)).items():
            columns = [_column_in(raw, c) for c in entry.columns]
            if any(c is None for c in columns):
                continue
            block = raw[columns]
            values = block.iloc[:, 0].to_numpy() if len(columns) == 1 else block.to_numpy(dtype=np.float64)
            if entry.transform == "sqrt":
                values = np.sqrt(np.asarray(values, dtype=np.float64))
            outputs[output] = values
        return outputs


def _column_in(raw: pd.DataFrame, column: str) -> str | None:
    return next((c for c in (column, f"predicted_{column}") if c in raw.columns), None)


def _fields(details: PmmlDetails) -> dict[str, PmmlField]:
    """The result fields of a conversion; a schema-1 report recorded only its target and classes."""
    if details.fields:
        return dict(details.fields)
    fields = {"predict": PmmlField(columns=[details.target])}
    if details.classes:
        fields["predict_proba"] = PmmlField(columns=[f"probability({c})" for c in details.classes])
    return fields


#: Every format Parity converts to. Order is archive priority: PMML is the long-term format.
FORMATS: dict[str, FormatSpec] = table_of("format", [PmmlFormat(), OnnxFormat()])


def format_of(name: str) -> FormatSpec:
    """The spec of format ``name``.

    Raises
    ------
    KeyError
        For a format not in :data:`FORMATS` (the message lists those that are).
    """
    try:
        return FORMATS[name]
    except KeyError:
        raise KeyError(f"no format {name!r}; known formats: {', '.join(FORMATS)}") from None


def convert(fmt: str, estimator: object, X: pd.DataFrame, out_dir: Path) -> Conversion:
    """Convert ``estimator`` to format ``fmt`` into ``out_dir``; see :data:`FORMATS`.

    Raises
    ------
    KeyError
        For a format not in :data:`FORMATS` (the message lists those that are).
    """
    return format_of(fmt).convert(estimator, X, out_dir)
