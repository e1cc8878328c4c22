"""The documents of an archive bundle: the report, the metadata and the manifest."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    field_serializer,
    model_validator,
)

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


def runtime_key(check: Check) -> str:
    """The key of a check's runtime in its target's ``where``: ``format/runtime``."""
    return f"{check.format}/{check.runtime}"


def targets_section(checks: Iterable[Check]) -> dict[str, TargetEntry]:
    """Per target: whether it is required, and per runtime the first description of where it ran."""
    return described_targets({}, checks)


def described_targets(targets: dict[str, TargetEntry], checks: Iterable[Check]) -> dict[str, TargetEntry]:
    """``targets`` with every target and runtime description the checks carry that it lacks (the first one
    of each runtime on each target, as each runtime has one description per target)."""
    required = {name: entry.required for name, entry in targets.items()}
    where = {name: dict(entry.where) for name, entry in targets.items()}
    for check in checks:
        required[check.target] = required.get(check.target, False) or check.required
        described = where.setdefault(check.target, {})
        if check.where.to_json():
            described.setdefault(runtime_key(check), check.where)
    return {
        name: targets[name]
        if name in targets and where[name] == targets[name].where
        else TargetEntry(required=required[name], where=where[name])
        for name in required
    }


def _where_in(targets: dict[str, TargetEntry], check: Check) -> Where:
    entry = targets.get(check.target)
    return entry.where.get(runtime_key(check), Where()) if entry else Where()


def _described(check: Check, targets: dict[str, TargetEntry]) -> Check:
    """The check with its runtime's description on its target (itself when it already has it)."""
    where = _where_in(targets, check)
    return check if check.where == where else check.model_copy(update={"where": where})


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
    ``against``. Schema 2 also stores where each runtime ran once per target
    (``targets[<target>].where["format/runtime"]``) and no longer in each check: a report gives each of its
    checks the description of its runtime on its target (see :meth:`where_of`), so ``check.where`` reads the
    same in a report built now, one read from schema 2 and one read from schema 1 (whose checks carried it).
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

    @model_validator(mode="after")
    def _where_once_per_target(self) -> Report:
        """Each runtime's description kept in ``targets`` (also from checks that carry their own, as schema
        1 wrote them and validators make them), and each check given its runtime's description."""
        targets = described_targets(self.targets, self.checks)
        checks = [_described(check, targets) for check in self.checks]
        # the record is frozen; this is its own validation finishing it, before anyone has seen it
        object.__setattr__(self, "targets", targets)
        object.__setattr__(self, "checks", checks)
        return self

    @field_serializer("checks", mode="wrap")
    def _checks_without_where(self, checks: list[Check], handler: SerializerFunctionWrapHandler) -> Any:
        """Checks as written: where they ran is in ``targets``, once per target."""
        return [{k: v for k, v in row.items() if k != "where"} for row in handler(checks)]

    def where_of(self, check: Check) -> Where:
        """Where a check's runtime ran on its target (empty where the runner said nothing)."""
        return _where_in(self.targets, check)

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
