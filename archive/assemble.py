"""Turn one validated (or failed) model version into the files of a bundle, and file it."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import skops.io as sio

from parity.core.records import (
    Check,
    Conversion,
    ConversionStatus,
    Identity,
    Metadata,
    Outcome,
    Report,
    decide_outcome,
    targets_section,
)
from parity.core.records.base import now
from parity.core.toolchain import tool_versions
from parity.registry import RegisteredModel
from parity.registry.store import RECORD_FILE
from parity.validators.outputs import OutputLog

from .bundle import CONTENT, REGISTRATION, Archive
from .card import render_card
from .html_report import render_html
from .names import CARD, HTML_REPORT, OUTPUTS


@dataclass(frozen=True)
class Filed:
    """Where a model version's result went."""

    outcome: Outcome
    #: where its OCFL object is (a folder's path or a URL)
    path: str
    written: bool
    report: Report

    @property
    def content(self) -> str:
        """Where its files are (``<path>/v1/content``)."""
        return f"{self.path}/{CONTENT}"


def build_report(
    model: RegisteredModel, conversions: Mapping[str, Conversion], checks: Sequence[Check]
) -> Report:
    """The report of one model version: every check, every conversion, and the notes from loading it."""
    rows = list(checks)
    # a report names each artifact by its file in the bundle, not by where the conversion wrote it
    done = {fmt: c if c.path is None else c.at(Path(c.path.name)) for fmt, c in conversions.items()}
    unsupported = any(c.status is ConversionStatus.UNSUPPORTED for c in done.values())
    return Report(
        name=model.ref.name,
        version=model.ref.version,
        outcome=decide_outcome(rows, unsupported),
        validated_at=now(),
        estimator=model.record.estimator_summary,
        reference_rows=len(model.reference),
        original_sklearn_version=model.original_sklearn_version,
        notes=list(model.notes),
        conversions=done,
        targets=targets_section(rows),
        checks=rows,
    )


def build_metadata(model: RegisteredModel, report: Report) -> Metadata:
    """Provenance (as registered), tool versions of this run, and timestamps."""
    record = model.record
    return Metadata(
        name=model.ref.name,
        version=model.ref.version,
        estimator_type=record.estimator_type,
        estimator=record.estimator_summary,
        registered_at=record.registered_at,
        validated_at=report.validated_at,
        provenance=record.provenance,
        registered_model=record.model,
        trusted_types=record.trusted_types,
        tolerances=record.tolerances,
        roles=record.roles,
        classes=record.predictions.classes,
        reference=record.reference,
        tools=tool_versions(),
    )


def file_model(
    archive: Archive,
    model: RegisteredModel,
    conversions: Mapping[str, Conversion],
    checks: Sequence[Check],
    outputs: OutputLog | None = None,
) -> Filed:
    """Archive a version that passed; keep a failed one, with its reasons, in the rejected area.

    Parameters
    ----------
    archive : Archive
    model : RegisteredModel
    conversions : mapping of format to Conversion
    checks : sequence of Check
    outputs : OutputLog, optional
        The runs' converted outputs, row by row: kept as ``outputs.parquet`` and plotted in ``report.html``
        (without it the page says that it has no per-row outputs).

    Returns
    -------
    Filed

    Raises
    ------
    ArchiveConflictError
        A bundle exists for this version with a different model or reference data.
    """
    report = build_report(model, conversions, checks)
    metadata = build_metadata(model, report)
    record = model.record
    # a conversion superseded by its remedy (which passed) is reported, and its variant is archived instead
    files: dict[str, Path | bytes] = {
        c.path.name: c.path
        for c in conversions.values()
        if c.ok and c.path is not None and c.superseded_by is None
    }
    # the registration record, under the manifest: its digest there binds the bundle to the registry's record,
    # which is where an audit takes what was trusted from (never from the bundle it checks)
    files[REGISTRATION] = model.path / RECORD_FILE
    files["reference.parquet"] = model.path / record.reference.file
    files["predictions.parquet"] = model.path / record.predictions.file
    files["report.json"] = report.to_bytes()
    files["metadata.json"] = metadata.to_bytes()
    identity = Identity(model_sha256=record.model.sha256, reference_sha256=record.reference.sha256)
    with tempfile.TemporaryDirectory(prefix="parity-bundle-") as scratch:
        files["model.skops"] = _as_skops(model, Path(scratch))
        files.update(described(files, outputs))
        if report.outcome is Outcome.PASSED:
            result = archive.write_bundle(model.ref.name, model.ref.version, files, identity)
            return Filed(Outcome.PASSED, result.path, result.written, report)
        path = archive.write_rejected(model.ref.name, model.ref.version, files, identity)
        return Filed(report.outcome, path, True, report)


def described(files: Mapping[str, Path | bytes], outputs: OutputLog | None) -> dict[str, bytes]:
    """The files that describe a bundle to a person: its outputs table, its card and its HTML report.

    Parameters
    ----------
    files : mapping of str to Path or bytes
        The bundle's other files (``report.json`` and ``metadata.json`` at least).
    outputs : OutputLog or None

    Returns
    -------
    dict of str to bytes
    """
    made: dict[str, bytes] = {} if outputs is None else {OUTPUTS: outputs.to_parquet()}
    every = {**files, **made}
    made[CARD] = render_card(every).encode()
    made[HTML_REPORT] = render_html(every).encode()
    return made


def _as_skops(model: RegisteredModel, scratch: Path) -> Path:
    """The original model as skops: the registered file itself, or a skops dump of a trusted pickle."""
    if model.record.model.format == "skops":
        return model.model_file
    target = scratch / "model.skops"
    sio.dump(model.estimator, target)
    return target
