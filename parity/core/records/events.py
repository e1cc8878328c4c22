"""The payloads of the events Parity emits: what automations and triggered deployments read.

Handed to Prefect as plain JSON (``payload.to_json()``); deployments template their keys
(``{{ event.payload.name }}``...), so the keys are part of the contract.
"""

from __future__ import annotations

from pydantic import Field

from .base import Document
from .verdicts import Outcome


class RegisteredPayload(Document):
    """``parity.model.registered``: what the triggered flow needs to find the model."""

    name: str
    version: int
    #: the registry: an absolute path, or a registry URI (``mlflow+http://host:port``)
    registry: str


class OutcomePayload(Document):
    """``parity.model.validated`` / ``parity.model.rejected``: one model version's verdict."""

    name: str
    version: int
    outcome: Outcome
    #: the bundle, or the rejected attempt's folder
    location: str
    archived: bool
    #: False when an identical bundle was already archived
    written: bool
    failing_cells: list[str] = Field(default_factory=list)
    summary: str


class AuditPayload(Document):
    """``parity.archive.corrupt`` / ``parity.archive.drift`` / ``parity.archive.cv-drift``: a bundle that needs
    action (for ``cv-drift``, ``findings`` are the CV re-check's)."""

    name: str
    version: int
    bundle: str
    findings: list[str]
