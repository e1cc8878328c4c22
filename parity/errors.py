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


class EnvironmentProblem(ParityError, RuntimeError):
    """The toolchain cannot run the pipeline (Java missing, versions refused, expired converter)."""
