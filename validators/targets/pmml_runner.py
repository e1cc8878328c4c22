"""Run the Java PMML runner (``validators/java/PmmlRunner.java``) natively or under an emulated JVM."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from parity.errors import EnvironmentProblem
from parity.java import compile_java

from .columns import read_output, write_columns

if TYPE_CHECKING:
    from .aarch64 import Aarch64Env

SOURCE = Path(__file__).resolve().parent.parent / "java" / "PmmlRunner.java"
#: Heap of the runner's JVM: a bounded sample of rows never needs more.
MAX_HEAP = "512m"
TIMEOUT_S = 1800


def _cache_root() -> Path:
    override = os.environ.get("PARITY_CACHE_DIR")
    return Path(override) if override else Path.home() / ".cache" / "parity"


def runner_classpath() -> list[str]:
    """The runner's classes (compiled on this host: bytecode runs on every architecture) and JPMML's jars."""
    from jpmml_evaluator import _classpath

    from converters.pmml_server import find_java, java_version

    java = find_java()
    version = java_version()
    if java is None or version is None:
        raise EnvironmentProblem(
            "the PMML runner needs Java 17+ on this host to compile it; install openjdk-17-jre-headless."
        )
    jars = list(_classpath([]))
    return [str(compile_java(SOURCE, jars, java, version[1], _cache_root())), *jars]


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


def run_pmml_files(
    env: Aarch64Env | None, pmml: Path, inputs: Path, outputs: Path, cpu: str | None = None
) -> None:
    """Run the PMML runner on files: ``inputs`` (binary columns) → ``outputs``. See :func:`run_pmml_in`."""
    from converters.pmml_server import find_java

    classpath = os.pathsep.join(runner_classpath())
    args = [
        f"-Xmx{MAX_HEAP}",
        "-XX:TieredStopAtLevel=1",
        "-cp",
        classpath,
        "PmmlRunner",
        str(pmml),
        str(inputs),
        str(outputs),
    ]
    if env is None:
        command, environment = [str(find_java()), *args], None
    else:
        command, environment = env.java_command(args, cpu=cpu), env.java_env()
    done = subprocess.run(
        command, capture_output=True, text=True, env=environment, timeout=TIMEOUT_S, check=False
    )
    if done.returncode or not outputs.is_file():
        raise EnvironmentProblem(
            f"the PMML runner failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}"
        )
