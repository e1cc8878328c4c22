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
    Document,
    Manifest,
    Metadata,
    OutcomePayload,
    RegisteredPayload,
    RegistrationRecord,
    Report,
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
