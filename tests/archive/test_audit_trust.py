"""The audit trusts only the registry's record of a registration, never the bundle it checks.

A tampered bundle (its model replaced by one whose payload writes a canary, its metadata listing the payload's
types as trusted, its manifest rewritten to match) must never run the payload, and must not pass.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import parity.archive as archive_stage
from parity.archive import Archive
from parity.archive.audit import audit_bundle
from parity.core.records import AuditStatus, Check, Manifest, Verdict
from parity.registry import FileRegistry, sha256_of
from tests.archive.tampering import reseal_inventory
from tests.registry.test_registry import CUSTOM_TYPE, custom_module  # noqa: F401  (a fixture)

NAME = "trusted-audit"
PASS = Check(
    format="onnx",
    runtime="onnxruntime",
    target="linux/x86_64",
    output="label",
    verdict=Verdict.PASS,
    kind="label",
    max_abs=0.0,
    max_rel=0.0,
    n_outside=0,
)


def _canary_model(canary: Path, X) -> bytes:
    source = f"__import__('pathlib').Path({str(canary)!r}).write_text('the payload ran')"
    return sio.dumps(FunctionTransformer(func=functools.partial(exec, source, {})).fit(X))


@pytest.fixture(scope="module")
def archived(iris, tmp_path_factory) -> tuple[FileRegistry, Archive]:
    """A registry and an archive with one bundle (no artifacts: the replay then only loads the model)."""
    root = tmp_path_factory.mktemp("trust")
    registry = FileRegistry(root / "registry")
    model = registry.open(registry.register(LogisticRegression(max_iter=500).fit(*iris), iris[0], NAME))
    filed = archive_stage.file_model(Archive(root / "archive"), model, {}, [PASS])
    assert filed.outcome == "passed", filed.report
    return registry, Archive(root / "archive")


def _copy(archived: tuple[FileRegistry, Archive], tmp_path: Path) -> tuple[FileRegistry, Archive, Path]:
    registry, shelf = archived
    shutil.copytree(shelf.root, tmp_path / "archive")
    copy = Archive(tmp_path / "archive")
    return registry, copy, copy.bundle_path(NAME, 1)


def _rewrite(folder: Path, changes: dict[str, bytes]) -> None:
    """Change bundle files and rewrite the manifest to match, as a tamperer with write access would."""
    for name, data in changes.items():
        (folder / name).write_bytes(data)
    manifest = Manifest.read(folder / "manifest.json")
    files = {name: sha256_of(folder / name) for name in manifest.files}
    (folder / "manifest.json").write_bytes(manifest.model_copy(update={"files": files}).to_bytes())
    reseal_inventory(folder)  # ... and the OCFL inventory too


def _plant_canary(folder: Path, canary: Path, X) -> Path:
    """The issue's tampering: the model replaced by the canary, the metadata trusting its types, the manifest
    rewritten to match."""
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["trusted_types"] = ["builtins.exec", "functools.partial"]
    _rewrite(
        folder, {"model.skops": _canary_model(canary, X), "metadata.json": json.dumps(metadata).encode()}
    )
    return canary


def test_a_bundle_is_bound_to_its_registration(archived):
    registry, shelf = archived
    folder = shelf.bundle_path(NAME, 1)
    record = registry.path(registry.resolve(NAME, 1)) / "registration.json"
    manifest = Manifest.read(folder / "manifest.json")
    assert manifest.files["registration.json"] == sha256_of(record)
    audit = audit_bundle(shelf, NAME, 1, registry=registry)
    assert audit.status is AuditStatus.OK, audit


def test_the_canary_is_live(iris, tmp_path):
    canary = tmp_path / "CANARY"
    payload = _canary_model(canary, iris[0])
    sio.loads(payload, trusted=sio.get_untrusted_types(data=payload)).transform(iris[0])
    assert canary.exists()


@pytest.mark.parametrize("with_registry", [True, False], ids=["with-registry", "without-registry"])
def test_a_tampered_bundle_never_runs_its_payload_and_does_not_pass(archived, iris, tmp_path, with_registry):
    registry, shelf, folder = _copy(archived, tmp_path)
    canary = _plant_canary(folder, tmp_path / "CANARY", iris[0])
    assert shelf.check(folder) == []  # the checksums alone cannot tell
    audit = audit_bundle(shelf, NAME, 1, registry=registry if with_registry else None)
    assert not canary.exists()
    if with_registry:
        assert audit.status is AuditStatus.CORRUPT
        assert any(f.startswith("model.skops: is not the registered model file") for f in audit.corrupt), (
            audit
        )
    else:
        assert audit.status is AuditStatus.ERROR
        assert "holds types not on the allowlist: builtins.exec, functools.partial" in (audit.error or "")
        assert "--registry" in (audit.error or "")


def test_a_bundle_whose_registration_copy_was_changed_is_corrupt(archived, tmp_path):
    registry, shelf, folder = _copy(archived, tmp_path)
    record = json.loads((folder / "registration.json").read_text())
    record["trusted_types"] = ["builtins.exec"]
    _rewrite(folder, {"registration.json": json.dumps(record).encode()})
    audit = audit_bundle(shelf, NAME, 1, registry=registry)
    assert audit.status is AuditStatus.CORRUPT
    (finding,) = audit.corrupt
    assert finding.startswith("registration.json: the manifest binds the bundle to a registration record")


def test_types_the_registration_trusted_are_trusted_from_the_registry_only(custom_module, iris, tmp_path):  # noqa: F811
    """A model with a type only its registration trusts replays with the registry, and without it is refused
    with the fix, even though the bundle's metadata lists the type."""
    registry = FileRegistry(tmp_path / "registry")
    model = make_pipeline(custom_module.Doubler(), LogisticRegression(max_iter=500)).fit(*iris)
    type_name = CUSTOM_TYPE
    ref = registry.register(model, iris[0], NAME, trusted_types=[type_name])
    shelf = Archive(tmp_path / "archive")
    archive_stage.file_model(shelf, registry.open(ref), {}, [PASS])
    assert (
        type_name in json.loads((shelf.bundle_path(NAME, 1) / "metadata.json").read_text())["trusted_types"]
    )
    assert audit_bundle(shelf, NAME, 1, registry=registry).status is AuditStatus.OK
    alone = audit_bundle(shelf, NAME, 1, registry=None)
    assert alone.status is AuditStatus.ERROR and type_name in (alone.error or "")
    elsewhere = audit_bundle(shelf, NAME, 1, registry=FileRegistry(tmp_path / "another"))
    assert elsewhere.status is AuditStatus.ERROR and "has no record of" in (elsewhere.error or "")


@pytest.mark.prefect_server
def test_parity_audit_on_a_tampered_bundle_exits_1_and_runs_nothing(
    prefect_server, archived, iris, tmp_path, capsys
):
    from parity.cli import main

    registry, shelf, folder = _copy(archived, tmp_path)
    canary = _plant_canary(folder, tmp_path / "CANARY", iris[0])
    code = main(["audit", "--archive", str(shelf.root), "--registry", str(registry.root)])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "corrupt" in out and "is not the registered model file" in out
    assert not canary.exists()


def test_a_bound_replay_judges_by_the_registrations_tolerances_not_the_bundles(archived, tmp_path):
    from parity.archive.audit import trust_for

    registry, _shelf, folder = _copy(archived, tmp_path)
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["tolerances"] = {"probability": {"atol": 1.0}}  # loosened in the bundle
    _rewrite(folder, {"metadata.json": json.dumps(metadata).encode()})
    trust, problems = trust_for(folder, NAME, 1, registry)
    assert problems == [] and trust.bound
    assert trust.tolerances == registry.record(registry.resolve(NAME, 1)).tolerances == {}
    unbound, _ = trust_for(folder, NAME, 1, None)
    assert unbound.tolerances is None and not unbound.bound
