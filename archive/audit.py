"""Audit archived bundles: are the files still what the manifest says, and do today's runtimes still agree?

Two findings per bundle, reported separately because they call for different actions:

- **corrupt**: a file is missing, extra, or its SHA-256 differs from the manifest (restore the bundle from a
  backup; never re-validate over it);
- **drift**: replaying the bundle's stored reference inputs through today's runtimes gives a different cell
  than the archived report (a verdict changed, or the figures moved: an output changed after an upgrade).

A corrupt bundle is not replayed: its artifacts cannot be trusted to mean anything.

What the replay may trust when it loads the bundle's model comes from the **registry's record** of the
registration, never from the bundle under check (its ``metadata.json`` lists trusted types for people, and a
bundle can be tampered with, manifest included). The bundle holds a copy of that record under its manifest;
when the registry is given, the audit checks that the manifest's digest of the copy is the registry record's
digest, and that the bundle's model is the registered one: a mismatch is corruption. Without the registry's
record the model is loaded with the allowlist alone, tried in a child process first.
"""

from __future__ import annotations

import json
from pathlib import Path

from parity.core.errors import IntegrityError, RecordError, RecordSchemaError, UntrustedModelError
from parity.core.records import (
    BundleAudit,
    Check,
    ConversionStatus,
    Manifest,
    Metadata,
    Report,
    Verdict,
)
from parity.registry import ModelRef, RegisteredModel, Registry, sha256_of
from parity.registry.predictions import predictions_from_frame
from parity.registry.reference import read_stored_parquet
from parity.registry.store import RECORD_FILE
from parity.validators.formats import FORMATS
from parity.validators.targets.reaches import unavailable
from parity.validators.targets.table import Target, load_targets
from parity.validators.validate import ModelContext, validate_conversion

from .bundle import MANIFEST, REGISTRATION, Archive
from .cv import recheck_cv
from .trust import RESTORE as _RESTORE
from .trust import Trust, load_bundle_model

#: Figures of a report row that must come out identical when the same artifact is replayed.
FIGURES = ("max_abs", "max_rel", "n_outside")

__all__ = [
    "FIGURES",
    "BundleAudit",
    "Trust",
    "archived_versions",
    "audit_bundle",
    "compare_reports",
    "replay",
    "trust_for",
]


def trust_for(folder: Path, name: str, version: int, registry: Registry | None) -> tuple[Trust, list[str]]:
    """The trust for replaying a bundle, from the registry's record, and what binds (or fails to bind) the
    bundle to that record.

    Parameters
    ----------
    folder : Path
        The bundle, its files already checked against its manifest.
    name, version : the archived model version
    registry : Registry, optional
        Where the version was registered.

    Returns
    -------
    (Trust, list of str)
        The trust, and the binding problems (corruption findings; empty when bound or unbindable).

    Raises
    ------
    RecordError, RecordSchemaError
        The bundle's manifest or the registry's record is damaged.
    """
    manifest = Manifest.read(folder / MANIFEST)
    model_digest = manifest.files.get("model.skops")
    unbound = Trust(expected_sha256=model_digest)
    if registry is None:
        return unbound, []
    ref = ModelRef(name, version)
    record_file = registry.path(ref) / RECORD_FILE
    if not record_file.is_file():
        return Trust(expected_sha256=model_digest, source=f"{registry.location} has no record of {ref}"), []
    record = registry.record(ref)
    problems = []
    copied, actual = manifest.files.get(REGISTRATION), sha256_of(record_file)
    if copied is not None and copied != actual:
        problems.append(
            f"{REGISTRATION}: the manifest binds the bundle to a registration record with SHA-256 {copied}, "
            f"but {record_file} has {actual}"
        )
    if manifest.identity.model_sha256 != record.model.sha256:
        problems.append(
            f"manifest: names model SHA-256 {manifest.identity.model_sha256}, the registration "
            f"{record.model.sha256}"
        )
    if record.model.format == "skops" and model_digest != record.model.sha256:
        problems.append(f"model.skops: is not the registered model file (SHA-256 {record.model.sha256})")
    skops = record.model.format == "skops"
    trust = Trust(
        tuple(record.trusted_types),
        record.model.sha256 if skops else model_digest,
        # a pickle registration's bundle holds a skops dump the record has no digest of: only the bundle
        # vouches for it, so it is tried in a child process first
        bound=skops,
        source=f"the registration record in {registry.location}",
        tolerances=record.tolerances,
        roles=record.roles or {},
        cross_validation=record.provenance.cross_validation,
    )
    return trust, problems


def archived_versions(archive: Archive) -> list[tuple[str, int]]:
    """Every ``(name, version)`` with a bundle in the archive, sorted (the rejected area excluded)."""
    return archive.versions()


def replay(folder: Path, targets: dict[str, Target] | None = None, trust: Trust | None = None) -> list[Check]:
    """Evaluate a bundle's artifacts on its stored reference rows in today's runtimes.

    Parameters
    ----------
    folder : Path
        An intact bundle.
    targets : dict of str to Target, optional
        Where to replay; default every target of today's table that is set up here.
    trust : Trust, optional
        What loading the model may trust (:func:`trust_for`); default the allowlist alone, the bytes tried in
        a child process first. Never read from the bundle itself.

    Returns
    -------
    list of Check
        Today's report rows, made exactly as validation made the archived ones.

    Raises
    ------
    RecordError, RecordSchemaError
        The bundle's ``metadata.json`` or ``report.json`` is damaged or of a schema this version does not read.
    """
    metadata = Metadata.read(folder / "metadata.json")
    report = Report.read(folder / "report.json")
    trust = trust or Trust()
    reference, loaded = load_bundle_model(folder, trust)
    model = RegisteredModel(
        ModelRef(metadata.name, metadata.version),
        folder,
        metadata,  # type: ignore[arg-type]  # stands in for the registration: validation never reads it
        loaded.estimator,
        reference,
        predictions_from_frame(read_stored_parquet(folder / "predictions.parquet", IntegrityError, _RESTORE)),
    )
    tolerances = metadata.tolerances if trust.tolerances is None else trust.tolerances
    roles = (metadata.roles or {}) if trust.roles is None else trust.roles
    context = ModelContext(model, tolerances=tolerances, roles=roles)
    # Targets not set up here today are left out rather than reported as drift (their archived cells are then
    # not compared): an audit on a machine without the emulator still checks everything it can.
    if targets is None:
        targets = {name: t for name, t in load_targets().items() if unavailable(t) is None}
    checks: list[Check] = []
    for archived in report.conversions.values():
        if archived.status is not ConversionStatus.CONVERTED or archived.format not in FORMATS:
            continue
        if archived.superseded_by is not None:  # not in the bundle: its variant is, and is replayed
            continue
        name = archived.path.name if archived.path is not None else FORMATS[archived.format].filename
        checks.extend(validate_conversion(context, archived.at(folder / name), targets=targets))
    return checks


def _numbered(checks: list[Check]) -> dict[tuple[str, int], Check]:
    """Rows by cell and occurrence: a cell can hold a target's own row and its cross-target comparison."""
    seen: dict[str, int] = {}
    numbered = {}
    for check in checks:
        cell = check.cell
        seen[cell] = seen.get(cell, -1) + 1
        numbered[(cell, seen[cell])] = check
    return numbered


def compare_reports(archived: list[Check], today: list[Check]) -> list[str]:
    """Cells of today's replay that differ from the archived report, described for people.

    Parameters
    ----------
    archived, today : list of Check
        Report rows. Archived cells of targets that today's replay did not cover
        (another architecture) are not compared.

    Returns
    -------
    list of str
        One line per changed cell; empty when every replayed cell is identical.
    """
    before = _numbered(archived)
    targets = {c.target for c in today}
    changes = []
    for key, check in _numbered(today).items():
        cell = check.cell
        old = before.pop(key, None)
        if old is None:  # a cell today's Parity adds (a coverage row): drift only if it finds a problem
            if check.verdict not in (Verdict.PASS, Verdict.NOT_COVERED):
                changes.append(f"{cell}: new cell with verdict {check.verdict}")
            continue
        if old.verdict is not check.verdict:
            changes.append(f"{cell}: verdict {old.verdict} → {check.verdict}")
        moved = [
            f"{k} {getattr(old, k)} → {getattr(check, k)}"
            for k in FIGURES
            if getattr(old, k) != getattr(check, k)
        ]
        if moved:
            changes.append(f"{cell}: output changed ({', '.join(moved)})")
    changes.extend(
        f"{old.cell}: archived with verdict {old.verdict}, no longer produced"
        for _, old in sorted(before.items(), key=lambda item: item[0])
        if old.target in targets and old.kind != "conversion"
    )
    return changes


def audit_bundle(
    archive: Archive,
    name: str,
    version: int,
    replay_outputs: bool = True,
    targets: dict[str, Target] | None = None,
    registry: Registry | None = None,
    record: bool = True,
    cv: bool = False,
) -> BundleAudit:
    """Check one bundle's checksums, then replay it in today's runtimes and compare with its report.

    Parameters
    ----------
    archive : Archive
    name, version : the archived model version
    replay_outputs : bool
        False checks the checksums only.
    targets : dict of str to Target, optional
        Where to replay (see :func:`replay`); archived cells of other targets are not compared.
    registry : Registry, optional
        The registry the version was registered in: what loading its model may trust comes from there
        (:func:`trust_for`), and the bundle is checked to be bound to that registration.
    record : bool
        Keep the findings in the bundle's OCFL object as a new version (``audits/<when>.json``); never for a
        corrupt bundle, whose object is not written to, nor for a legacy one (migrate it first).
    cv : bool
        Also re-check the CV score of an intact bundle (:func:`parity.archive.cv.recheck_cv`), with the same
        trust as the replay; replayed or not.

    Returns
    -------
    BundleAudit
        Never raises for a damaged or unreadable bundle: that is what the audit reports.
    """
    where = archive.content_url(name, version)
    try:
        archive.repair(
            name, version
        )  # what an interrupted audit left is finished first, never taken for damage
        with archive.local_copy(name, version) as folder:
            audit = _audit_folder(folder, where, name, version, replay_outputs, targets, registry, cv)
    except (OSError, IntegrityError) as err:  # the store itself: unreachable, or a key that is not a path
        return BundleAudit(name=name, version=version, path=where, error=f"could not read the object: {err}")
    if record and not audit.corrupt:
        kept = archive.append_audit(
            name, version, json.dumps(audit.to_json(), indent=2, sort_keys=True).encode()
        )
        audit = audit.model_copy(update={"recorded_as": kept})
    return audit


def _audit_folder(
    folder: Path,
    where: str,
    name: str,
    version: int,
    replay_outputs: bool,
    targets: dict[str, Target] | None,
    registry: Registry | None,
    cv: bool = False,
) -> BundleAudit:
    """:func:`audit_bundle` on a local copy of the bundle's files (``where`` names them in the findings)."""
    try:
        corrupt = Archive.check(folder)
    except RecordSchemaError as err:  # written by another Parity version: unread, which is not damage
        return BundleAudit(name=name, version=version, path=where, error=str(err))
    except (OSError, RecordError) as err:
        return BundleAudit(
            name=name, version=version, path=where, corrupt=[f"{MANIFEST}: unreadable ({err})"]
        )
    if not corrupt:
        try:
            trust, unbound = trust_for(folder, name, version, registry)
        except RecordSchemaError as err:
            return BundleAudit(name=name, version=version, path=where, error=str(err))
        except (OSError, RecordError) as err:
            return BundleAudit(
                name=name,
                version=version,
                path=where,
                error=f"the registration record is unreadable ({err}); the bundle was not replayed",
            )
        corrupt = unbound
    rechecked = recheck_cv(folder, trust) if cv and not corrupt else None
    if corrupt or not replay_outputs:
        return BundleAudit(name=name, version=version, path=where, corrupt=corrupt, cv=rechecked)
    try:
        today = replay(folder, targets, trust)
        report = Report.read(folder / "report.json")
        superseded = {c.name for c in report.conversions.values() if c.superseded_by is not None}
        archived = [c for c in report.checks if c.format not in superseded]
    except Exception as err:
        message = f"replay failed: {type(err).__name__}: {str(err).strip()[:500]}"
        if isinstance(err, UntrustedModelError) and trust.tolerances is None:  # no registration record
            message += (
                f" (trust: {trust.source}; what a model may trust comes only from its registration, never from "
                "the bundle: audit with --registry set to the registry it was registered in)"
            )
        return BundleAudit(name=name, version=version, path=where, error=message, cv=rechecked)
    return BundleAudit(
        name=name,
        version=version,
        path=where,
        drift=compare_reports(archived, today),
        replayed=len(today),
        cv=rechecked,
    )
