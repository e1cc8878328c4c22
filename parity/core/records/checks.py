"""A report row (:class:`Check`) and where its outputs really came from (:class:`Where`)."""

from __future__ import annotations

import math
from typing import Any

from pydantic import (
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from ..defaults import host_platform
from .base import Record, omitted_when_none
from .verdicts import Role, Stage, Verdict

#: An ``/proc/cpuinfo`` summary as the ONNX runner reads it (key → text or count).
CpuInfo = dict[str, str | int]


class Where(Record):
    """Where a runtime's outputs came from: the runner's own description plus the target's settings.

    Every runner describes itself with the fields it knows (the ONNX runner, the PMML runner, this process);
    all are optional, none is free-form.
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: int | None = Field(default=None, alias="schema")
    machine: str | None = None
    platform: str | None = None
    os: str | None = None
    python: str | None = None
    java: str | None = None
    numpy: str | None = None
    onnxruntime: str | None = None
    cpu_count: int | None = None
    processors: str | int | None = None
    cpuinfo: CpuInfo | str | None = None
    intra_op_num_threads: int | None = None
    inter_op_num_threads: int | None = None
    execution_mode: str | None = None
    graph_optimization_level: str | None = None
    providers: list[str] | None = None
    #: the PMML runner's replay of the embedded verification rows: "ok" or what went wrong
    verification: str | None = None
    #: the runner's own timings (the ONNX runner: seconds to load and to run)
    seconds: dict[str, float] | str | float | None = None
    # the target's settings that change numerics
    threads: int | None = None
    graph_optimization: str | None = None
    cpu: str | None = None

    @model_serializer(mode="wrap")
    def _described_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Only the fields that were described (as reports have always been written), also when nested."""
        return {k: v for k, v in handler(self).items() if v is not None}

    def to_json(self) -> dict:
        """Only the fields that were described (as reports have always been written)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def merged(self, **settings: object) -> Where:
        """This description with the target's settings added."""
        return self.model_copy(update={k: v for k, v in settings.items() if v is not None})


def _finite(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


class Check(Record):
    """One cell of the verdict table: one output of one runtime of one format on one target."""

    format: str
    runtime: str
    output: str
    verdict: Verdict
    target: str = Field(default_factory=host_platform)
    kind: str = ""
    rows: int = 0
    max_abs: float | None = None
    max_rel: float | None = None
    n_outside: int = 0
    first_outside: list[int] = Field(default_factory=list)
    tolerance: str = ""
    explanation: str = ""
    #: whether this cell blocks the model: its runtime and its target are both ``deploy``
    required: bool = True
    #: the runtime's role (a witness runtime is reported and explained, never blocking)
    role: Role = Role.DEPLOY
    #: what the outputs were compared with: ``scikit-learn`` (the reference) or another target's name
    against: str = "scikit-learn"
    #: for a cell that did not pass: the step that went wrong
    stage: Stage | None = omitted_when_none()
    #: how far the worst row is, as a band of the deviation scaled to the output (``OK``, ``e<1e-6``...,
    #: ``big-diff``); empty where no numbers were compared
    band: str = ""
    #: where the outputs really came from (the runner's own description) and the target's settings; a report
    #: stores it once per target and runtime (``Report.targets``) and gives it back to each of its checks
    where: Where = Field(default_factory=Where)

    @model_validator(mode="before")
    @classmethod
    def _against_from_kind(cls, data: Any) -> Any:
        """Reports of schema 1 said a cross-target row's basis only in its kind (``label vs <target>``)."""
        if isinstance(data, dict) and "against" not in data and " vs " in str(data.get("kind", "")):
            kind, _, against = str(data["kind"]).partition(" vs ")
            return {**data, "kind": kind, "against": against}
        return data

    @field_validator("max_abs", "max_rel")
    @classmethod
    def _nan_is_none(cls, value: float | None) -> float | None:
        return _finite(value)

    @property
    def cell(self) -> str:
        """A short label naming this cell, e.g. ``onnx/onnxruntime/linux-x86_64/predict_proba``."""
        return f"{self.format}/{self.runtime}/{self.target}/{self.output}"
