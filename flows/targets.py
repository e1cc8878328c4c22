"""The flow a per-architecture work pool runs: the runner, on that pool's machine, for one job."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from parity.validators.targets.pool import run_job


@flow(name="run-on-target", flow_run_name="run-{fmt}-{artifact}")
def run_on_target(
    job: str,
    artifact: str,
    fmt: str,
    threads: int = 1,
    graph_optimization: str = "all",
    cpu: str | None = None,
) -> dict:
    """Run the format's runner on a job folder in shared storage; outputs go back into that folder."""
    return run_job(Path(job), artifact, fmt, threads, graph_optimization, cpu)
