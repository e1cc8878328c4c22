"""The registries Parity reads models from: one small interface, one table of kinds, one place that picks.

``--registry`` (and every ``registry`` parameter of the flows and deployments) is a folder or a URI:

=================================  =================================================================
``parity-registry``, ``/abs/dir``  the file registry (:class:`~parity.registry.store.FileRegistry`)
``mlflow+http://host:5000``        the MLflow Model Registry at that tracking server
``mlflow+https://host``            (likewise, over https)
``mlflow:``                        the MLflow server ``$MLFLOW_TRACKING_URI`` names
=================================  =================================================================

Stages and flows only use :class:`Registry`; which kind they have is decided here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from parity.core.errors import InvalidInputError
from parity.core.records import RegistrationRecord

from .schemes import REGISTRY_SCHEMES, is_uri, scheme_of
from .store import FileRegistry, ModelRef, RegisteredModel, Result

__all__ = ["REGISTRY_KINDS", "Registry", "Result", "is_uri", "open_registry", "scheme_of"]


@runtime_checkable
class Registry(Protocol):
    """What the flows need of a registry."""

    @property
    def location(self) -> str:
        """How a flow run, an event or a deployment names this registry (an absolute folder, or a URI)."""
        ...

    @property
    def writes_back(self) -> bool:
        """Whether :meth:`record_result` writes anything (a flow skips the write-back task when not)."""
        ...

    def refs(self, name: str | None = None) -> list[ModelRef]:
        """Every version, sorted by name then version (optionally of one model)."""
        ...

    def resolve(self, name: str, version: int | None = None) -> ModelRef:
        """The given version, or the latest one."""
        ...

    def record(self, ref: ModelRef) -> RegistrationRecord:
        """The version's registration record."""
        ...

    def path(self, ref: ModelRef) -> Path:
        """The local folder holding the version's registration (model, reference rows, predictions)."""
        ...

    def listing(self, ref: ModelRef) -> dict[str, str]:
        """What ``parity models`` shows of a version (``estimator``, ``registered_at``), cheaply."""
        ...

    def open(self, ref: ModelRef) -> RegisteredModel:
        """Load the version safely, with its reference rows and reference predictions."""
        ...

    def sweep_staging(self) -> list[Path]:
        """Remove what killed registrations left staged."""
        ...

    def record_result(self, ref: ModelRef, result: Result) -> list[str]:
        """Write a validation's verdict back where the registry's users look; returns what was written."""
        ...


def _mlflow(text: str) -> Registry:
    from .mlflow import MlflowRegistry

    return MlflowRegistry(text)


#: Registry kinds by URI scheme; a text with none of these schemes is a folder of the file registry.
REGISTRY_KINDS: Mapping[str, Callable[[str], Registry]] = {
    "mlflow+http": _mlflow,
    "mlflow+https": _mlflow,
    "mlflow": _mlflow,
}
if set(REGISTRY_KINDS) != set(REGISTRY_SCHEMES):  # a kind added here must be known to schemes.py too
    raise AssertionError(f"REGISTRY_KINDS {sorted(REGISTRY_KINDS)} != schemes.py {sorted(REGISTRY_SCHEMES)}")


def open_registry(text: str | Registry) -> Registry:
    """The registry ``text`` names (see the module's table); a :class:`Registry` is returned as it is.

    Raises
    ------
    InvalidInputError
        ``text`` looks like a URI of a kind Parity does not read.
    """
    if isinstance(text, Registry):
        return text
    text = str(text)
    scheme = scheme_of(text)
    if scheme is not None:
        return REGISTRY_KINDS[scheme](text)
    head, sep, _rest = text.partition("://")
    if sep and head.isalnum() and len(head) > 1:
        kinds = ", ".join(f"{k}://" if "+" in k else f"{k}:" for k in REGISTRY_KINDS)
        raise InvalidInputError(
            f"registry {text!r}: Parity does not read {head}:// registries; give a folder, or one of "
            f"{kinds} (e.g. mlflow+http://127.0.0.1:5000)."
        )
    return FileRegistry(text)
