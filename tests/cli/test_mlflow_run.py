"""``parity run --registry mlflow+http://…`` against a real MLflow server: validated, archived, and the verdict
written back on the model versions; a bad version does not stop the others; a server that is down is exit 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from parity.archive import Archive
from parity.cli.exits import EXIT_FAILED, EXIT_USAGE
from parity.registry.mlflow import TAG_VERDICT, VALIDATED_ALIAS
from tests.cli.test_cli import _parity
from tests.deployments.prefect_processes import free_port
from tests.mlflow_server import log_sklearn_model, mlflow_server

pytestmark = pytest.mark.slow


def test_run_validates_mlflow_versions_and_writes_the_verdicts_back(tmp_path: Path, iris) -> None:
    X, y = iris
    good = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    with mlflow_server(tmp_path / "mlflow") as server:
        _, version = log_sklearn_model(server, "iris-lr", good, X, reference=X.iloc[::3])
        # a pickle from a registry nobody marked as trusted: refused, and the other model goes on
        _, unsafe = log_sklearn_model(
            server, "iris-pickled", good, X, reference=X, serialization_format="pickle"
        )
        archive = tmp_path / "archive"
        env = {"PARITY_MLFLOW_CACHE": str(tmp_path / "mirror")}
        assert "PARITY_MLFLOW_TRUST_PICKLE" not in os.environ
        done = _parity(["run", "--registry", server.registry, "--archive", str(archive)], tmp_path, env=env)
        assert done.returncode == EXIT_FAILED, done.stdout[-3000:] + done.stderr[-3000:]
        assert f"iris-lr:{version}: passed -> {archive / 'iris-lr' / str(version)}" in done.stdout
        assert f"iris-pickled:{unsafe}: error" in done.stdout
        assert "not marked as trusted" in done.stdout + done.stderr
        shelf = Archive(archive)
        bundle = shelf.bundle_path("iris-lr", version)
        assert shelf.is_archived("iris-lr", version) and shelf.check(bundle) == []
        client = server.client()
        tags = client.get_model_version("iris-lr", str(version)).tags
        assert tags[TAG_VERDICT] == "passed" and tags["parity.bundle"] == shelf.object_url("iris-lr", version)
        assert (
            "mismatch" not in tags["parity.failing"]
        )  # a pass may list outputs not covered, never a mismatch
        assert client.get_registered_model("iris-lr").aliases[VALIDATED_ALIAS] == str(version)
        # refused before anything ran, and said on the version, so that a poller does not announce it again
        refused = client.get_model_version("iris-pickled", str(unsafe)).tags
        assert refused[TAG_VERDICT] == "error" and "not marked as trusted" in refused["parity.failing"]

        listed = _parity(
            ["models", "--registry", server.registry, "--archive", str(archive)], tmp_path, env=env
        )
        assert listed.returncode == 0, listed.stderr[-2000:]
        assert "iris-lr" in listed.stdout and "passed" in listed.stdout and "iris-pickled" in listed.stdout


def test_run_against_a_server_that_is_down_exits_2_naming_it(tmp_path: Path) -> None:
    down = f"mlflow+http://127.0.0.1:{free_port()}"
    done = _parity(["run", "--registry", down, "--archive", str(tmp_path / "archive")], tmp_path)
    assert done.returncode == EXIT_USAGE, done.stdout[-2000:] + done.stderr[-2000:]
    assert "did not answer" in done.stderr and down.split("+", 1)[1] in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "archive" / "iris-lr").exists()


def test_register_refuses_an_mlflow_registry(tmp_path: Path) -> None:
    done = _parity(
        [
            "register",
            str(tmp_path / "m.skops"),
            "--reference",
            str(tmp_path / "r.csv"),
            "--name",
            "m",
            "--registry",
            "mlflow+http://127.0.0.1:5000",
        ],
        tmp_path,
    )
    assert done.returncode == EXIT_USAGE and "writes to a file registry" in done.stderr
