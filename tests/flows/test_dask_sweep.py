"""The sweep on a Dask cluster a team already has: prefect-dask's DaskTaskRunner with the address of an
external scheduler (here a real local cluster of two worker processes), as README's Operations section says."""

from __future__ import annotations

import pytest
from sklearn.linear_model import LogisticRegression

from benchmarks._common import targets_file
from parity.archive import Archive
from parity.registry import FileRegistry

pytestmark = [pytest.mark.prefect_server, pytest.mark.slow]


def test_a_sweep_runs_its_models_on_an_external_dask_cluster(prefect_server, iris, tmp_path):
    from distributed import Client, LocalCluster, get_task_stream
    from prefect_dask import DaskTaskRunner

    from parity.flows.validate import result_data, validate_registry

    X, y = iris
    registry, archive = tmp_path / "registry", tmp_path / "archive"
    names = [f"iris-dask-{i}" for i in range(2)]
    for i, name in enumerate(names):
        FileRegistry(registry).register(LogisticRegression(max_iter=500, C=1.0 + i).fit(X, y), X, name)
    targets = targets_file(tmp_path, "host")
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        workers = set(client.scheduler_info()["workers"])
        with get_task_stream(client) as stream:
            sweep = validate_registry.with_options(
                task_runner=DaskTaskRunner(address=cluster.scheduler_address)
            )
            state = sweep(str(registry), str(archive), targets=str(targets), return_state=True)
        ran = stream.data  # what the cluster's workers computed while the sweep ran
    reports = result_data(state)
    assert state.is_completed(), state.message
    assert sorted(r.name for r in reports) == names
    assert all(Archive(archive).is_archived(name, 1) for name in names)
    assert len(ran) == len(names), ran  # each model ran as one task on the cluster
    assert {task["worker"] for task in ran} <= workers and len(workers) == 2
