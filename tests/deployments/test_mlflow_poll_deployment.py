"""The ``mlflow-poll`` deployment: deployed and served only for an MLflow registry, with its interval schedule
carrying the registry's URI as it is; a folder registry gets the other deployments, as before."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from prefect_processes import PrefectServer, client_call

from parity.deployments.deploy import (
    MLFLOW_ONLY,
    SERVED,
    deployment_env,
    deployment_names,
    load_spec,
    runner_deployments,
)

URI = "mlflow+http://127.0.0.1:5000"
POLL = "poll-mlflow/mlflow-poll"


def test_an_mlflow_uri_is_kept_as_it_is_and_a_folder_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert deployment_env(URI, "archive")["PARITY_REGISTRY"] == URI
    assert deployment_env("mlflow:", "archive")["PARITY_REGISTRY"] == "mlflow:"
    env = deployment_env("registry", "archive")
    assert (env["PARITY_REGISTRY"], env["PARITY_ARCHIVE"]) == (
        str(tmp_path / "registry"),
        str(tmp_path / "archive"),
    )


def test_the_poller_is_for_mlflow_registries_only():
    every = tuple(d["name"] for d in load_spec()["deployments"])
    assert "mlflow-poll" in every and MLFLOW_ONLY == ("mlflow-poll",)
    assert deployment_names(URI) == every
    assert deployment_names("/srv/registry") == tuple(n for n in every if n != "mlflow-poll")
    assert deployment_names("/srv/registry", SERVED) == ("on-registration", "nightly-sweep", "weekly-audit")


def test_served_for_mlflow_the_poller_runs_every_5_minutes_with_the_uri(tmp_path):
    served = runner_deployments(URI, tmp_path / "archive", deployment_names(URI, SERVED))
    (poll,) = [d for d in served if d.name == "mlflow-poll"]
    assert poll.entrypoint == "parity.flows.poll.poll_mlflow"  # a module path, as served
    (schedule,) = poll.schedules
    assert schedule.schedule.interval == timedelta(minutes=5)
    assert schedule.parameters == {"registry": URI, "archive": str((tmp_path / "archive").resolve())}


async def _names(client) -> set[str]:
    return {d.name for d in await client.read_deployments()}


@pytest.mark.prefect_server
@pytest.mark.slow
def test_deploy_leaves_the_poller_out_for_a_folder_and_deploys_it_for_mlflow(
    prefect_api: PrefectServer, tmp_path: Path
):
    from parity.cli import main

    archive = str(tmp_path / "archive")
    assert main(["deploy", "--registry", str(tmp_path / "registry"), "--archive", archive]) == 0
    names = client_call(_names)
    assert {"on-registration", "nightly-sweep", "weekly-audit"} <= names and "mlflow-poll" not in names

    assert main(["deploy", "--registry", URI, "--archive", archive]) == 0

    async def poll(client):
        return await client.read_deployment_by_name(POLL)

    deployment = client_call(poll)
    assert deployment.work_pool_name == "parity-x86-64"
    assert deployment.parameters == {"registry": URI, "archive": str(Path(archive).resolve())}
    assert [(s.schedule.interval, s.parameters) for s in deployment.schedules] == [
        (timedelta(minutes=5), {"registry": URI, "archive": str(Path(archive).resolve())})
    ]
