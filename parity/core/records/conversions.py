"""One estimator converted (or not) to one format, with the facts each format's runtimes need."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_serializer, model_validator

from .base import Record, omitted_when_none
from .verdicts import ConversionStatus

#: The numeric precision of an artifact's inputs and arithmetic.
Precision = Literal["float32", "float64"]


class OnnxInput(Record):
    """One ONNX graph input: the reference columns it is fed and their dtype."""

    name: str
    columns: list[str]
    dtype: Literal["float32", "float64", "string"]


class OnnxDetails(Record):
    """What an ONNX conversion records: inputs, output roles, opsets, precision, converter version."""

    inputs: list[OnnxInput]
    #: ONNX output name → the reference output it stands for (``label`` → ``predict``...)
    outputs: dict[str, str]
    opset: dict[str, int]
    target_opset: dict[str, int]
    precision: Precision
    skl2onnx: str
    #: reference outputs skl2onnx emits no output for (estimator kind), each with the reason (None: a report
    #: of schema 1, which did not say; derived from the estimator when it is replayed)
    not_emitted: dict[str, str] | None = None
    #: reference columns the artifact reads as float32 (None: a report of schema 1, which did not say)
    float_inputs: list[str] | None = None
    #: reference output → the known layout its ONNX output has, where several fit (see ``LAYOUTS``)
    layouts: dict[str, str] = Field(default_factory=dict)


class PmmlField(Record):
    """The result columns of one reference output in a PMML's results, and how they are read."""

    #: result columns, in the reference output's column order (one column: a 1-D output)
    columns: list[str]
    #: ``sqrt``: the columns hold the square of the reference output (KMeans' squared distances)
    transform: Literal["none", "sqrt"] = "none"


class PmmlDetails(Record):
    """What a PMML conversion records: target field, classes, output roles, verification rows, versions."""

    target: str
    classes: list[str] | None
    outputs: dict[str, str]
    verification_rows: int
    precision: Precision
    sklearn2pmml: str
    #: reference output → the result columns that hold it (empty: a report of schema 1, see
    #: ``PmmlFormat.outputs``)
    fields: dict[str, PmmlField] = Field(default_factory=dict)
    #: reference outputs sklearn2pmml emits no field for, each with the reason (None: a report of schema 1)
    not_emitted: dict[str, str] | None = None
    #: reference columns the PMML declares ``dataType="float"`` (None: a report of schema 1)
    float_inputs: list[str] | None = None


#: The details record of each format, by format name.
DETAILS: dict[str, type[OnnxDetails] | type[PmmlDetails]] = {"onnx": OnnxDetails, "pmml": PmmlDetails}


class Conversion(Record):
    """One estimator converted (or not) to one format.

    Attributes
    ----------
    format : str
        A format of :data:`parity.validators.formats.FORMATS`.
    status : ConversionStatus
    path : Path or None
        The artifact, when converted (in a report: its file name in the bundle).
    message : str
        The converter's own words when it did not convert; a short summary otherwise.
    seconds : float
    details : OnnxDetails or PmmlDetails or None
        Format-specific facts the runtimes need; None when nothing was converted.
    variant : str or None
        A remedy's name (``double``: an ONNX conversion with double-precision inputs); None for the format's
        own conversion.
    superseded_by : str or None
        The name of the variant that passed where this conversion failed, and is archived instead.
    """

    format: str
    status: ConversionStatus
    path: Path | None = None
    message: str = ""
    seconds: float = 0.0
    details: OnnxDetails | PmmlDetails | None = Field(default=None)
    variant: str | None = omitted_when_none()
    superseded_by: str | None = omitted_when_none()

    @model_validator(mode="before")
    @classmethod
    def _details_of_its_format(cls, data: Any) -> Any:
        """Read ``details`` as the record of the conversion's own format (reports keep ``{}`` for none)."""
        if isinstance(data, dict) and isinstance(data.get("details"), dict):
            details = data["details"]
            if not details:
                return {**data, "details": None}
            kind = DETAILS.get(str(data.get("format")))
            if kind is not None:
                return {**data, "details": kind.model_validate(details)}
        return data

    @property
    def name(self) -> str:
        """How reports name this conversion: its format, or ``<format>-<variant>`` for a remedy."""
        return self.format if self.variant is None else f"{self.format}-{self.variant}"

    @property
    def ok(self) -> bool:
        return self.status is ConversionStatus.CONVERTED

    @field_serializer("path")
    def _file_name(self, path: Path | None) -> str | None:
        return None if path is None else path.name

    @field_serializer("details")
    def _details(self, details: OnnxDetails | PmmlDetails | None) -> dict:
        return {} if details is None else details.to_json()

    def at(self, path: Path) -> Conversion:
        """The same conversion with its artifact at ``path`` (e.g. inside a bundle)."""
        return self.model_copy(update={"path": path})
