"""The load test, small: a real Prefect server on PostgreSQL, two process workers, a dozen models, one
worker killed with SIGKILL mid-sweep (``benchmarks/sweep_load.py`` with 100 models is the full run)."""

from __future__ import annotations

import pytest

from benchmarks.sweep_load import run_load

pytestmark = [pytest.mark.prefect_server, pytest.mark.slow]

MODELS = 10


@pytest.mark.timeout(3600)  # the sweep's own deadline (benchmarks/sweep_load.py) fails first, saying which
def test_a_killed_worker_loses_no_model_and_files_none_twice(tmp_path):
    lines: list[str] = []
    result = run_load(MODELS, 2, kill=True, root=tmp_path, say=lines.append)
    checks = result.checks
    print("\n".join(lines), result, sep="\n")
    assert result.killed, "worker-1 was never killed"
    assert checks["lost"] == [] and checks["not_reported"] == [] and checks["reported_twice"] == []
    assert checks["corrupt"] == {} and checks["staging_left"] == [] and checks["unsupported_archived"] == []
    assert checks["archived"] + checks["rejected"] == MODELS
    assert checks["rejected"] >= MODELS // 10  # the unsupported ones are kept apart, not lost
    assert result.database_errors == []
    # the killed worker's model crashed (Prefect's automation, after its heartbeats stopped) and was
    # submitted again: one run more per crash than there are models
    crashed = result.children["states"].get("CRASHED", 0)
    assert crashed >= 1, result.children
    assert result.children["runs"] == MODELS + crashed, result.children
    assert result.held
