"""Run the PMML runner (the engine's JPMML, ``parity/core/java/PmmlRunner.java``) natively or under an emulated JVM."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from parity.converters.pmml_server import host_engine
from parity.core.columns import read_output, write_columns
from parity.core.engine import Engine, engine, engine_arguments
from parity.core.errors import EnvironmentProblem
from parity.core.java import LEAN_JVM_OPTIONS, crash_log_options
from parity.core.records import Role
from parity.core.warm import JobFailed

from .runners import RemoteResult, where_of
from .target import RunnerSettings

if TYPE_CHECKING:
    from .aarch64 import Aarch64Env

#: Heap of an emulated target's engine JVM: it evaluates a bounded sample of rows, and under emulation every
#: MiB of heap it touches is also qemu's.
MAX_HEAP = "256m"
TIMEOUT_S = 1800
#: Threads of a runner job: one, as the emulator's concurrency slot assumes.
RUNNER_THREADS = 1


def run_pmml_in(
    env: Aarch64Env | None, pmml: Path, X: pd.DataFrame, cpu: str | None = None
) -> tuple[pd.DataFrame, dict]:
    """Evaluate ``X`` with the PMML runner (the engine's JPMML); returns its output columns and where it ran.

    Parameters
    ----------
    env : Aarch64Env or None
        The emulated target, or None for this host's engine.
    pmml : Path
    X : pandas.DataFrame
    cpu : str, optional
        Emulated CPU model (default: the env's).

    Raises
    ------
    EnvironmentProblem
        When the runner fails; the message carries its standard error.
    """
    with tempfile.TemporaryDirectory(prefix="parity-pmml-run-") as scratch:
        inputs, outputs = Path(scratch) / "in.bin", Path(scratch) / "out.bin"
        write_columns(inputs, X)
        run_pmml_files(env, pmml, inputs, outputs, cpu)
        return read_output(outputs)


def target_engine(env: Aarch64Env | None, cpu: str | None = None) -> Engine:
    """The engine of a target: this host's (``env`` None), or one JVM per emulated target and CPU, with the
    JPMML component only, kept warm for every model of the run."""
    if env is None:
        return host_engine()
    chosen = cpu or env.cpu

    def command() -> tuple[list[str], dict[str, str] | None]:
        options = [f"-Xmx{MAX_HEAP}", "-XX:TieredStopAtLevel=1", *LEAN_JVM_OPTIONS, *crash_log_options()]
        return env.java_command(engine_arguments(["jpmml"], options), cpu=chosen), env.java_env()

    return engine(
        ("emulated", str(env.cache_dir), chosen), f"the PMML engine (emulated, -cpu {chosen})", command
    )


def run_pmml_files(
    env: Aarch64Env | None, pmml: Path, inputs: Path, outputs: Path, cpu: str | None = None
) -> None:
    """Run the PMML runner on files: ``inputs`` (binary columns) → ``outputs``. See :func:`run_pmml_in`.

    The target's engine stays warm for the next model.
    """
    args = [str(p.resolve()) for p in (pmml, inputs, outputs)]
    try:
        target_engine(env, cpu).call("jpmml.run", [*args, str(RUNNER_THREADS)], TIMEOUT_S)
    except JobFailed as err:
        raise EnvironmentProblem(f"the PMML runner failed on {pmml.name}: {err}") from err


class PmmlRunner:
    """The PMML runner (``PmmlRunner.java`` in one warm engine JVM per target) as a
    :class:`~.runners.RemoteRunner`; it also replays the PMML's embedded verification rows."""

    runtime = "jpmml"
    role = Role.DEPLOY
    inputs_file = "inputs.bin"
    outputs_file = "outputs.bin"
    replays_verification = True

    def write_inputs(self, path: Path, inputs: pd.DataFrame) -> None:
        write_columns(path, inputs)

    def run_files(
        self, env: Aarch64Env | None, artifact: Path, inputs: Path, outputs: Path, settings: RunnerSettings
    ) -> None:
        run_pmml_files(env, artifact, inputs, outputs, settings.cpu if env is not None else None)

    def read_outputs(self, path: Path) -> RemoteResult:
        frame, where = read_output(path)
        return RemoteResult(frame, where_of(where, path))
