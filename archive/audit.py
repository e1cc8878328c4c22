"""Audit archived bundles: are the files still what the manifest says, and do today's runtimes still agree?

Two findings per bundle, reported separately because they call for different actions:

- **corrupt**: a file is missing, extra, or its SHA-256 differs from the manifest (restore the bundle from a
  backup; never re-validate over it);
- **drift**: replaying the bundle's stored reference inputs through today's runtimes gives a different cell
  than the archived report (a verdict changed, or the figures moved: an output changed after an upgrade).

A corrupt bundle is not replayed: its artifacts cannot be trusted to mean anything.
"""

from __future__ import annotations

from pathlib import Path

from parity.core.errors import IntegrityError, RecordError, RecordSchemaError
from parity.core.numbers import decimal_int
from parity.core.records import BundleAudit, Check, ConversionStatus, Metadata, Report, Verdict
from parity.registry import ModelRef, RegisteredModel, load_model
from parity.registry.predictions import predictions_from_frame
from parity.registry.reference import read_stored_parquet
from parity.registry.store import is_model_name
from parity.validators.formats import FORMATS
from parity.validators.targets.reaches import unavailable
from parity.validators.targets.table import Target, load_targets
from parity.validators.validate import ModelContext, validate_conversion

from .bundle import MANIFEST, REJECTED, Archive

#: The next step when a bundle's own file does not read back.
_RESTORE = "The bundle is damaged: restore it from a backup; never re-validate over it."

#: Figures of a report row that must come out identical when the same artifact is replayed.
FIGURES = ("max_abs", "max_rel", "n_outside")

__all__ = ["FIGURES", "BundleAudit", "archived_versions", "audit_bundle", "compare_reports", "replay"]


def archived_versions(archive: Archive) -> list[tuple[str, int]]:
    """Every ``(name, version)`` with a bundle in the archive, sorted (the rejected area excluded)."""
    if not archive.root.is_dir():
        return []
    found: list[tuple[str, int]] = []
    for model in archive.root.iterdir():
        if not model.is_dir() or model.name == REJECTED or not is_model_name(model.name):
            continue
        for folder in model.iterdir():
            number = decimal_int(folder.name)
            if number is not None and (folder / MANIFEST).is_file():
                found.append((model.name, number))
    return sorted(found)


def replay(folder: Path, targets: dict[str, Target] | None = None) -> list[Check]:
    """Evaluate a bundle's artifacts on its stored reference rows in today's runtimes.

    Parameters
    ----------
    folder : Path
        An intact bundle.
    targets : dict of str to Target, optional
        Where to replay; default every target of today's table that is set up here.

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
    loaded = load_model(folder / "model.skops", "skops", trusted_types=metadata.trusted_types)
    model = RegisteredModel(
        ModelRef(metadata.name, metadata.version),
        folder,
        metadata,  # type: ignore[arg-type]  # stands in for the registration: validation never reads it
        loaded.estimator,
        read_stored_parquet(folder / "reference.parquet", IntegrityError, _RESTORE),
        predictions_from_frame(read_stored_parquet(folder / "predictions.parquet", IntegrityError, _RESTORE)),
    )
    context = ModelContext(model, tolerances=metadata.tolerances, roles=metadata.roles or {})
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

    Returns
    -------
    BundleAudit
        Never raises for a damaged or unreadable bundle: that is what the audit reports.
    """
    folder = archive.bundle_path(name, version)
    try:
        corrupt = archive.check(folder)
    except RecordSchemaError as err:  # written by another Parity version: unread, which is not damage
        return BundleAudit(name=name, version=version, path=str(folder), error=str(err))
    except (OSError, RecordError) as err:
        return BundleAudit(
            name=name, version=version, path=str(folder), corrupt=[f"{MANIFEST}: unreadable ({err})"]
        )
    if corrupt or not replay_outputs:
        return BundleAudit(name=name, version=version, path=str(folder), corrupt=corrupt)
    try:
        today = replay(folder, targets)
        report = Report.read(folder / "report.json")
        superseded = {c.name for c in report.conversions.values() if c.superseded_by is not None}
        archived = [c for c in report.checks if c.format not in superseded]
    except Exception as err:
        message = f"replay failed: {type(err).__name__}: {str(err).strip()[:500]}"
        return BundleAudit(name=name, version=version, path=str(folder), error=message)
    return BundleAudit(
        name=name,
        version=version,
        path=str(folder),
        drift=compare_reports(archived, today),
        replayed=len(today),
    )
