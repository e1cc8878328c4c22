"""A real ``mlflow server`` (SQLite backend store, artifacts served from a local folder) for the tests, and
the training-code side: log and register a model through the MLflow client, as a training script does.

The server is a subprocess of its own process group; every wait is bounded and polls a condition.
Webhooks to this machine are allowed (``MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https`` and
``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true``: MLflow refuses plain http and private addresses by default), and
the server re-reads its webhooks every second (``MLFLOW_WEBHOOK_CACHE_TTL``: 60 s by default).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tests.deployments.prefect_processes import free_port, stop
from tests.waiting import wait_for

#: ``mlflow server`` on fresh SQLite: about 20 s on a quiet 2-core machine (its migrations), several times
#: that under load; the wait ends as soon as /health answers.
SERVER_START_TIMEOUT = 300
BIN = Path(sys.executable).parent


@dataclass
class MlflowServer:
    """A running server: its tracking URI, Parity's registry URI for it, and its folders."""

    url: str
    root: Path
    process: subprocess.Popen
    log: Path

    @property
    def registry(self) -> str:
        """Parity's ``--registry`` for this server."""
        return f"mlflow+{self.url}"

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.url, registry_uri=self.url)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def server_env(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
        "HOME": str(root),
    }


@contextmanager
def mlflow_server(root: Path | None = None) -> Iterator[MlflowServer]:
    """Start ``mlflow server`` on a free port; stop it (and its workers) on exit."""
    root = Path(root or tempfile.mkdtemp(prefix="parity-test-mlflow-"))
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = root / "server.log"
    command = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = server_env(root)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = MlflowServer(f"http://127.0.0.1:{port}", root, process, log)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"mlflow server exited ({process.returncode}):\n{server.log_text()}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=5) as reply:
                return reply.status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, SERVER_START_TIMEOUT, lambda: f"mlflow server health:\n{server.log_text()}", 0.5)
        yield server
    finally:
        stop(process)


@contextmanager
def training_side(server: MlflowServer) -> Iterator[None]:
    """Talk to ``server`` as training code does, then leave this process as it was.

    ``mlflow.set_tracking_uri``/``set_registry_uri`` also set ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI``
    in ``os.environ`` (for MLflow's own subprocesses), which every later subprocess of the test session
    would inherit: a training script of a later test registered its model on an earlier test's (stopped)
    server. The training side's warnings (MLflow's advice on type hints, pandas' deprecations inside MLflow)
    are the training script's business, not Parity's: pytest's warnings-as-errors would fail on them here.
    """
    import mlflow

    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(server.url)
    mlflow.set_registry_uri(server.url)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def log_sklearn_model(
    server: MlflowServer,
    name: str,
    model: object,
    X: pd.DataFrame,
    *,
    reference: pd.DataFrame | None = None,
    serialization_format: str = "skops",
    input_example: pd.DataFrame | None = None,
    metrics: Mapping[str, float | list[float]] | None = None,
    dataset_source: str | None = "s3://data/training.parquet",
    tags: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[str, int]:
    """Log ``model`` with the sklearn flavor in a new run and register it as ``name``, as training code does.

    ``reference`` is logged as the run's ``parity/reference.parquet`` artifact (Parity's convention);
    ``metrics`` values that are lists are logged one step per fold. Returns (run id, version).
    """
    import mlflow
    import mlflow.sklearn

    with training_side(server), mlflow.start_run() as run:
        if dataset_source:
            dataset = mlflow.data.from_pandas(X, source=dataset_source, name="training")
            mlflow.log_input(dataset, context="training")
        for metric, value in (metrics or {}).items():
            for step, one in enumerate(value if isinstance(value, list) else [value]):
                mlflow.log_metric(metric, one, step=step)
        for key, value in (tags or {}).items():
            mlflow.set_tag(key, value)
        if reference is not None:
            with tempfile.TemporaryDirectory() as scratch:
                path = Path(scratch) / "reference.parquet"
                reference.to_parquet(path, index=False)
                mlflow.log_artifact(str(path), "parity")
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format=serialization_format,
            input_example=input_example,
            registered_model_name=name,
            **(extra or {}),
        )
    return run.info.run_id, int(info.registered_model_version)
