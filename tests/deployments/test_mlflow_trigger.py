"""The issue's end to end: a training script logs and registers a model in a fresh MLflow server, and with no
manual step Parity's served deployment validates it, archives it, and the MLflow version carries the verdict
tags and the alias. Real processes throughout: ``mlflow server``, ``prefect server start``, ``parity serve``,
``parity webhook serve``; MLflow itself delivers the webhook."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from prefect_processes import (
    COMMAND_TIMEOUT,
    PrefectServer,
    announce_until_triggered,
    deployment_runs,
    free_port,
    healthy,
    wait_for,
)

from parity.archive import Archive
from parity.registry.events import REGISTERED, model_resource, send_event
from parity.registry.mlflow import TAG_VERDICT, VALIDATED_ALIAS
from tests.mlflow_server import mlflow_server

pytestmark = [pytest.mark.prefect_server, pytest.mark.slow]

TRIGGERED = "convert-and-validate/on-registration"
SECRET = "a-webhook-secret-for-the-test"
#: Each deadline bounds a hang (quiet figures, 2-core machine): `parity serve` up ~20 s; the webhook receiver
#: ~10 s; one validation 10-30 s. At load 10 everything took several times as long (issue 9).
UP_DEADLINE_S = 300
RUN_DEADLINE_S = 600

TRAINING_SCRIPT = """
import sys
import mlflow, mlflow.sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

mlflow.set_tracking_uri(sys.argv[1])
X, y = load_iris(return_X_y=True, as_frame=True)
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
with mlflow.start_run():
    mlflow.log_input(mlflow.data.from_pandas(X, source="s3://data/iris.parquet"), context="training")
    mlflow.log_metric("cv_accuracy", 0.96)
    X.iloc[::2].to_parquet("reference.parquet")
    mlflow.log_artifact("reference.parquet", "parity")
    mlflow.sklearn.log_model(model, name="model", registered_model_name="iris-trained")
"""


def _runs_of(name: str) -> list:
    return [r for r in deployment_runs(TRIGGERED) if r.parameters.get("name") == name]


def test_a_version_registered_by_training_code_is_validated_archived_and_tagged(
    prefect_api: PrefectServer, tmp_path
) -> None:
    archive = tmp_path / "archive"
    with mlflow_server(tmp_path / "mlflow") as mlflow:
        env = {"PARITY_MLFLOW_CACHE": str(tmp_path / "mirror"), "PARITY_MLFLOW_WEBHOOK_SECRET": SECRET}
        parity = (sys.executable, "-m", "parity")
        prefect_api.spawn(
            "serve", *parity, "serve", "--registry", mlflow.registry, "--archive", str(archive), extra_env=env
        )
        port = free_port()
        prefect_api.spawn(
            "webhook",
            *parity,
            "webhook",
            "serve",
            "--registry",
            mlflow.registry,
            "--listen",
            f"127.0.0.1:{port}",
            extra_env=env,
        )
        # the trigger is live once an event makes a run (an event that comes before the trigger service has
        # loaded the automation is seen and dropped): announce a version that does not exist until one does
        announce_until_triggered(
            TRIGGERED,
            lambda: send_event(
                REGISTERED,
                model_resource("warm-up", 1),
                {"schema": 1, "name": "warm-up", "version": 1, "registry": mlflow.registry},
            ),
            UP_DEADLINE_S,
            lambda: f"`parity serve`:\n{prefect_api.log('serve')}",
        )
        wait_for(
            lambda: healthy(f"http://127.0.0.1:{port}"),
            UP_DEADLINE_S,
            lambda: f"receiver:\n{prefect_api.log('webhook')}",
        )
        created = subprocess.run(
            [
                *parity,
                "webhook",
                "create",
                "--registry",
                mlflow.registry,
                "--url",
                f"http://127.0.0.1:{port}/mlflow",
            ],
            env={**prefect_api.env, **env},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        assert created.returncode == 0, created.stdout + created.stderr

        script = tmp_path / "train.py"
        script.write_text(textwrap.dedent(TRAINING_SCRIPT))
        trained = subprocess.run(
            [sys.executable, str(script), mlflow.url],
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]

        def finished() -> list:
            runs = _runs_of("iris-trained")
            return runs if runs and all(r.state and r.state.is_final() for r in runs) else []

        runs = wait_for(
            finished,
            RUN_DEADLINE_S,
            lambda: (
                f"receiver:\n{prefect_api.log('webhook')[-3000:]}\nserve:\n{prefect_api.log('serve')[-3000:]}"
            ),
            every=2,
        )
        assert len(runs) == 1 and runs[0].state.is_completed(), [r.state for r in runs]
        assert runs[0].parameters["registry"] == mlflow.registry
        shelf = Archive(archive)
        assert (
            shelf.is_archived("iris-trained", 1) and shelf.check(shelf.bundle_path("iris-trained", 1)) == []
        )
        client = mlflow.client()
        tags = client.get_model_version("iris-trained", "1").tags
        assert tags[TAG_VERDICT] == "passed", tags
        assert tags["parity.bundle"] == shelf.object_url("iris-trained", 1)
        assert client.get_registered_model("iris-trained").aliases[VALIDATED_ALIAS] == "1"
