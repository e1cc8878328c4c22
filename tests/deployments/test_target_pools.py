"""Per-architecture work pools: a real server, `parity deploy`, one process worker per pool (the aarch64
pool's worker runs its runner under qemu), and the one-model validation fanning out to both."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from prefect_processes import PrefectServer, client_call
from sklearn.linear_model import LogisticRegression

from parity.registry import FileRegistry
from parity.validators import formats
from parity.validators.report import Verdict, outcome
from parity.validators.targets.table import load_targets
from parity.validators.validate import ModelContext, validate_conversion

pytestmark = [pytest.mark.prefect_server, pytest.mark.slow, pytest.mark.aarch64]

POOLS_FILE = Path(__file__).resolve().parents[2] / "deployments" / "targets-work-pools.toml"
POOL_TARGETS = {"linux-x86_64-pool": "x86_64", "linux-aarch64-pool": "aarch64"}


@pytest.fixture(scope="module")
def workers(prefect_api: PrefectServer, tmp_path_factory) -> Path:
    """`parity deploy`, then a worker per architecture pool sharing one job folder; returns that folder."""
    from parity.cli import main
    from parity.validators.targets.aarch64 import setup_aarch64

    setup_aarch64(log=lambda _line: None)  # provisioned by `make test`; instant when ready
    root = tmp_path_factory.mktemp("pools")
    shared = root / "shared"
    shared.mkdir()
    assert main(["deploy", "--registry", str(root / "registry"), "--archive", str(root / "archive")]) == 0
    for pool, extra in (("parity-x86-64", {}), ("parity-aarch64", {"PARITY_EMULATE": "aarch64"})):
        prefect_api.spawn(
            f"worker-{pool}",
            *(sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"),
            extra_env={"PARITY_SHARED_DIR": str(shared), **extra},
        )
    return shared


async def _target_runs(client):
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    return await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["run-on-target"])))


def test_validation_fans_out_to_each_architecture_pool(workers, iris, tmp_path, monkeypatch):
    monkeypatch.setenv("PARITY_SHARED_DIR", str(workers))
    X, y = iris
    registry = FileRegistry(tmp_path / "registry")
    model = registry.open(registry.register(LogisticRegression(max_iter=500).fit(X, y), X, "iris-logreg"))
    targets = load_targets(POOLS_FILE)
    context = ModelContext(model)
    checks = []
    for fmt in formats.FORMATS:
        conversion = formats.convert(fmt, model.estimator, model.reference, tmp_path / fmt)
        checks += validate_conversion(context, conversion, targets=targets)

    for target, machine in POOL_TARGETS.items():
        cells = [c for c in checks if c.target == target]
        assert {(c.format, c.runtime) for c in cells} == {("onnx", "onnxruntime"), ("pmml", "jpmml")}, cells
        assert all(c.verdict is Verdict.PASS for c in cells), [(c.cell, c.explanation) for c in cells]
        # the runner's own word on where it ran, not the table's
        assert {c.where.machine for c in cells if c.where.machine} <= {machine, "amd64"}
        assert any(c.where.machine == machine for c in cells)
        assert any(c.output == "embedded-verification" for c in cells)
        assert any(c.against == "linux-x86_64" for c in cells)
    assert outcome(checks, False) == "passed"
    runs = client_call(_target_runs)
    assert len(runs) == 4 and all(run.state.is_completed() for run in runs)
    assert list((workers / "jobs").iterdir()) == []  # job folders are cleaned up
