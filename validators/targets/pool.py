"""Targets reached through a Prefect work pool of machines of that platform.

The parent copies the artifact and the runner's input file into a job folder under ``PARITY_SHARED_DIR``
(storage every worker can read and write: NFS, or a bucket mounted with the same path everywhere), starts
the pool's ``run-on-target`` deployment with ``run_deployment``, waits for it, and reads the runner's output
file back from the job folder. Inputs and outputs travel in the runner's binary files, never as text.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any, cast

from parity.core.errors import EnvironmentProblem

from .runners import RemoteResult, RemoteRunner
from .target import RunnerSettings, Target

SHARED_DIR_ENV = "PARITY_SHARED_DIR"
#: How long a pool target may take, queueing included.
TIMEOUT_S = 1800


def shared_dir() -> Path | None:
    value = os.environ.get(SHARED_DIR_ENV)
    return Path(value) if value else None


def pool_unavailable(target: Target) -> str | None:
    """Why a work-pool target cannot be reached from here; None when it can."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return (
            f"{target.name}: work-pool targets need a Prefect server: set PREFECT_API_URL "
            "(see README, 'Operations: running Parity with Prefect')."
        )
    if shared_dir() is None:
        return f"{target.name}: set {SHARED_DIR_ENV} to a folder every worker of the pool can read and write."
    return None


def run_on_pool(target: Target, fmt: str, runner: RemoteRunner, artifact: Path, inputs: Any) -> RemoteResult:
    """Run ``runner`` on ``target``'s pool for one artifact and return what it wrote.

    Parameters
    ----------
    target : Target
        A work-pool target (its ``deployment`` runs :func:`run_job` on the pool).
    fmt : str
        The artifact's format: the worker looks its runner up by it.
    runner : RemoteRunner
        The format's runner.
    artifact : Path
    inputs
        Rows as the format's spec prepared them for the runner.

    Raises
    ------
    EnvironmentProblem
        When the deployment is missing, or its run does not complete.
    """
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.futures import PrefectFlowRunFuture

    root = shared_dir()
    if root is None:
        raise ValueError(
            f"{target.name}: set {SHARED_DIR_ENV} to a folder every worker of the pool can read and write."
        )
    job = root / "jobs" / uuid.uuid4().hex
    settings = target.runner_settings()
    parameters = {
        "job": str(job),
        "artifact": artifact.name,
        "fmt": fmt,
        "threads": settings.threads,
        "graph_optimization": settings.graph_optimization,
        "cpu": settings.cpu,
    }
    try:
        job.mkdir(parents=True)
        shutil.copyfile(artifact, job / artifact.name)
        runner.write_inputs(job / runner.inputs_file, inputs)
        if target.deployment is None:
            raise ValueError(f"{target.name}: a work-pool target needs a deployment")
        # called synchronously, run_deployment returns the FlowRun (its coroutine only inside an event loop)
        flow_run = cast(
            FlowRun,
            run_deployment(
                name=target.deployment, parameters=parameters, timeout=0, idempotency_key=job.name
            ),
        )
        future: PrefectFlowRunFuture[Any] = PrefectFlowRunFuture(flow_run_id=flow_run.id)
        future.wait(timeout=TIMEOUT_S)
        state = future.state
        if not state.is_final():
            _cancel(flow_run.id)  # its job folder is about to go: stop it rather than let it fail later
            raise EnvironmentProblem(
                f"{target.name}: the run on {target.deployment} did not finish within {TIMEOUT_S} s "
                f"({state.type.value}); it was cancelled. Is a worker running on its pool?"
            )
        if not state.is_completed():
            raise EnvironmentProblem(
                f"{target.name}: the run on {target.deployment} ended {state.type.value}: {state.message}"
            )
        return runner.read_outputs(job / runner.outputs_file)
    except EnvironmentProblem:
        raise
    except Exception as err:
        raise EnvironmentProblem(
            f"{target.name}: could not run {target.deployment} ({err}); deploy it with `parity deploy` and "
            "start a worker on its pool."
        ) from err
    finally:
        shutil.rmtree(job, ignore_errors=True)


def _cancel(flow_run_id) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def cancel() -> None:
        async with get_client() as client:
            await client.set_flow_run_state(flow_run_id, Cancelling(), force=True)

    run_coro_as_sync(cancel())


def run_job(job: Path, artifact: str, runner: RemoteRunner, settings: RunnerSettings) -> dict:
    """On a pool's machine: run ``runner`` on a job folder (under emulation when PARITY_EMULATE is set).

    ``PARITY_EMULATE=aarch64`` lets a worker on an x86_64 machine serve an aarch64 pool through qemu
    (as the tests do); on a real aarch64 machine it stays unset and the runner runs natively.
    """
    env = None
    if os.environ.get("PARITY_EMULATE") == "aarch64":
        from .aarch64 import setup_aarch64

        env = setup_aarch64(log=lambda _line: None)
    runner.run_files(env, job / artifact, job / runner.inputs_file, job / runner.outputs_file, settings)
    return {"job": str(job), "machine": os.uname().machine, "emulated": env is not None}
