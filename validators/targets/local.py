"""Run ``validators/runner.py`` on a target: natively (this interpreter) or in an emulated aarch64 sysroot.

The runner runs in its own process on every target, so native and emulated results come through the
same code and the same files (npz in, npz out), and differ only by where they ran.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from parity.core.errors import EnvironmentProblem, InvalidInputError

if TYPE_CHECKING:
    from parity.validators.targets.aarch64 import Aarch64Env

RUNNER = Path(__file__).resolve().parent.parent / "runner.py"
WHERE_KEY = "__where__"  # the runner's reserved output name
GRAPH_OPTS = ("disable", "basic", "extended", "all")
# Emulated python + `import onnxruntime` alone takes seconds; inference is 6-60x slower than native.
TIMEOUT_S = 1800


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
        np.savez(feed, **{name: np.asarray(array) for name, array in inputs.items()})  # type: ignore[arg-type]
        args = ["onnx", "--model", str(Path(model_path).resolve()), "--inputs", str(feed),
                "--outputs", str(out), "--threads", str(threads), "--graph-opt", graph_opt]  # fmt: skip
        command = runner_command(env, args, cpu=cpu)
        sub_env = None if env is None else env.python_env()
        try:
            proc = subprocess.run(command, env=sub_env, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired as err:
            raise EnvironmentProblem(
                f"runner on {model_path} took more than {TIMEOUT_S} s and was stopped."
            ) from err
        if proc.returncode != 0:
            where = "natively" if env is None else f"under {env.qemu} -cpu {cpu or env.cpu}"
            raise EnvironmentProblem(f"runner on {model_path} {where} exited {proc.returncode}:\n"
                                     f"{proc.stderr.strip()[-2000:]}")  # fmt: skip
        with np.load(out, allow_pickle=False) as data:
            outputs = {name: data[name] for name in data.files}
    where_info = json.loads(str(outputs.pop(WHERE_KEY)))
    return outputs, where_info


def _check_args(env: object, graph_opt: str, cpu: str | None, inputs: Mapping[str, np.ndarray]) -> None:
    if graph_opt not in GRAPH_OPTS:
        raise InvalidInputError(f"graph_opt={graph_opt!r}: expected one of {', '.join(GRAPH_OPTS)}.")
    if cpu is not None and env is None:
        raise InvalidInputError(f"cpu={cpu!r} needs an emulated target: pass env=setup_aarch64().")
    bad = [name for name, value in inputs.items() if np.asarray(value).dtype == object]
    if bad:
        raise InvalidInputError(f"inputs {bad}: object arrays cannot travel without pickling; "
                                "pass strings as numpy unicode arrays (dtype '<U...').")  # fmt: skip
