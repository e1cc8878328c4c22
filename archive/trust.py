"""What loading an archived bundle's model may trust, and the one way the audit loads it (the replay and the
CV re-check alike)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from parity.core.errors import IntegrityError
from parity.core.records import CrossValidation, Role
from parity.registry import load_model
from parity.registry.loading import LoadedModel
from parity.registry.reference import read_stored_parquet

#: The next step when a bundle's own file does not read back.
RESTORE = "The bundle is damaged: restore it from a backup; never re-validate over it."


@dataclass(frozen=True)
class Trust:
    """What loading a bundle's model may trust, and who vouches for it."""

    #: types beyond the allowlist, as the registration listed them
    trusted_types: tuple[str, ...] = ()
    #: the SHA-256 the bundle's ``model.skops`` must have
    expected_sha256: str | None = None
    #: whether a registry record vouches for the bytes (else they are tried in a child process first)
    bound: bool = False
    #: where the trust came from, for messages
    source: str = "no registry record: the allowlist alone"
    #: the registration's tolerances and runtime roles, which a bound replay judges by (not the bundle's copy)
    tolerances: dict[str, dict[str, float]] | None = None
    roles: dict[str, Role] | None = None
    #: the registration record's CV record (set with ``tolerances``): the CV re-check takes it, never the bundle's
    cross_validation: CrossValidation | None = None


def load_bundle_model(folder: Path, trust: Trust) -> tuple[pd.DataFrame, LoadedModel]:
    """A bundle's reference rows and its ``model.skops``, loaded with ``trust`` (never with the bundle's own
    word): bytes no registration vouches for are built and run on the reference rows in a child process first.

    Raises
    ------
    IntegrityError
        The bundle's reference rows do not read back.
    UntrustedModelError, RegistryError
        The model needs more trust than given, or is not the file ``trust`` expects.
    """
    reference = read_stored_parquet(folder / "reference.parquet", IntegrityError, RESTORE)
    loaded = load_model(
        folder / "model.skops",
        "skops",
        trusted_types=trust.trusted_types,
        expected_sha256=trust.expected_sha256,
        rows=reference,  # a model that crashes only when it predicts does so in the child
        isolate=not trust.bound,
    )
    return reference, loaded
