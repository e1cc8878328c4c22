"""A bundle and its registration written before typed records (schema 1) still read, re-serialise and audit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from parity.archive import Archive
from parity.archive.audit import audit_bundle
from parity.core.defaults import host_platform
from parity.core.records import AuditStatus, Document, Manifest, Metadata, RegistrationRecord, Report
from parity.registry import FileRegistry, ModelRef
from parity.validators.targets.table import Target

FIXTURE = Path(__file__).parents[1] / "fixtures" / "schema-1"
BUNDLE = FIXTURE / "archive" / "iris-tree" / "1"
REGISTRATION = FIXTURE / "registry" / "iris-tree" / "1"
#: The one target the fixture was validated on (see its make_bundle.py).
TARGETS = {"linux-x86_64": Target("linux-x86_64", host_platform(), "process", threads=1)}

DOCUMENTS: dict[Path, type[Document]] = {
    REGISTRATION / "registration.json": RegistrationRecord,
    BUNDLE / "report.json": Report,
    BUNDLE / "metadata.json": Metadata,
    BUNDLE / "manifest.json": Manifest,
}


@pytest.mark.parametrize(("path", "kind"), DOCUMENTS.items(), ids=[p.name for p in DOCUMENTS])
def test_every_document_reads_and_writes_back_the_same_json(path, kind):
    record = kind.read(path)
    assert record.to_json() == json.loads(path.read_text())
    assert kind.from_data(json.loads(record.to_bytes()), path) == record


def test_the_fixture_is_every_json_file_there():
    assert set(FIXTURE.rglob("*.json")) == set(DOCUMENTS)


def _copy(tmp_path: Path) -> Path:
    copy = tmp_path / "schema-1"
    shutil.copytree(FIXTURE, copy)
    return copy


@pytest.mark.slow
def test_the_fixture_bundle_audits_ok(tmp_path):
    archive = Archive(_copy(tmp_path) / "archive")
    audit = audit_bundle(archive, "iris-tree", 1, targets=TARGETS)
    assert audit.corrupt == [] and audit.error is None, audit
    assert audit.drift == [], audit
    assert audit.replayed == len(Report.read(BUNDLE / "report.json").checks)
    assert audit.status is AuditStatus.OK


def test_the_fixture_bundle_checksums_hold(tmp_path):
    archive = Archive(_copy(tmp_path) / "archive")
    assert audit_bundle(archive, "iris-tree", 1, replay_outputs=False).status is AuditStatus.OK
    assert archive.manifest("iris-tree", 1) == Manifest.read(BUNDLE / "manifest.json")


def test_the_fixture_registration_opens(tmp_path):
    registry = FileRegistry(_copy(tmp_path) / "registry")
    ref = registry.resolve("iris-tree")
    assert ref == ModelRef("iris-tree", 1)
    model = registry.open(ref)
    assert model.record == RegistrationRecord.read(REGISTRATION / "registration.json")
    assert model.record.estimator_summary == "DecisionTreeClassifier"
    assert len(model.reference) == model.record.reference.rows == 50
    assert set(model.predictions) == set(model.record.predictions.outputs)
