"""Run ``validators/runner.py`` on a target: natively (this interpreter) or in an emulated aarch64 sysroot.

The runner runs in its own process on every target, so native and emulated results come through the
same code and the same files (npz in, npz out), and differ only by where they ran. That process is kept
warm (``runner.py serve``, :mod:`parity.core.warm`): one per emulated root and CPU, one per interpreter
natively, so a run pays the emulated Python start and ``import onnxruntime`` once, not once per model.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from parity.core.errors import EnvironmentProblem, InvalidInputError
from parity.core.records import Role
from parity.core.warm import JobFailed, WarmProcess, warm_process

from .runners import RemoteResult, where_of
from .target import GRAPH_OPTIMIZATIONS, RunnerSettings

if TYPE_CHECKING:
    from parity.validators.targets.aarch64 import Aarch64Env

RUNNER = Path(__file__).resolve().parent.parent / "runner.py"
WHERE_KEY = "__where__"  # the runner's reserved output name
# Emulated python + `import onnxruntime` alone takes seconds; inference is 6-60x slower than native.
TIMEOUT_S = 1800
#: Jobs a warm runner runs at once (onnxruntime releases the GIL; each job keeps its own thread count).
SERVE_WORKERS = 2


def runner_command(env: Aarch64Env | None, args: list[str], cpu: str | None = None) -> list[str]:
    """Return the command running ``runner.py *args`` natively (``env`` None) or under ``env``'s emulator."""
    # -P: keep validators/ (the script's folder) off sys.path, so nothing there can shadow a module.
    script = ["-P", str(RUNNER), *args]
    if env is None:
        return [sys.executable, *script]
    return env.python_command(script, cpu=cpu)


def run_onnx_in(
    env: Aarch64Env | None,
    model_path: Path | str,
    inputs: Mapping[str, np.ndarray],
    threads: int = 1,
    graph_opt: str = "all",
    cpu: str | None = None,
) -> tuple[dict[str, np.ndarray], dict]:
    """Run an ONNX model with onnxruntime in the runner, natively or on an emulated target.

    Parameters
    ----------
    env : Aarch64Env or None
        The emulated target (from ``setup_aarch64()``), or None to run with this interpreter.
    model_path : Path or str
        The ONNX file.
    inputs : mapping of str to ndarray
        One array per ONNX input name; strings as numpy unicode arrays.
    threads : int, default 1
        onnxruntime's intra- and inter-op thread counts: part of the target, since results can depend on it.
    graph_opt : {"disable", "basic", "extended", "all"}, default "all"
        onnxruntime's graph optimisation level.
    cpu : str, optional
        qemu ``-cpu`` model when ``env`` is given; ``env.cpu`` by default.

    Returns
    -------
    outputs : dict of str to ndarray
        One array per ONNX output name (strings as unicode arrays).
    where : dict
        Where it really ran: machine, platform, CPU model and features, versions, threads, providers.

    Raises
    ------
    InvalidInputError
        For an unknown ``graph_opt``, a ``cpu`` without ``env``, or inputs that are not arrays.
    EnvironmentProblem
        When the runner fails; the message holds the end of its stderr.
    """
    _check_args(env, graph_opt, cpu, inputs)
    with tempfile.TemporaryDirectory(prefix="parity-runner-") as tmp:
        feed, out = Path(tmp) / "inputs.npz", Path(tmp) / "outputs.npz"
        write_onnx_inputs(feed, inputs)
        run_onnx_files(env, Path(model_path), feed, out, threads, graph_opt, cpu)
        return read_onnx_outputs(out)


def write_onnx_inputs(path: Path, inputs: Mapping[str, np.ndarray]) -> None:
    """The runner's input file: one array per ONNX input name (npz, never pickled)."""
    np.savez(path, **{name: np.asarray(array) for name, array in inputs.items()})  # type: ignore[arg-type]


def read_onnx_outputs(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The runner's output file: one array per ONNX output name, and where it ran."""
    with np.load(path, allow_pickle=False) as data:
        outputs = {name: data[name] for name in data.files}
    return outputs, json.loads(str(outputs.pop(WHERE_KEY)))


def run_onnx_files(
    env: Aarch64Env | None,
    model_path: Path,
    inputs: Path,
    outputs: Path,
    threads: int = 1,
    graph_opt: str = "all",
    cpu: str | None = None,
) -> None:
    """Run the runner on files: ``inputs`` (npz) → ``outputs`` (npz with ``__where__``). See :func:`run_onnx_in`.

    The job goes to this target's warm runner (:func:`warm_runner`), started on first use and kept for
    every later model.

    Raises
    ------
    EnvironmentProblem
        When the runner fails or takes more than :data:`TIMEOUT_S`; the message holds its error or the end
        of its stderr.
    """
    args = [str(model_path.resolve()), str(inputs.resolve()), str(outputs.resolve()), str(threads), graph_opt]
    try:
        warm_runner(env, cpu).call("onnx", args, timeout_s=TIMEOUT_S)
    except JobFailed as err:
        raise EnvironmentProblem(f"runner on {model_path} {_where(env, cpu)} failed: {err}") from err
    except EnvironmentProblem as err:
        raise EnvironmentProblem(f"runner on {model_path}: {err}") from err


def _where(env: Aarch64Env | None, cpu: str | None) -> str:
    return f"natively ({sys.executable})" if env is None else f"under {env.qemu} -cpu {cpu or env.cpu}"


def runner_key(env: Aarch64Env | None, cpu: str | None = None) -> tuple:
    """The :func:`~parity.core.warm.warm_process` key of a target's runner: per emulated root and CPU,
    or per interpreter natively."""
    if env is None:
        return ("onnx-runner", sys.executable)
    return ("onnx-runner", str(env.cache_dir), cpu or env.cpu)


def warm_runner(env: Aarch64Env | None, cpu: str | None = None) -> WarmProcess:
    """The warm runner (``runner.py serve``) of a target: natively (``env`` None) or under ``env``'s emulator."""

    def make() -> WarmProcess:
        command = runner_command(env, ["serve", "--workers", str(SERVE_WORKERS)], cpu=cpu)
        name = f"the ONNX runner {_where(env, cpu)}"
        return WarmProcess(name, command, env=None if env is None else env.python_env())

    return warm_process(runner_key(env, cpu), make)


def _check_args(env: object, graph_opt: str, cpu: str | None, inputs: Mapping[str, np.ndarray]) -> None:
    if graph_opt not in GRAPH_OPTIMIZATIONS:
        raise InvalidInputError(f"graph_opt={graph_opt!r}: expected one of {', '.join(GRAPH_OPTIMIZATIONS)}.")
    if cpu is not None and env is None:
        raise InvalidInputError(f"cpu={cpu!r} needs an emulated target: pass env=setup_aarch64().")
    bad = [name for name, value in inputs.items() if np.asarray(value).dtype == object]
    if bad:
        raise InvalidInputError(f"inputs {bad}: object arrays cannot travel without pickling; "
                                "pass strings as numpy unicode arrays (dtype '<U...').")  # fmt: skip


class OnnxRunner:
    """The ONNX runner (``validators/runner.py``, onnxruntime) as a :class:`~.runners.RemoteRunner`."""

    runtime = "onnxruntime"
    role = Role.DEPLOY
    inputs_file = "inputs.npz"
    outputs_file = "outputs.npz"
    replays_verification = False

    def write_inputs(self, path: Path, inputs: Mapping[str, np.ndarray]) -> None:
        _check_args(None, "all", None, inputs)
        write_onnx_inputs(path, inputs)

    def run_files(
        self, env: Aarch64Env | None, artifact: Path, inputs: Path, outputs: Path, settings: RunnerSettings
    ) -> None:
        cpu = settings.cpu if env is not None else None
        run_onnx_files(env, artifact, inputs, outputs, settings.threads, settings.graph_optimization, cpu)

    def read_outputs(self, path: Path) -> RemoteResult:
        outputs, where = read_onnx_outputs(path)
        return RemoteResult(outputs, where_of(where, path))
