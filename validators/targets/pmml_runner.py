"""Run the Java PMML runner (``validators/java/PmmlRunner.java``) natively or under an emulated JVM."""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pandas as pd

from parity.core.errors import EnvironmentProblem, InvalidInputError
from parity.core.java import (
    LEAN_JVM_OPTIONS,
    cache_root,
    compile_java,
    crash_log_options,
    find_java,
    java_version,
)
from parity.core.records import Role

from .columns import read_output, write_columns
from .runners import RemoteResult, where_of
from .target import RunnerSettings

if TYPE_CHECKING:
    from .aarch64 import Aarch64Env

SOURCE = Path(__file__).resolve().parent.parent / "java" / "PmmlRunner.java"
#: Heap of the runner's JVM: it evaluates a bounded sample of rows (and, under emulation, every MiB of
#: heap it touches is also qemu's).
MAX_HEAP = "256m"
TIMEOUT_S = 1800


def runner_classpath() -> list[str]:
    """The runner's classes (compiled on this host: bytecode runs on every architecture) and JPMML's jars."""
    from jpmml_evaluator import _classpath

    java = find_java()
    version = java_version()
    if java is None or version is None:
        raise EnvironmentProblem(
            "the PMML runner needs Java 17+ on this host to compile it; install openjdk-17-jre-headless."
        )
    jars = list(_classpath([]))
    return [str(compile_java(SOURCE, jars, java, version[1], cache_root())), *jars]


def run_pmml_in(
    env: Aarch64Env | None, pmml: Path, X: pd.DataFrame, cpu: str | None = None
) -> tuple[pd.DataFrame, dict]:
    """Evaluate ``X`` with the PMML runner; returns its output columns and where it ran.

    Parameters
    ----------
    env : Aarch64Env or None
        The emulated target, or None for this host's Java.
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


class _WarmRunner:
    """One ``PmmlRunner --serve`` JVM kept for the life of this process; restarted if it dies."""

    def __init__(self, command: list[str], environment: dict[str, str] | None) -> None:
        self.command, self.environment = command, environment
        self.process: subprocess.Popen[str] | None = None
        self.stderr: IO[bytes] | None = None
        self.lock = threading.Lock()

    def run(self, pmml: Path, inputs: Path, outputs: Path) -> None:
        job = "\t".join(str(p) for p in (pmml, inputs, outputs))
        if any(c in job.replace("\t", "") for c in "\t\r\n"):
            raise InvalidInputError(f"PMML runner paths must not hold tabs or line breaks: {job!r}")
        with self.lock:
            process = self._started()
            stdin, stdout = process.stdin, process.stdout
            assert stdin is not None and stdout is not None  # started with stdin=PIPE, stdout=PIPE
            try:
                stdin.write(job + "\n")
                stdin.flush()
                ready, _, _ = select.select([stdout], [], [], TIMEOUT_S)
                reply = stdout.readline().strip() if ready else ""
            except OSError as err:
                reply = f"error {err}"
            if reply != "ok":
                if not reply:  # dead or hung: start afresh next time
                    self.stop()
                    reply = f"error no reply (the runner's JVM died or hung): {self._stderr_tail()}"
                raise EnvironmentProblem(
                    f"the PMML runner failed on {pmml.name}: {reply.removeprefix('error ')}"
                )

    def _started(self) -> subprocess.Popen[str]:
        if self.process is None or self.process.poll() is not None:
            self.stop()  # a JVM that died by itself: reap it and close its pipes
            if self.stderr is not None:
                self.stderr.close()
            self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the JVM: its last words
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                text=True, env=self.environment,
            )  # fmt: skip
        return self.process

    def _stderr_tail(self, limit: int = 1500) -> str:
        if self.stderr is None:
            return "no error output"
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace").strip()[-limit:] or "no error output"

    def stop(self) -> None:
        """Kill the JVM and close its pipes; its standard error stays readable until the next start."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            for pipe in (self.process.stdin, self.process.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):  # a request left unflushed in a dead JVM's pipe
                        pipe.close()
        self.process = None

    def close(self) -> None:
        """Stop the JVM and drop its standard error."""
        self.stop()
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None


_RUNNERS: dict[tuple, _WarmRunner] = {}
_RUNNERS_LOCK = threading.Lock()


@atexit.register
def _stop_runners() -> None:
    for runner in _RUNNERS.values():
        runner.close()


def _runner_for(env: Aarch64Env | None, cpu: str | None) -> _WarmRunner:
    key = ("native",) if env is None else (str(env.cache_dir), cpu or env.cpu)
    with _RUNNERS_LOCK:
        if key not in _RUNNERS:
            args = [
                f"-Xmx{MAX_HEAP}",
                "-XX:TieredStopAtLevel=1",
                *LEAN_JVM_OPTIONS,
                *crash_log_options(),
                "-cp",
                os.pathsep.join(runner_classpath()),
                "PmmlRunner",
                "--serve",
            ]
            if env is None:
                _RUNNERS[key] = _WarmRunner([str(find_java()), *args], None)
            else:
                _RUNNERS[key] = _WarmRunner(env.java_command(args, cpu=cpu), env.java_env())
        return _RUNNERS[key]


def run_pmml_files(
    env: Aarch64Env | None, pmml: Path, inputs: Path, outputs: Path, cpu: str | None = None
) -> None:
    """Run the PMML runner on files: ``inputs`` (binary columns) → ``outputs``. See :func:`run_pmml_in`.

    The runner's JVM (one per target) stays warm for the next model.
    """
    _runner_for(env, cpu).run(pmml.resolve(), inputs.resolve(), outputs.resolve())


class PmmlRunner:
    """The PMML runner (``PmmlRunner.java``, JPMML in one warm JVM per target) as a
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
