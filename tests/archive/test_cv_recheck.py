"""The CV re-check of archived bundles: real models, real refits on small data.

The shelf holds three bundles: ``iris-cv`` registered with :func:`register_with_cv` (unchanged: it must
pass), ``iris-planted`` whose record keeps the scores obtained on the true labels while its snapshot (with
its matching SHA-256) holds shuffled labels (a real score drift the criterion must find), and ``iris-plain``
registered without a CV record.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

import parity.archive as archive_stage
from parity.archive import Archive
from parity.archive.audit import audit_bundle
from parity.archive.cv import NOISE_FLOOR, _changed_predictions, compare_scores
from parity.core.records import AuditStatus, BundleAudit, CvStatus, Manifest
from parity.registry import FileRegistry, sha256_of
from parity.registry.cv import register_with_cv
from parity.validators import formats
from parity.validators.targets.table import load_targets
from parity.validators.validate import ModelContext, validate_conversion
from tests.archive.tampering import reseal_inventory

HONEST, PLANTED, PLAIN = "iris-cv", "iris-planted", "iris-plain"
#: The one target and runtime a shelf bundle is validated on: enough for a passing bundle, quick.
LOCAL = "linux-x86_64"


def file_onnx(registry: FileRegistry, ref, archive: Archive, scratch: Path) -> None:
    """Validate a version's ONNX conversion with onnxruntime here, and archive it (it must pass)."""
    model = registry.open(ref)
    conversion = formats.convert("onnx", model.estimator, model.reference, scratch / ref.name)
    targets = {name: t for name, t in load_targets().items() if name == LOCAL}
    checks = validate_conversion(ModelContext(model), conversion, ["onnxruntime"], targets)
    filed = archive_stage.file_model(archive, model, {"onnx": conversion}, checks)
    assert filed.outcome == "passed", filed.report


def make_shelf(root: Path, X, y) -> tuple[FileRegistry, Archive, Archive]:
    """The registry, an archive of the sound bundles (honest, plain) and one of the planted drift."""
    registry = FileRegistry(root / "registry")
    estimator = LogisticRegression(max_iter=500)
    splits = KFold(5, shuffle=True, random_state=0)
    honest = register_with_cv(
        registry, estimator, X, y, name=HONEST, snapshot=root / "train.parquet", reference=X.head(30),
        cv=splits, scoring=["accuracy", "neg_log_loss"],
    )  # fmt: skip
    # the planted drift: a snapshot of shuffled labels, with its own SHA-256 in the record, and the scores
    # that the true labels gave
    shuffled = X.assign(target=np.random.default_rng(0).permutation(y.to_numpy()))
    shuffled.to_parquet(root / "shuffled.parquet", index=False)
    true_record = registry.record(honest).provenance.cross_validation
    planted_record = true_record.model_copy(
        update={
            "scikit_learn": "0.24.2",  # as if trained long ago: a drift names both versions
            "snapshot": true_record.snapshot.model_copy(
                update={"uri": str(root / "shuffled.parquet"), "sha256": sha256_of(root / "shuffled.parquet")}
            ),
        }
    )
    fitted = registry.open(honest).estimator
    planted = registry.register(
        fitted, X.head(30), PLANTED, cv_scores=true_record.scores, cross_validation=planted_record
    )
    plain = registry.register(fitted, X.head(30), PLAIN)
    sound, drifted = Archive(root / "sound"), Archive(root / "drifted")
    for ref, archive in ((honest, sound), (plain, sound), (planted, drifted)):
        file_onnx(registry, ref, archive, root / "onnx")
    return registry, sound, drifted


@pytest.fixture(scope="module")
def shelf(iris, tmp_path_factory) -> tuple[FileRegistry, Archive, Archive]:
    X, y = iris
    return make_shelf(tmp_path_factory.mktemp("cv-shelf"), X, y)


@contextlib.contextmanager
def moved(path: Path) -> Iterator[Path]:
    """``path`` moved aside for the block, put back after."""
    aside = path.with_suffix(".aside")
    shutil.move(path, aside)
    try:
        yield aside
    finally:
        shutil.move(aside, path)


def _snapshot(registry: FileRegistry, name: str) -> Path:
    return Path(registry.record(registry.resolve(name)).provenance.cross_validation.snapshot.uri)


# -- the criterion ---------------------------------------------------------------------------------------
def test_identical_folds_pass():
    c = compare_scores("accuracy", [0.9, 0.8, 1.0], [0.9, 0.8, 1.0])
    assert not c.drifted and c.mean_difference == 0.0


def test_a_shift_within_two_standard_errors_passes_and_beyond_is_drift():
    recorded = [0.90, 0.80, 1.00, 0.85, 0.95]  # sd 0.079, SE 0.035: the threshold is 0.0707 + 1e-6
    assert not compare_scores("accuracy", recorded, [s - 0.07 for s in recorded]).drifted
    beyond = compare_scores("accuracy", recorded, [s - 0.072 for s in recorded])
    assert beyond.drifted and beyond.threshold == pytest.approx(
        2 * np.std(recorded, ddof=1) / np.sqrt(5) + 1e-6
    )


def test_folds_that_all_scored_the_same_tolerate_rounding_only():
    assert not compare_scores("accuracy", [1.0, 1.0, 1.0], [1.0, 1.0, 1.0 - NOISE_FLOOR / 2]).drifted
    assert compare_scores("accuracy", [1.0, 1.0, 1.0], [1.0, 1.0, 0.99]).drifted


def test_another_number_of_folds_is_drift():
    c = compare_scores("accuracy", [0.9, 0.8, 1.0], [0.9, 0.8])
    assert c.drifted and c.mean_difference is None


# -- bundles ---------------------------------------------------------------------------------------------
def test_an_unchanged_model_passes(shelf):
    registry, sound, _ = shelf
    audit = audit_bundle(sound, HONEST, 1, replay_outputs=False, registry=registry, cv=True)
    assert audit.status is AuditStatus.OK, audit
    assert audit.cv.status is CvStatus.OK and audit.cv.findings == []
    assert [c.scorer for c in audit.cv.scores] == ["accuracy", "neg_log_loss"]
    assert all(c.today == c.recorded and not c.drifted for c in audit.cv.scores)


def test_without_cv_the_audit_does_not_refit(shelf):
    registry, sound, _ = shelf
    audit = audit_bundle(sound, HONEST, 1, replay_outputs=False, registry=registry)
    assert audit.cv is None and "cv" not in audit.to_json()


def test_a_bundle_registered_without_a_cv_record_says_so_and_is_not_an_error(shelf):
    registry, sound, _ = shelf
    audit = audit_bundle(sound, PLAIN, 1, replay_outputs=False, registry=registry, cv=True)
    assert audit.cv.status is CvStatus.NO_RECORD and audit.status is AuditStatus.OK


def test_labels_shuffled_in_the_snapshot_are_a_cv_drift(shelf):
    registry, _, drifted = shelf
    audit = audit_bundle(drifted, PLANTED, 1, replay_outputs=False, registry=registry, cv=True)
    assert audit.status is AuditStatus.DRIFT and audit.cv.status is CvStatus.DRIFT
    accuracy = next(c for c in audit.cv.scores if c.scorer == "accuracy")
    assert accuracy.drifted and accuracy.mean_difference < -0.3  # chance is 1/3, the recorded mean ~0.95
    assert audit.drift == []  # not a runtime drift: the report's cells were not touched
    assert any(f.startswith("cv accuracy: mean") and "paired shift" in f for f in audit.findings)
    assert audit.findings[-1].startswith("cv: recorded under scikit-learn 0.24.2, re-checked under 1.")
    assert BundleAudit.model_validate(audit.to_json()) == audit  # read back, status derived again


def test_a_missing_snapshot_is_a_finding_not_a_crash(shelf):
    registry, sound, _ = shelf
    with moved(_snapshot(registry, HONEST)) as _:
        audit = audit_bundle(sound, HONEST, 1, replay_outputs=False, registry=registry, cv=True)
    assert audit.cv.status is CvStatus.SNAPSHOT_MISSING and audit.status is AuditStatus.ERROR
    (finding,) = audit.findings
    assert "train.parquet is missing; restore it" in finding


def test_a_snapshot_whose_sha256_changed_is_a_finding_and_the_cv_is_not_rerun(shelf):
    registry, sound, _ = shelf
    path = _snapshot(registry, HONEST)
    with moved(path) as aside:
        shutil.copyfile(registry.path(registry.resolve(HONEST)) / "reference.parquet", path)  # other data
        try:
            audit = audit_bundle(sound, HONEST, 1, replay_outputs=False, registry=registry, cv=True)
        finally:
            path.unlink()
        assert (
            sha256_of(aside)
            == registry.record(registry.resolve(HONEST)).provenance.cross_validation.snapshot.sha256
        )
    assert audit.cv.status is CvStatus.SNAPSHOT_CHANGED and audit.status is AuditStatus.ERROR
    assert audit.cv.scores == [] and "the registration recorded" in audit.findings[0]


def test_a_corrupt_bundle_is_not_refitted(shelf, tmp_path):
    registry, sound, _ = shelf
    copy = Archive(tmp_path / "archive")
    shutil.copytree(sound.root, copy.root)
    (copy.bundle_path(HONEST, 1) / "model.skops").chmod(0o644)
    (copy.bundle_path(HONEST, 1) / "model.skops").write_bytes(b"not a model")
    audit = audit_bundle(copy, HONEST, 1, replay_outputs=False, registry=registry, cv=True)
    assert audit.status is AuditStatus.CORRUPT and audit.cv is None


def test_reference_predictions_of_another_model_are_named(shelf, iris):
    X, y = iris
    registry, sound, _ = shelf
    other = LogisticRegression(C=0.01, max_iter=500).fit(X, y)
    changes = _changed_predictions(sound.bundle_path(HONEST, 1), other, {})
    assert any(c.startswith("reference predictions: predict_proba differs on") for c in changes)
    same = registry.open(registry.resolve(HONEST)).estimator
    assert _changed_predictions(sound.bundle_path(HONEST, 1), same, {}) == []


class EveryThird:
    """A splitter outside scikit-learn: recordable (get_params), rebuilt by the audit only when trusted."""

    def __init__(self, n_splits: int = 3) -> None:
        self.n_splits = n_splits

    def get_params(self, deep: bool = False) -> dict:
        return {"n_splits": self.n_splits}

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return self.n_splits

    def split(self, X, y=None, groups=None):
        index = np.arange(len(X))
        for fold in range(self.n_splits):
            yield index[index % self.n_splits != fold], index[index % self.n_splits == fold]


CUSTOM = f"{EveryThird.__module__}.{EveryThird.__qualname__}"


@pytest.fixture(scope="module")
def custom_shelf(iris, tmp_path_factory) -> tuple[FileRegistry, Archive]:
    """``trusted:1`` trusts its custom splitter's class, ``untrusted:1`` does not."""
    X, y = iris
    root = tmp_path_factory.mktemp("cv-custom")
    registry, archive = FileRegistry(root / "registry"), Archive(root / "archive")
    for name, trusted in (("trusted", [CUSTOM]), ("untrusted", [])):
        ref = register_with_cv(
            registry, LogisticRegression(max_iter=500), X, y, name=name, snapshot=root / f"{name}.parquet",
            reference=X.head(10), cv=EveryThird(), scoring="accuracy", trusted_types=trusted,
        )  # fmt: skip
        file_onnx(registry, ref, archive, root / "onnx")
    return registry, archive


def test_a_custom_splitter_the_registration_trusted_is_rebuilt(custom_shelf):
    registry, archive = custom_shelf
    audit = audit_bundle(archive, "trusted", 1, replay_outputs=False, registry=registry, cv=True)
    assert audit.status is AuditStatus.OK and audit.cv.status is CvStatus.OK
    assert len(audit.cv.scores[0].today) == 3


def test_a_custom_splitter_nobody_trusted_is_not_imported_and_that_is_a_finding(custom_shelf):
    registry, archive = custom_shelf
    audit = audit_bundle(archive, "untrusted", 1, replay_outputs=False, registry=registry, cv=True)
    assert audit.cv.status is CvStatus.ERROR and audit.status is AuditStatus.ERROR
    (finding,) = audit.findings
    assert f"UntrustedModelError: splitter {CUSTOM} is not a scikit-learn class" in finding
    assert "register with trusted_types" in finding


# -- a tampered CV record: never run, never taken from the bundle when the registry has one -----------------
def _tamper(archive: Archive, name: str, changes: dict[str, bytes | None]) -> Path:
    """Change (or, for None, delete) files of a bundle and reseal its manifest and OCFL inventory, as a
    tamperer with write access would; the manifest then lists exactly the files left."""
    folder = archive.bundle_path(name, 1)
    for file, data in changes.items():
        path = folder / file
        path.chmod(0o644)
        path.unlink()
        if data is not None:
            path.write_bytes(data)
    manifest = Manifest.read(folder / "manifest.json")
    files = {p.name: sha256_of(p) for p in folder.iterdir() if p.name != "manifest.json"}
    (folder / "manifest.json").chmod(0o644)
    (folder / "manifest.json").write_bytes(manifest.model_copy(update={"files": files}).to_bytes())
    reseal_inventory(folder)  # ... and the OCFL inventory too
    assert archive.check(folder) == []  # the checksums alone cannot tell
    return folder


def _poisoned(provenance: dict, folder: Path, canary: Path) -> None:
    """The review's record: a Popen reached through numpy under a "sklearn." prefix, and a snapshot whose
    bytes are known (the bundle's own reference rows), so that only the splitter stands in the way."""
    cv = provenance["cross_validation"]
    cv["splitter"] = {
        "class": "sklearn.datasets._rcv1.np.f2py.subprocess.Popen",
        "params": {"args": ["touch", str(canary)]},
    }
    reference = folder / "reference.parquet"
    cv["snapshot"].update(uri=str(reference), sha256=sha256_of(reference))


def _copy_of(archive: Archive, tmp_path: Path) -> Archive:
    shutil.copytree(archive.root, tmp_path / "archive")
    return Archive(tmp_path / "archive")


def test_with_a_registry_record_the_cv_record_is_the_registrys_not_the_bundles(shelf, tmp_path):
    registry, sound, _ = shelf
    copy, canary = _copy_of(sound, tmp_path), tmp_path / "CANARY"
    folder = copy.bundle_path(HONEST, 1)
    metadata = json.loads((folder / "metadata.json").read_text())
    _poisoned(metadata["provenance"], folder, canary)
    # the copy of the registration, which the audit binds to the registry, dropped: metadata.json is left
    _tamper(copy, HONEST, {"registration.json": None, "metadata.json": json.dumps(metadata).encode()})
    audit = audit_bundle(copy, HONEST, 1, replay_outputs=False, registry=registry, cv=True)
    assert not canary.exists()
    recorded = registry.record(registry.resolve(HONEST)).provenance.cross_validation
    assert audit.cv.status is CvStatus.OK, audit.cv
    assert {c.scorer: c.recorded for c in audit.cv.scores} == recorded.scores


def test_without_a_registry_a_bundle_cv_record_naming_another_class_is_refused(shelf, tmp_path):
    _, sound, _ = shelf
    copy, canary = _copy_of(sound, tmp_path), tmp_path / "CANARY"
    folder = copy.bundle_path(HONEST, 1)
    record = json.loads((folder / "registration.json").read_text())
    _poisoned(record["provenance"], folder, canary)
    _tamper(copy, HONEST, {"registration.json": json.dumps(record).encode()})
    audit = audit_bundle(copy, HONEST, 1, replay_outputs=False, registry=None, cv=True)
    assert not canary.exists()
    assert audit.cv.status is CvStatus.ERROR and audit.status is AuditStatus.ERROR
    (finding,) = audit.cv.findings
    assert (
        "UntrustedModelError: splitter sklearn.datasets._rcv1.np.f2py.subprocess.Popen is not a " in finding
    )
    assert "expected a splitter of sklearn.model_selection" in finding


def test_without_a_registry_a_bundle_scikit_learn_splitter_is_rechecked(shelf):
    _, sound, _ = shelf
    audit = audit_bundle(sound, HONEST, 1, replay_outputs=False, registry=None, cv=True)
    assert audit.cv.status is CvStatus.OK and len(audit.cv.scores[0].today) == 5


def test_without_a_registry_a_custom_splitter_is_not_trusted_by_the_bundles_word(custom_shelf):
    _, archive = custom_shelf
    folder = archive.bundle_path("trusted", 1)
    assert CUSTOM in json.loads((folder / "registration.json").read_text())["trusted_types"]
    audit = audit_bundle(archive, "trusted", 1, replay_outputs=False, registry=None, cv=True)
    assert audit.cv.status is CvStatus.ERROR
    (finding,) = audit.cv.findings
    assert f"UntrustedModelError: splitter {CUSTOM} is not a scikit-learn class" in finding
