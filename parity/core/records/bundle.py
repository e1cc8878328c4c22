"""The documents of an archive bundle: the report, the metadata and the manifest."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from pydantic import Field

from .base import Document, Record, now, omitted_when_none
from .checks import Check, Where
from .conversions import Conversion
from .registration import ClassLabel, ModelFile, Provenance, ReferenceFile
from .verdicts import Outcome, Role, Verdict


class TargetEntry(Record):
    """One target of a report: whether it must pass, and where each runtime's outputs really came from."""

    required: bool
    #: ``format/runtime`` → the runner's own description of where it ran
    where: dict[str, Where] = Field(default_factory=dict)


def targets_section(checks: Iterable[Check]) -> dict[str, TargetEntry]:
    """Per target: whether it is required, and per runtime the first description of where it ran."""
    required: dict[str, bool] = {}
    where: dict[str, dict[str, Where]] = {}
    for check in checks:
        required.setdefault(check.target, check.required)
        described = where.setdefault(check.target, {})
        if check.where.to_json():
            described.setdefault(f"{check.format}/{check.runtime}", check.where)
    return {target: TargetEntry(required=required[target], where=where[target]) for target in required}


def decide_outcome(checks: Iterable[Check], conversions_unsupported: bool) -> Outcome:
    """A model's outcome from its checks; optional targets never block.

    ``failed`` when a required cell failed, errored or had no runtime (or no cell passed at all);
    ``unsupported`` when a converter does not support the estimator; ``passed`` otherwise.
    """
    required = [c for c in checks if c.required]
    if any(c.verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.UNAVAILABLE) for c in required):
        return Outcome.FAILED
    if conversions_unsupported or any(c.verdict is Verdict.UNSUPPORTED for c in required):
        return Outcome.UNSUPPORTED
    if not any(c.verdict is Verdict.PASS for c in required):
        return Outcome.FAILED
    return Outcome.PASSED


class Report(Document):
    """``report.json``: one model version's verdicts, every conversion, and the notes from loading it.

    A flow adds ``seconds`` and ``bundle`` to the report it returns; a version whose validation crashed
    before a report was made is reported with :meth:`crashed` (``outcome`` ``error``, ``error`` set).

    Schema 2 (this one) added each check's ``role``, ``against``, ``stage`` and ``band``; a schema-1 report's
    cross-target rows said their basis in their ``kind`` (``label vs <target>``), which is read into
    ``against``.
    """

    SCHEMAS: ClassVar[tuple[int, ...]] = (1, 2)
    schema_version: int = Field(default=2, alias="schema")

    name: str
    version: int
    outcome: Outcome
    validated_at: str
    estimator: str
    reference_rows: int
    original_sklearn_version: str | None = None
    notes: list[str] = Field(default_factory=list)
    conversions: dict[str, Conversion] = Field(default_factory=dict)
    targets: dict[str, TargetEntry] = Field(default_factory=dict)
    checks: list[Check] = Field(default_factory=list)
    #: seconds the flow took (set by the flow, not in the bundle's file)
    seconds: float | None = omitted_when_none()
    #: where the flow filed it (set by the flow, not in the bundle's file)
    bundle: str | None = omitted_when_none()
    #: why no report could be made (a crashed validation only)
    error: str | None = omitted_when_none()

    @classmethod
    def crashed(cls, name: str, version: int, message: str) -> Report:
        """The report of a version whose validation crashed before it made one."""
        return cls(
            name=name,
            version=version,
            outcome=Outcome.ERROR,
            validated_at=now(),
            estimator="",
            reference_rows=0,
            error=message,
        )

    @property
    def failing(self) -> list[Check]:
        """The checks that did not pass."""
        return [c for c in self.checks if c.verdict is not Verdict.PASS]

    def filed(self, seconds: float, bundle: str) -> Report:
        """This report as a flow returns it: with the seconds it took and where it was filed."""
        return self.model_copy(update={"seconds": seconds, "bundle": bundle})


class Metadata(Document):
    """``metadata.json``: provenance as registered, tool versions of the validating run, and timestamps."""

    name: str
    version: int
    estimator_type: str
    estimator: str
    registered_at: str
    validated_at: str
    provenance: Provenance
    registered_model: ModelFile
    trusted_types: list[str] = Field(default_factory=list)
    tolerances: dict[str, dict[str, float]] = Field(default_factory=dict)
    #: runtime roles registered for this model (runtime name → role), over the installation's
    roles: dict[str, Role] | None = omitted_when_none()
    classes: list[ClassLabel] | None = None
    reference: ReferenceFile
    #: tool → version (``java`` holds the first line of ``java -version``)
    tools: dict[str, str | None]


class Identity(Record):
    """What makes a model version this version: the original model's and reference data's SHA-256."""

    model_sha256: str
    reference_sha256: str


class Manifest(Document):
    """``manifest.json``: the bundle's identity and the SHA-256 of every other file in it."""

    identity: Identity
    created_at: str = Field(default_factory=now)
    #: bundle file name → SHA-256
    files: dict[str, str]
