"""Every document type refuses a schema it does not read, an unknown key and a wrong type, naming the file."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from parity.archive import Archive
from parity.archive.audit import audit_bundle
from parity.core.errors import RecordError, RecordSchemaError
from parity.core.records import (
    AuditPayload,
    AuditStatus,
    Check,
    Document,
    Manifest,
    Metadata,
    OutcomePayload,
    RegisteredPayload,
    RegistrationRecord,
    Report,
    Verdict,
    Where,
    targets_section,
)
from parity.registry import FileRegistry, ModelRef

FIXTURE = Path(__file__).parents[1] / "fixtures" / "schema-1"
BUNDLE = FIXTURE / "archive" / "iris-tree" / "1"


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


#: One valid document of each type, as JSON.
VALID: dict[type[Document], dict] = {
    RegistrationRecord: _json(FIXTURE / "registry" / "iris-tree" / "1" / "registration.json"),
    # the fixture is a schema-1 report: today's Report reads it and writes schema 2
    Report: Report.read(BUNDLE / "report.json").to_json(),
    Metadata: _json(BUNDLE / "metadata.json"),
    Manifest: _json(BUNDLE / "manifest.json"),
    RegisteredPayload: {"schema": 1, "name": "m", "version": 1, "registry": "/r"},
    OutcomePayload: {
        "schema": 1,
        "name": "m",
        "version": 1,
        "outcome": "passed",
        "location": "/a/m/1",
        "archived": True,
        "written": True,
        "failing_cells": [],
        "summary": "m:1 passed (2 checks)",
    },
    AuditPayload: {"schema": 1, "name": "m", "version": 1, "bundle": "/a/m/1", "findings": ["x: missing"]},
}
IDS = [kind.__name__ for kind in VALID]


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "document.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(("kind", "data"), VALID.items(), ids=IDS)
def test_a_valid_document_reads_back_as_written(kind, data, tmp_path):
    assert kind.read(_write(tmp_path, data)).to_json() == data


@pytest.mark.parametrize(("kind", "data"), VALID.items(), ids=IDS)
def test_an_unknown_schema_is_refused_naming_the_file_and_what_this_version_reads(kind, data, tmp_path):
    path = _write(tmp_path, {**data, "schema": 99})
    with pytest.raises(
        RecordSchemaError, match=rf"{re.escape(str(path))}: {kind.__name__} schema 99, .*reads schema 1\b"
    ):
        kind.read(path)


@pytest.mark.parametrize(("kind", "data"), VALID.items(), ids=IDS)
def test_an_unknown_key_is_refused_naming_the_file(kind, data, tmp_path):
    path = _write(tmp_path, {**data, "surprise": 1})
    with pytest.raises(RecordError, match=rf"{re.escape(str(path))}: not a valid {kind.__name__}.*surprise"):
        kind.read(path)


@pytest.mark.parametrize(("kind", "data"), VALID.items(), ids=IDS)
def test_a_wrong_type_is_refused_naming_the_file(kind, data, tmp_path):
    path = _write(tmp_path, {**data, "version": "one"} if "version" in data else {**data, "files": [1]})
    with pytest.raises(
        RecordError, match=rf"{re.escape(str(path))}: not a valid {kind.__name__}.*(version|files)"
    ):
        kind.read(path)


def test_not_json_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("{")
    with pytest.raises(RecordError, match=rf"{re.escape(str(path))}: not JSON"):
        Report.read(path)


def test_the_registry_refuses_a_registration_of_another_schema(tmp_path):
    folder = tmp_path / "registry" / "m" / "1"
    folder.mkdir(parents=True)
    path = folder / "registration.json"
    path.write_text(json.dumps({**VALID[RegistrationRecord], "schema": 99}))
    with pytest.raises(RecordSchemaError, match=rf"{re.escape(str(path))}: RegistrationRecord schema 99"):
        FileRegistry(tmp_path / "registry").record(ModelRef("m", 1))


def test_the_archive_refuses_a_manifest_of_another_schema(tmp_path):
    folder = tmp_path / "archive" / "m" / "1"
    folder.mkdir(parents=True)
    path = folder / "manifest.json"
    path.write_text(json.dumps({**VALID[Manifest], "schema": 99}))
    with pytest.raises(RecordSchemaError, match=rf"{re.escape(str(path))}: Manifest schema 99"):
        Archive(tmp_path / "archive").manifest("m", 1)


def test_an_audit_reports_a_manifest_of_another_schema_as_unread_not_corrupt(tmp_path):
    """A bundle written by another Parity version is not damaged: the audit says it cannot read it."""
    copy = tmp_path / "archive" / "iris-tree" / "1"
    shutil.copytree(BUNDLE, copy)
    (copy / "manifest.json").write_text(json.dumps({**_json(BUNDLE / "manifest.json"), "schema": 99}))

    audit = audit_bundle(Archive(tmp_path / "archive"), "iris-tree", 1, replay_outputs=False)

    assert audit.status is AuditStatus.ERROR and not audit.corrupt
    assert audit.error is not None and "Manifest schema 99" in audit.error and "reads schema 1" in audit.error


@pytest.mark.parametrize("schema", [True, 1.0, "1"], ids=["bool", "float", "text"])
def test_a_schema_must_be_the_integer_itself(schema, tmp_path):
    path = _write(tmp_path, {**VALID[Manifest], "schema": schema})
    with pytest.raises(RecordSchemaError, match=rf"Manifest schema {re.escape(repr(schema))}"):
        Manifest.read(path)


# -- where a runtime ran: once per target ----------------------------------------------------------------
def _checks_as_validators_make_them() -> list[Check]:
    """Two runtimes on one target, each described by its runner, and a cross-target row (which is not)."""
    here = Where(machine="x86_64", cpuinfo={"flags": "sse2 avx2"}, threads=1)
    away = Where(machine="aarch64", cpu="neoverse-n1", verification="ok")
    cell = {"format": "pmml", "verdict": Verdict.PASS}
    return [
        Check(**cell, runtime="jpmml_evaluator", target="linux-x86_64", output="predict", where=here),
        Check(**cell, runtime="jpmml_evaluator", target="linux-x86_64", output="predict_proba", where=here),
        Check(**cell, runtime="jpmml", target="linux-aarch64-emulated", output="predict", where=away),
        Check(
            **cell, runtime="jpmml", target="linux-aarch64-emulated", output="predict", against="linux-x86_64"
        ),
    ]


def test_a_written_report_keeps_where_once_per_target_and_reads_it_back_into_every_check(tmp_path):
    checks = _checks_as_validators_make_them()
    base = Report.from_data(VALID[Report]).model_dump()
    report = Report(**{**base, "checks": checks, "targets": targets_section(checks)})
    written = json.loads(report.to_bytes())

    assert all("where" not in check for check in written["checks"])
    assert written["targets"]["linux-x86_64"]["where"] == {"pmml/jpmml_evaluator": checks[0].where.to_json()}
    assert written["targets"]["linux-aarch64-emulated"]["where"] == {"pmml/jpmml": checks[2].where.to_json()}
    read = Report.read(_write(tmp_path, written))
    assert [read.where_of(c) for c in read.checks] == [c.where for c in checks[:3]] + [checks[2].where]
    assert [c.where for c in read.checks] == [read.where_of(c) for c in read.checks]
    assert read == report


def test_a_report_made_without_a_targets_section_keeps_its_checks_where_in_one():
    checks = _checks_as_validators_make_them()
    report = Report(**{**Report.from_data(VALID[Report]).model_dump(), "targets": {}, "checks": checks})
    assert set(report.targets) == {"linux-x86_64", "linux-aarch64-emulated"}
    assert report.where_of(checks[1]) == checks[1].where
    assert report.to_json()["targets"] == Report.from_data(report.to_json()).to_json()["targets"]


def test_an_old_report_reads_with_where_in_each_check_and_is_written_once_per_target():
    old = _json(BUNDLE / "report.json")
    assert old["schema"] == 1 and all("where" in check for check in old["checks"])
    report = Report.read(BUNDLE / "report.json")
    assert [c.where.to_json() for c in report.checks] == [check["where"] for check in old["checks"]]
    assert all("where" not in check for check in report.to_json()["checks"])
