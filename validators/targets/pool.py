"""Targets reached through a Prefect work pool of machines of that platform.

The parent copies the artifact and the input rows into a job folder under ``PARITY_SHARED_DIR`` (storage
every worker can read and write: NFS, or a bucket mounted with the same path everywhere), starts the
pool's ``run-on-target`` deployment with ``run_deployment``, waits for it, and reads the runner's
outputs back from the job folder. Outputs travel as npz or Parity's binary columns, never as text.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, cast

import pandas as pd

from parity.converters import Conversion
from parity.core.errors import EnvironmentProblem

from .table import Target

SHARED_DIR_ENV = "PARITY_SHARED_DIR"
#: How long a pool target may take, queueing included.
TIMEOUT_S = 1800
INPUTS = {"onnx": "inputs.npz", "pmml": "inputs.bin"}
OUTPUTS = {"onnx": "outputs.npz", "pmml": "outputs.bin"}


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


def write_job(job: Path, conversion: Conversion, X: pd.DataFrame) -> None:
    """Artifact and input rows into a job folder, in the runner's formats."""
    from .columns import write_columns
    from .remote import artifact_of, runner_inputs

    artifact = artifact_of(conversion)
    job.mkdir(parents=True)
    shutil.copyfile(artifact, job / artifact.name)
    if conversion.format == "onnx":
        import numpy as np

        np.savez(job / INPUTS["onnx"], **runner_inputs(conversion, X))  # type: ignore[arg-type]
    else:
        write_columns(job / INPUTS["pmml"], X)


def run_on_pool(target: Target, conversion: Conversion, X: pd.DataFrame):
    """Run the runner on ``target``'s pool and return its :class:`~validators.targets.remote.RemoteResult`.

    Raises
    ------
    EnvironmentProblem
        When the deployment is missing, or its run does not complete.
    """
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.futures import PrefectFlowRunFuture

    from .remote import artifact_of

    root = shared_dir()
    if root is None:
        raise ValueError(
            f"{target.name}: set {SHARED_DIR_ENV} to a folder every worker of the pool can read and write."
        )
    job = root / "jobs" / uuid.uuid4().hex
    parameters = {
        "job": str(job),
        "artifact": artifact_of(conversion).name,
        "fmt": conversion.format,
        "threads": target.threads,
        "graph_optimization": target.graph_optimization,
        "cpu": target.cpu,
    }
    try:
        write_job(job, conversion, X)
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
        return read_job(job, conversion.format)
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


def read_job(job: Path, fmt: str):
    """Outputs and where-info a runner left in a job folder."""
    from .remote import RemoteResult

    if fmt == "onnx":
        import numpy as np

        with np.load(job / OUTPUTS["onnx"], allow_pickle=False) as data:
            outputs = {name: data[name] for name in data.files}
        where = json.loads(str(outputs.pop("__where__")))
        return RemoteResult(outputs, where)
    from .columns import read_output

    frame, where = read_output(job / OUTPUTS["pmml"])
    return RemoteResult(frame, where)


def run_job(
    job: Path, artifact: str, fmt: str, threads: int, graph_optimization: str, cpu: str | None
) -> dict:
    """On a pool's machine: run the runner on a job folder (under emulation when PARITY_EMULATE is set).

    ``PARITY_EMULATE=aarch64`` lets a worker on an x86_64 machine serve an aarch64 pool through qemu
    (as the tests do); on a real aarch64 machine it stays unset and the runner runs natively.
    """
    env = None
    if os.environ.get("PARITY_EMULATE") == "aarch64":
        from .aarch64 import setup_aarch64

        env = setup_aarch64(log=lambda _line: None)
    if fmt == "onnx":
        import numpy as np

        from .local import run_onnx_in

        with np.load(job / INPUTS["onnx"], allow_pickle=False) as data:
            inputs = {name: data[name] for name in data.files}
        outputs, where = run_onnx_in(
            env, job / artifact, inputs, threads, graph_optimization, cpu if env else None
        )
        partial = job / "outputs.partial.npz"
        np.savez(partial, __where__=np.array(json.dumps(where)), **outputs)  # type: ignore[arg-type]
        os.replace(partial, job / OUTPUTS["onnx"])
    else:
        from .pmml_runner import run_pmml_files

        run_pmml_files(env, job / artifact, job / INPUTS["pmml"], job / OUTPUTS["pmml"], cpu if env else None)
    return {"job": str(job), "machine": os.uname().machine, "emulated": env is not None}
