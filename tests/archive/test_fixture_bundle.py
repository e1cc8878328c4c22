"""A bundle and its registration written before typed records (schema 1) still read, re-serialise and audit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from parity.archive import Archive
from parity.archive.audit import audit_bundle
from parity.core.defaults import host_platform
from parity.core.records import AuditStatus, Document, Manifest, Metadata, Outcome, RegistrationRecord, Report
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


def as_written(record: Document) -> dict:
    """A document read from a schema-1 file, as schema 1 wrote it: an upgrade must lose nothing.

    Report schema 2 added four fields to each check, moved a cross-target row's basis out of its kind, and
    added what each conversion's details say about outputs not emitted, float inputs and PMML fields; and it
    keeps where each runtime ran once per target: schema 1 wrote it in every check of that runtime on that
    target except the cross-target rows (which it wrote with an empty one).
    """
    data = record.to_json()
    if not isinstance(record, Report):
        return data
    checks = []
    for check in data["checks"]:
        check = dict(check)
        assert "where" not in check  # stored once per target now
        against = check.pop("against")
        for added in ("role", "band", "stage"):
            check.pop(added, None)
        target = data["targets"].get(check["target"], {"where": {}})
        described = target["where"].get(f"{check['format']}/{check['runtime']}", {})
        check["where"] = described if against == "scikit-learn" else {}
        if against != "scikit-learn":
            check["kind"] = f"{check['kind']} vs {against}"
        checks.append(check)
    conversions = {}
    for fmt, conversion in data["conversions"].items():
        details = {
            k: v
            for k, v in conversion["details"].items()
            if k not in ("not_emitted", "float_inputs", "fields", "layouts")
        }
        conversions[fmt] = {**conversion, "details": details}
    return {**data, "schema": 1, "checks": checks, "conversions": conversions}


@pytest.mark.parametrize(("path", "kind"), DOCUMENTS.items(), ids=[p.name for p in DOCUMENTS])
def test_every_document_reads_and_writes_back_the_same_json(path, kind):
    record = kind.read(path)
    assert as_written(record) == json.loads(path.read_text())
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
    # every archived row is replayed, and today's coverage rows come on top
    assert audit.replayed > len(Report.read(BUNDLE / "report.json").checks)
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


# --- every fixture folder: bundles on several targets, rejected attempts, regressors, overrides ---------
FIXTURES = Path(__file__).parents[1] / "fixtures"
#: Each document a fixture may hold, by file name.
KINDS: dict[str, type[Document]] = {
    "registration.json": RegistrationRecord,
    "report.json": Report,
    "metadata.json": Metadata,
    "manifest.json": Manifest,
}
ALL_DOCUMENTS = sorted(FIXTURES.rglob("*.json"))


@pytest.mark.parametrize("path", ALL_DOCUMENTS, ids=[str(p.relative_to(FIXTURES)) for p in ALL_DOCUMENTS])
def test_every_kept_document_reads_and_writes_back_the_same_json(path: Path):
    kind = KINDS[path.name]
    record = kind.read(path)
    assert as_written(record) == json.loads(path.read_text())
    assert record.to_bytes() == kind.from_data(json.loads(record.to_bytes()), path).to_bytes()


def test_the_kept_documents_cover_targets_rejections_and_regressors():
    """What the wider fixture is for: if these shapes disappear from it, the tests above prove less."""
    reports = [Report.read(p) for p in ALL_DOCUMENTS if p.name == "report.json"]
    checks = [c for r in reports for c in r.checks]
    assert {c.target for c in checks} >= {"linux-x86_64", "linux-aarch64-emulated", "linux-x86_64-2-threads"}
    assert any(c.against == "linux-x86_64" for c in checks)
    assert any(not c.required for c in checks)
    assert any(c.where.seconds is not None and c.where.schema_version == 1 for c in checks)  # ONNX runner
    assert any(c.where.verification == "ok" for c in checks)  # PMML runner
    assert any(not conv.ok and conv.details is None for r in reports for conv in r.conversions.values())
    assert any(r.outcome is Outcome.UNSUPPORTED for r in reports)
    registrations = [RegistrationRecord.read(p) for p in ALL_DOCUMENTS if p.name == "registration.json"]
    assert any(r.tolerances for r in registrations)
    assert any(r.predictions.classes is None for r in registrations)


@pytest.mark.slow
def test_a_bundle_validated_on_every_target_audits_ok_where_its_process_target_runs(tmp_path):
    copy = tmp_path / "archive"
    shutil.copytree(FIXTURES / "schema-1-targets" / "archive", copy)
    audit = audit_bundle(Archive(copy), "diabetes-gbr", 1, targets=TARGETS)
    assert audit.status is AuditStatus.OK, audit
    archived = Report.read(copy / "diabetes-gbr" / "1" / "report.json").checks
    assert 0 < audit.replayed < len(archived)  # the emulated and 2-thread cells are not replayed here
