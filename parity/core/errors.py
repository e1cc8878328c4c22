"""Parity's few exception types.

Each message names the thing, what was expected, what came, and what to do next. Each type subclasses
a built-in so callers that know nothing of Parity can still catch it sensibly.
"""

from __future__ import annotations


class ParityError(Exception):
    """Base class of every error Parity raises on purpose."""


class RegistryError(ParityError, LookupError):
    """A model, version or file is missing from the registry, or the registry is malformed."""


class InvalidInputError(ParityError, ValueError):
    """An argument or a data file is not what Parity needs (bad name, empty data, missing column)."""


class UntrustedModelError(ParityError, PermissionError):
    """A model file would need types or trust that nobody granted at registration."""


class IntegrityError(ParityError, ValueError):
    """A file's SHA-256 does not match what was recorded."""


class ArchiveConflictError(ParityError, FileExistsError):
    """An archive bundle already exists for this version with different content."""


class ArchiveError(ParityError, OSError):
    """The archive's location cannot be opened or written (unknown URL, unreachable store, a lock held)."""


class EnvironmentProblem(ParityError, RuntimeError):
    """The toolchain cannot run the pipeline (Java missing, versions refused, expired converter)."""


class _CarriesData(ParityError, RuntimeError):
    """A Failed state's data must be an exception for Prefect's engine to end a deployed run cleanly;
    these carry what the run produced so that callers can still show it."""

    def __init__(self, message: str, data: object) -> None:
        super().__init__(message)
        self.data = data

    def __reduce__(self):
        return (type(self), (str(self), self.data))


class ModelNotValidated(_CarriesData):
    """A model version did not pass; ``data`` is its report (a :class:`~parity.core.records.Report`)."""


class SweepNotPassed(_CarriesData):
    """A registry sweep had models that did not pass; ``data`` is the list of reports."""


class ArchiveAuditFailed(_CarriesData):
    """Bundles need action; ``data`` (also ``audits``) holds every bundle's audit, sound ones included."""

    @property
    def audits(self) -> list:
        return self.data  # type: ignore[return-value]


class RecordError(ParityError, ValueError):
    """A stored record (registration, report, manifest, event payload) is not valid."""


class RecordSchemaError(RecordError):
    """A stored record names a schema this version of Parity cannot read."""


class SignatureError(ParityError, PermissionError):
    """A delivery (an MLflow webhook) lacks the signature or fresh timestamp that proves who sent it."""
