"""The archive: immutable checksummed bundles, the rejected area, and filing one real model end to end."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from parity.archive import CONTENT, MANIFEST, REJECTED, Archive, BundleResult, Filed, build_report, file_model
from parity.archive.bundle import STAGING
from parity.core.defaults import host_platform
from parity.core.errors import ArchiveConflictError, IntegrityError
from parity.core.records import Check, Manifest, Metadata, Outcome, Report, Verdict
from parity.registry import FileRegistry, RegisteredModel
from parity.validators import formats
from parity.validators.targets.table import Target

#: Only this process: emulated and pool targets are tested in test_targets.py and test_aarch64.py.
HOST_ONLY = {"host": Target("host", host_platform(), "process")}

IDENTITY = {"model_sha256": "a" * 64, "reference_sha256": "b" * 64}
OTHER_IDENTITY = {"model_sha256": "c" * 64, "reference_sha256": "b" * 64}
#: What file_model writes without an OutputLog (with one it adds outputs.parquet: test_card_and_report.py).
BUNDLE_FILES = {
    "card.md",
    "manifest.json",
    "metadata.json",
    "model.onnx",
    "model.pmml",
    "model.skops",
    "predictions.parquet",
    "reference.parquet",
    "registration.json",
    "report.html",
    "report.json",
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder`` with its modification time and content."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def shelf(tmp_path: Path) -> Archive:
    return Archive(tmp_path / "archive")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path | bytes]:
    source = tmp_path / "model.pmml"
    source.write_text("<PMML/>\n")
    return {"model.pmml": source, "report.json": b'{"schema": 1}\n', "notes.txt": b"hello\n"}


# -- bundles ---------------------------------------------------------------------------------------------
def test_write_bundle_writes_files_and_manifest(shelf, files):
    result = shelf.write_bundle("iris-lr", 1, files, IDENTITY)
    obj = shelf.root / "iris-lr" / "1"
    assert result == BundleResult(str(obj), True) and result.content == str(obj / CONTENT)
    content = Path(result.content)
    assert sorted(p.name for p in content.iterdir()) == sorted([*files, MANIFEST])
    assert (content / "model.pmml").read_text() == "<PMML/>\n"
    assert (content / "notes.txt").read_bytes() == b"hello\n"
    manifest = shelf.manifest("iris-lr", 1)
    assert isinstance(manifest, Manifest) and manifest.schema_version == 1
    assert manifest.identity.to_json() == IDENTITY
    assert manifest.files == {name: _sha(content / name) for name in files}
    assert manifest.files["notes.txt"] == hashlib.sha256(b"hello\n").hexdigest()
    assert json.loads((content / MANIFEST).read_text())["schema"] == 1
    assert shelf.is_archived("iris-lr", 1) and not shelf.is_archived("iris-lr", 2)
    assert shelf.check(content) == [] and shelf.check(obj) == []
    assert list((shelf.root / STAGING).iterdir()) == []


def test_second_write_with_same_identity_leaves_bundle_alone(shelf, files):
    first = shelf.write_bundle("iris-lr", 1, files, IDENTITY)
    before = _snapshot(Path(first.path))
    second = shelf.write_bundle("iris-lr", 1, {"other.txt": b"new"}, IDENTITY)
    assert second == BundleResult(first.path, False)
    assert _snapshot(Path(first.path)) == before


def test_write_with_different_identity_is_refused(shelf, files):
    first = shelf.write_bundle("iris-lr", 1, files, IDENTITY)
    before = _snapshot(Path(first.path))
    with pytest.raises(
        ArchiveConflictError, match=r"already holds a bundle for a different model.*new version"
    ):
        shelf.write_bundle("iris-lr", 1, files, OTHER_IDENTITY)
    assert _snapshot(Path(first.path)) == before


def test_rewrite_over_a_damaged_bundle_is_refused(shelf, files):
    path = Path(shelf.write_bundle("iris-lr", 1, files, IDENTITY).content)
    (path / "notes.txt").write_bytes(b"tampered\n")
    with pytest.raises(IntegrityError, match=r"archived bundle is damaged: notes\.txt: SHA-256 differs"):
        shelf.write_bundle("iris-lr", 1, files, IDENTITY)


def test_check_lists_missing_changed_and_extra_files(shelf, files):
    path = Path(shelf.write_bundle("iris-lr", 1, files, IDENTITY).content)
    (path / "model.pmml").unlink()
    (path / "report.json").write_bytes(b"{}")
    (path / "zzz.txt").write_bytes(b"stowaway")
    assert shelf.check(path) == [
        "model.pmml: missing",
        "report.json: SHA-256 differs from the manifest",
        "zzz.txt: not in the manifest",
    ]


def test_failed_staging_leaves_nothing_half_written(shelf, files, tmp_path):
    broken = dict(files, **{"n-missing.bin": tmp_path / "does-not-exist.bin"})  # sorted second of four
    with pytest.raises(FileNotFoundError, match=r"does-not-exist\.bin"):
        shelf.write_bundle("iris-lr", 1, broken, IDENTITY)
    assert not (shelf.root / "iris-lr").exists()
    assert not (shelf.root / STAGING).exists() or list((shelf.root / STAGING).iterdir()) == []
    assert not shelf.is_archived("iris-lr", 1)
    # the version is still free for a good write
    assert shelf.write_bundle("iris-lr", 1, files, IDENTITY).written


def test_rejected_attempts_each_get_a_folder(shelf, files):
    first = Path(shelf.write_rejected("iris-lr", 1, files, IDENTITY))
    second = Path(shelf.write_rejected("iris-lr", 1, {"report.json": b"{}"}, IDENTITY))
    assert first != second
    assert first.parent == second.parent == shelf.root / REJECTED / "iris-lr" / "1"
    assert shelf.rejected("iris-lr", 1) == [str(p.relative_to(shelf.root)) for p in (first, second)]
    assert (first / CONTENT / "notes.txt").read_bytes() == b"hello\n"
    assert sorted(p.name for p in (second / CONTENT).iterdir()) == [MANIFEST, "report.json"]
    assert shelf.check(first) == [] and shelf.check(second) == []
    assert not shelf.is_archived("iris-lr", 1)
    assert shelf.rejected("iris-lr", 2) == []


# -- filing a registered model (no converters: real checks given directly) --------------------------------
@pytest.fixture(scope="module")
def logreg(iris: tuple[pd.DataFrame, pd.Series]) -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(*iris)


@pytest.fixture
def registered(tmp_path: Path, logreg, iris) -> RegisteredModel:
    registry = FileRegistry(tmp_path / "registry")
    return registry.open(registry.register(logreg, iris[0], "iris-lr", training_data_uri="sklearn:iris"))


def _check(verdict: Verdict) -> Check:
    return Check(
        format="onnx", runtime="onnxruntime", output="predict", verdict=verdict, kind="label", rows=150
    )


def test_file_model_archives_a_pass_without_artifacts(shelf, registered):
    filed = file_model(shelf, registered, {}, [_check(Verdict.PASS)])
    content = shelf.bundle_path("iris-lr", 1)
    assert filed == Filed(Outcome.PASSED, str(content.parents[1]), True, filed.report)
    assert filed.content == str(content)
    names = {p.name for p in content.iterdir()}
    assert names == BUNDLE_FILES - {"model.onnx", "model.pmml"}
    assert (content / "model.skops").read_bytes() == registered.model_file.read_bytes()
    assert shelf.manifest("iris-lr", 1).identity.to_json() == {
        "model_sha256": registered.record.model.sha256,
        "reference_sha256": registered.record.reference.sha256,
    }
    again = file_model(shelf, registered, {}, [_check(Verdict.PASS)])
    assert (again.outcome, again.written) == ("passed", False)


def test_file_model_refuses_another_model_under_an_archived_version(shelf, registered, iris, tmp_path):
    file_model(shelf, registered, {}, [_check(Verdict.PASS)])
    other_registry = FileRegistry(tmp_path / "other-registry")
    other = LogisticRegression(max_iter=1000, C=0.01).fit(*iris)
    impostor = other_registry.open(other_registry.register(other, iris[0], "iris-lr"))
    with pytest.raises(ArchiveConflictError, match="different model"):
        file_model(shelf, impostor, {}, [_check(Verdict.PASS)])


def test_file_model_dumps_a_trusted_pickle_as_skops(shelf, logreg, iris, tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(logreg))
    registry = FileRegistry(tmp_path / "registry")
    ref = registry.register(None, iris[0], "pickled", model_file=path, trust_pickle=True, sha256=_sha(path))
    filed = file_model(shelf, registry.open(ref), {}, [_check(Verdict.PASS)])
    restored = sio.load(Path(filed.content) / "model.skops")
    np.testing.assert_array_equal(restored.predict_proba(iris[0]), logreg.predict_proba(iris[0]))
    assert not (Path(filed.content) / "model.pkl").exists()


@pytest.mark.parametrize(
    ("checks", "outcome"),
    [
        ([_check(Verdict.PASS), _check(Verdict.FAIL)], "failed"),
        ([_check(Verdict.ERROR)], "failed"),
        ([_check(Verdict.UNSUPPORTED)], "unsupported"),
        ([], "failed"),
    ],
    ids=["one-fail", "error", "unsupported", "no-checks"],
)
def test_file_model_rejects_what_did_not_pass(shelf, registered, checks, outcome):
    filed = file_model(shelf, registered, {}, checks)
    assert filed.outcome == outcome
    assert Path(filed.path).parent == shelf.root / REJECTED / "iris-lr" / "1"
    assert Report.read(Path(filed.content) / "report.json").outcome is Outcome(outcome)
    assert json.loads((Path(filed.content) / "report.json").read_text())["outcome"] == outcome
    assert not shelf.bundle_path("iris-lr", 1).exists()


def test_build_report_carries_loading_notes(registered):
    registered.notes.append("pickled with scikit-learn 1.5.0")
    report = build_report(registered, {}, [_check(Verdict.PASS)])
    assert report.to_json()["schema"] == 2
    assert (report.name, report.version, report.outcome) == ("iris-lr", 1, Outcome.PASSED)
    assert report.reference_rows == 150
    assert report.notes == ["pickled with scikit-learn 1.5.0"]
    assert report.checks[0].verdict is Verdict.PASS


# -- end to end: register → convert → validate → file (JVM) ----------------------------------------------
@pytest.fixture(scope="module")
def validated(tmp_path_factory: pytest.TempPathFactory, logreg, iris):
    """One real model through every format's converter and every runtime."""
    from parity.validators.validate import ModelContext, validate_conversion

    root = tmp_path_factory.mktemp("e2e")
    registry = FileRegistry(root / "registry")
    model = registry.open(registry.register(logreg, iris[0], "iris-lr", cv_scores={"cv5": [0.95, 0.97]}))
    context = ModelContext(model)
    conversions = {
        fmt: formats.convert(fmt, model.estimator, model.reference, root / fmt) for fmt in formats.FORMATS
    }
    checks = [
        check for c in conversions.values() for check in validate_conversion(context, c, targets=HOST_ONLY)
    ]
    return model, conversions, checks


@pytest.mark.slow
def test_file_model_end_to_end_passes_and_archives(validated, tmp_path):
    model, conversions, checks = validated
    assert {fmt: str(c.status) for fmt, c in conversions.items()} == dict.fromkeys(
        formats.FORMATS, "converted"
    )
    assert checks and all(c.verdict is Verdict.PASS for c in checks if c.kind != "coverage"), [
        c.cell for c in checks
    ]
    # logistic regression: neither converter emits decision_function, and the report says so
    assert {c.output: c.verdict for c in checks if c.kind == "coverage" and c.format == "onnx"} == {
        "predict": Verdict.PASS,
        "predict_proba": Verdict.PASS,
        "decision_function": Verdict.NOT_COVERED,
    }
    shelf = Archive(tmp_path / "archive")
    filed = file_model(shelf, model, conversions, checks)
    assert (filed.outcome, filed.written) == ("passed", True)
    content = Path(filed.content)
    assert {p.name for p in content.iterdir()} == BUNDLE_FILES
    assert shelf.check(content) == []
    assert (content / "model.pmml").read_bytes() == conversions["pmml"].path.read_bytes()
    assert (content / "model.onnx").read_bytes() == conversions["onnx"].path.read_bytes()

    metadata = Metadata.read(content / "metadata.json")
    assert metadata.provenance == model.record.provenance
    assert metadata.provenance.cv_scores == {"cv5": [0.95, 0.97]}
    tools = metadata.tools
    for tool in ("scikit-learn", "skl2onnx", "sklearn2pmml", "onnxruntime", "skops", "python"):
        assert tools[tool], tool
    assert "version" in (tools["java"] or "")
    assert metadata.registered_at == model.record.registered_at
    assert metadata.validated_at
    assert metadata.classes == [0, 1, 2]
    assert Report.read(content / "report.json") == filed.report

    report = json.loads((content / "report.json").read_text())
    assert (report["schema"], report["outcome"]) == (2, "passed")
    assert {(c["format"], c["runtime"]) for c in report["checks"]} >= {
        ("pmml", "jpmml_evaluator"),
        ("pmml", "pypmml"),
        ("onnx", "onnxruntime"),
        ("onnx", "onnx-reference"),
    }
    assert set(report["conversions"]) == set(formats.FORMATS)


@pytest.mark.slow
def test_file_model_end_to_end_failure_goes_to_rejected(validated, tmp_path):
    model, conversions, checks = validated
    failing = Check(
        format="onnx",
        runtime="onnxruntime",
        output="predict_proba",
        verdict=Verdict.FAIL,
        explanation="3 rows outside the band",
    )
    shelf = Archive(tmp_path / "archive")
    filed = file_model(shelf, model, conversions, [*checks, failing])
    assert filed.outcome == "failed"
    assert [shelf.store.url(key) for key in shelf.rejected("iris-lr", 1)] == [filed.path]
    report = json.loads((Path(filed.content) / "report.json").read_text())
    assert report["outcome"] == "failed"
    assert report["checks"][-1]["explanation"] == "3 rows outside the band"
    assert not shelf.bundle_path("iris-lr", 1).exists()
    assert not os.listdir(shelf.root / STAGING)
