"""Turn one validated (or failed) model version into the files of a bundle, and file it."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import skops.io as sio

from parity.core.records import Conversion
from parity.core.toolchain import tool_versions
from parity.registry import RegisteredModel
from parity.validators.formats import format_of
from parity.validators.report import SCHEMA, Check, outcome

from .bundle import Archive


@dataclass(frozen=True)
class Filed:
    """Where a model version's result went."""

    outcome: str  # passed | failed | unsupported
    path: Path
    written: bool
    report: dict


def build_report(model: RegisteredModel, conversions: dict[str, Conversion], checks: list[Check]) -> dict:
    """The report of one model version: every check, every conversion, and the notes from loading it."""
    unsupported = any(str(c.status) == "unsupported" for c in conversions.values())
    return {
        "schema": SCHEMA,
        "name": model.ref.name,
        "version": model.ref.version,
        "outcome": outcome(checks, unsupported),
        "validated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "estimator": model.record["estimator_summary"],
        "reference_rows": len(model.reference),
        "original_sklearn_version": model.original_sklearn_version,
        "notes": list(model.notes),
        "conversions": {fmt: c.to_json() for fmt, c in conversions.items()},
        "targets": targets_section(checks),
        "checks": [c.to_json() for c in checks],
    }


def targets_section(checks: list[Check]) -> dict:
    """Per target: whether it is required, and per runtime where its outputs really came from."""
    section: dict[str, dict] = {}
    for check in checks:
        entry = section.setdefault(check.target, {"required": check.required, "where": {}})
        if check.where:
            entry["where"].setdefault(f"{check.format}/{check.runtime}", check.where)
    return section


def build_metadata(model: RegisteredModel, report: dict) -> dict:
    """Provenance (as registered), tool versions of this run, and timestamps."""
    record = model.record
    return {
        "schema": SCHEMA,
        "name": model.ref.name,
        "version": model.ref.version,
        "estimator_type": record["estimator_type"],
        "estimator": record["estimator_summary"],
        "registered_at": record["registered_at"],
        "validated_at": report["validated_at"],
        "provenance": record["provenance"],
        "registered_model": record["model"],
        "trusted_types": record.get("trusted_types", []),
        "tolerances": record.get("tolerances", {}),
        "classes": record["predictions"].get("classes"),
        "reference": record["reference"],
        "tools": tool_versions(),
    }


def file_model(
    archive: Archive, model: RegisteredModel, conversions: dict[str, Conversion], checks: list[Check]
) -> Filed:
    """Archive a version that passed; keep a failed one, with its reasons, in the rejected area.

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
    files: dict[str, Path | bytes] = {
        format_of(fmt).filename: c.path for fmt, c in conversions.items() if c.ok and c.path is not None
    }
    files["reference.parquet"] = model.path / model.record["reference"]["file"]
    files["predictions.parquet"] = model.path / model.record["predictions"]["file"]
    files["report.json"] = _json(report)
    files["metadata.json"] = _json(metadata)
    identity = {
        "model_sha256": model.record["model"]["sha256"],
        "reference_sha256": model.record["reference"]["sha256"],
    }
    with tempfile.TemporaryDirectory(prefix="parity-bundle-") as scratch:
        files["model.skops"] = _as_skops(model, Path(scratch))
        if report["outcome"] == "passed":
            result = archive.write_bundle(model.ref.name, model.ref.version, files, identity)
            return Filed("passed", result.path, result.written, report)
        path = archive.write_rejected(model.ref.name, model.ref.version, files, identity)
        return Filed(report["outcome"], path, True, report)


def _as_skops(model: RegisteredModel, scratch: Path) -> Path:
    """The original model as skops: the registered file itself, or a skops dump of a trusted pickle."""
    if model.record["model"]["format"] == "skops":
        return model.model_file
    target = scratch / "model.skops"
    sio.dump(model.estimator, target)
    return target


def _json(data: dict) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True, default=str).encode()
