"""Evaluate an artifact on a target that is not this process: under emulation, or on a work pool."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from parity.converters import Conversion
from parity.converters.onnx import feeds

from .table import EMULATED_PLATFORMS, Target

#: Runtime names of the runner on a remote target, per format.
REMOTE_RUNTIMES = {"onnx": "onnxruntime", "pmml": "jpmml"}
#: How each runner spells a machine, mapped to the platform's machine name.
MACHINE_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


@dataclass(frozen=True)
class RemoteResult:
    """Raw outputs of a runner and where it really ran."""

    outputs: dict[str, np.ndarray] | pd.DataFrame
    where: dict


def describe_process() -> dict:
    """Where this process runs, in the runner's terms."""
    from parity.validators.runner import read_cpuinfo

    return {"machine": platform.machine(), "platform": platform.platform(), "cpuinfo": read_cpuinfo()}


def ran_on(where: dict) -> str:
    """The platform a runner's description names, e.g. ``linux/aarch64``."""
    machine = str(where.get("machine", "unknown"))
    return f"linux/{MACHINE_ALIASES.get(machine, machine)}"


def remote_unavailable(target: Target) -> str | None:
    """Why ``target`` cannot run here now, with the command that fixes it; None when it can."""
    if target.reach == "emulator":
        from .aarch64 import aarch64_status

        assert EMULATED_PLATFORMS[target.platform] == "aarch64"
        return aarch64_status()
    if target.reach == "work-pool":
        from .pool import pool_unavailable

        return pool_unavailable(target)
    return None


def artifact_of(conversion: Conversion) -> Path:
    """The artifact a runner runs: ``conversion.path``, which only a failed conversion lacks.

    Raises
    ------
    ValueError
        When the conversion has no artifact.
    """
    if conversion.path is None:
        raise ValueError(
            f"the {conversion.format} conversion has no artifact to run (status {conversion.status})."
        )
    return conversion.path


def runner_inputs(conversion: Conversion, X: pd.DataFrame) -> dict[str, np.ndarray]:
    """ONNX feeds as the runner takes them: strings as unicode arrays, never pickled objects."""
    arrays = feeds(conversion.details["inputs"], X)
    return {name: (a.astype(str) if a.dtype == object else a) for name, a in arrays.items()}


def run_remote(target: Target, conversion: Conversion, X: pd.DataFrame) -> RemoteResult:
    """Run the format's runner for ``conversion`` on ``target`` with rows ``X``.

    Raises
    ------
    EnvironmentProblem
        When the target is not set up or the runner fails there.
    """
    if target.reach == "work-pool":
        from .pool import run_on_pool

        return run_on_pool(target, conversion, X)
    from .aarch64 import setup_aarch64

    env = setup_aarch64(log=lambda _line: None)  # returns at once: remote_unavailable() said it is ready
    artifact = artifact_of(conversion)
    if conversion.format == "onnx":
        from .local import run_onnx_in

        raw, where = run_onnx_in(
            env,
            artifact,
            runner_inputs(conversion, X),
            target.threads,
            target.graph_optimization,
            target.cpu,
        )
        return RemoteResult(raw, where)
    from .pmml_runner import run_pmml_in

    frame, where = run_pmml_in(env, artifact, X, cpu=target.cpu)
    return RemoteResult(frame, where)
