"""The archive audit: checksums, replay in today's runtimes, drift and corruption, events and CLI."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import parity.archive as archive_stage
import parity.validators.validate as validate_module
from parity.archive import Archive
from parity.archive.audit import archived_versions, audit_bundle, compare_reports
from parity.core.records import AuditStatus, Check, Verdict
from parity.registry import FileRegistry
from parity.validators import formats
from parity.validators.validate import ModelContext, validate_conversion
from tests.prefect_events import read_events
from tests.waiting import SERVER_SIDE_DEADLINE_S, wait_for

MODEL = "iris-audit"


def _row(
    output: str = "probabilities", verdict: str = "pass", max_abs: float = 1e-7, target: str = "linux/x86_64"
):
    return Check(
        format="onnx",
        runtime="onnxruntime",
        target=target,
        output=output,
        verdict=Verdict(verdict),
        kind="probability",
        max_abs=max_abs,
        max_rel=1e-6,
        n_outside=0,
    )


def test_identical_replay_is_no_drift():
    assert compare_reports([_row(), _row("label")], [_row(), _row("label")]) == []


def test_a_moved_figure_is_drift_naming_the_cell():
    (change,) = compare_reports([_row()], [_row(max_abs=2e-7)])
    assert change.startswith("onnx/onnxruntime/linux/x86_64/probabilities: output changed")
    assert "max_abs 1e-07 → 2e-07" in change


def test_a_changed_verdict_is_drift():
    changes = compare_reports([_row()], [_row(verdict="fail")])
    assert any("verdict pass → fail" in c for c in changes)


def test_a_cell_no_longer_produced_is_drift_but_other_targets_are_not_compared():
    archived = [_row(), _row("label"), _row(target="linux/aarch64")]
    (change,) = compare_reports(archived, [_row()])
    assert change.startswith("onnx/onnxruntime/linux/x86_64/label: archived with verdict pass")


@pytest.fixture(scope="module")
def shelf(iris, tmp_path_factory) -> Archive:
    """An archive holding one validated bundle, made with the stage functions (no Prefect)."""
    X, y = iris
    root = tmp_path_factory.mktemp("audit")
    registry = FileRegistry(root / "registry")
    model = registry.open(registry.register(LogisticRegression(max_iter=500).fit(X, y), X, MODEL))
    context = ModelContext(model)
    conversions = {f: formats.convert(f, model.estimator, model.reference, root / f) for f in formats.FORMATS}
    checks = [check for c in conversions.values() for check in validate_conversion(context, c)]
    filed = archive_stage.file_model(Archive(root / "archive"), model, conversions, checks)
    assert filed.outcome == "passed", filed.report
    return Archive(root / "archive")


def _copy(shelf: Archive, tmp_path: Path) -> Archive:
    shutil.copytree(shelf.root, tmp_path / "archive")
    return Archive(tmp_path / "archive")


def _damage(shelf: Archive, file: str = "model.onnx") -> Path:
    path = shelf.bundle_path(MODEL, 1) / file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.slow
def test_intact_bundle_replays_identically(shelf):
    assert archived_versions(shelf) == [(MODEL, 1)]
    audit = audit_bundle(shelf, MODEL, 1)
    assert audit.status == "ok", audit
    assert audit.replayed >= 4 and audit.drift == [] and audit.corrupt == []


@pytest.mark.slow
def test_a_target_not_set_up_today_is_left_out_not_drift(shelf, monkeypatch, tmp_path):
    monkeypatch.setenv("PARITY_CACHE_DIR", str(tmp_path / "no-emulator-here"))
    audit = audit_bundle(shelf, MODEL, 1)
    assert audit.status == "ok", audit
    report = json.loads((shelf.bundle_path(MODEL, 1) / "report.json").read_text())
    assert any(c["target"] == "linux-aarch64-emulated" for c in report["checks"])  # archived with it


@pytest.mark.slow
def test_a_runtime_that_now_answers_differently_is_drift(shelf, monkeypatch):
    original = validate_module.run_runtime

    def upgraded(runtime, conversion, X):
        outputs = original(runtime, conversion, X)
        if runtime.name == "onnxruntime":
            outputs = {k: v + 1e-9 if np.issubdtype(v.dtype, np.floating) else v for k, v in outputs.items()}
        return outputs

    monkeypatch.setattr(validate_module, "run_runtime", upgraded)
    audit = audit_bundle(shelf, MODEL, 1)
    assert audit.status == "drift"
    assert audit.drift and all(line.startswith("onnx/onnxruntime/") for line in audit.drift)
    assert "output changed" in audit.drift[0]


@pytest.mark.slow
def test_a_changed_file_is_corruption_and_is_not_replayed(shelf, tmp_path):
    copy = _copy(shelf, tmp_path)
    _damage(copy)
    audit = audit_bundle(copy, MODEL, 1)
    assert audit.status == "corrupt"
    assert audit.corrupt == ["model.onnx: SHA-256 differs from the manifest"]
    assert audit.replayed == 0


@pytest.mark.slow
def test_a_missing_manifest_is_reported_not_raised(shelf, tmp_path):
    copy = _copy(shelf, tmp_path)
    (copy.bundle_path(MODEL, 1) / archive_stage.MANIFEST).unlink()
    # the object is complete (its inventory sidecar is there): it is listed, and its damage reported
    assert archived_versions(copy) == [(MODEL, 1)]
    audit = audit_bundle(copy, MODEL, 1)
    assert audit.status == "corrupt" and "unreadable" in audit.corrupt[0]
    assert audit.recorded_as is None  # nothing is written into a damaged object


@pytest.mark.slow
def test_an_object_without_its_sidecar_is_not_a_bundle(shelf, tmp_path):
    copy = _copy(shelf, tmp_path)
    (copy.bundle_path(MODEL, 1).parents[1] / "inventory.json.sha512").unlink()
    assert archived_versions(copy) == [] and not copy.is_archived(MODEL, 1)


async def _events(name: str, since: datetime):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await read_events(client, name, since)


@pytest.mark.slow
@pytest.mark.prefect_server
def test_audit_flow_fails_naming_the_corrupt_bundle_and_emits_the_event(prefect_server, shelf, tmp_path):
    from parity.flows.audit import audit_archive, audits_of

    copy = _copy(shelf, tmp_path)
    since = datetime.now(UTC) - timedelta(seconds=5)
    assert audit_archive(str(copy.root), replay=False, return_state=True).is_completed()
    _damage(copy, "report.json")
    state = audit_archive(str(copy.root), replay=False, return_state=True)
    assert state.is_failed()
    assert f"{MODEL}:1 corrupt" in state.message
    (audit,) = audits_of(state)
    assert audit.status is AuditStatus.CORRUPT
    assert audit.corrupt == ["report.json: SHA-256 differs from the manifest"]
    events = wait_for(
        lambda: asyncio.run(_events("parity.archive.corrupt", since)),
        SERVER_SIDE_DEADLINE_S,
        "the parity.archive.corrupt event",
    )
    assert [e.resource.id for e in events] == [f"parity.model.{MODEL}.1"]
    assert events[0].payload["findings"] == audit.corrupt
    assert events[0].payload["bundle"] == str(copy.bundle_path(MODEL, 1))


@pytest.mark.slow
@pytest.mark.prefect_server
def test_parity_audit_command_exits_1_on_corruption(prefect_server, shelf, tmp_path, capsys):
    from parity.cli import main

    copy = _copy(shelf, tmp_path)
    assert main(["audit", "--archive", str(copy.root)]) == 0
    assert f"{MODEL}:1" in capsys.readouterr().out
    _damage(copy)
    assert main(["audit", "--archive", str(copy.root), "--no-replay"]) == 1
    out = capsys.readouterr().out
    assert "corrupt" in out and "model.onnx: SHA-256 differs" in out
