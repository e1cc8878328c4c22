"""The flow a per-architecture work pool runs: the format's runner, on that pool's machine, for one job."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from parity.validators.formats import format_of
from parity.validators.targets.pool import run_job
from parity.validators.targets.target import RunnerSettings


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
    settings = RunnerSettings(threads, graph_optimization, cpu)
    return run_job(Path(job), artifact, format_of(fmt).remote, settings)
