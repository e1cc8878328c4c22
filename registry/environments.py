"""Reference predictions computed in the environment a training run recorded, not in Parity's own.

An MLflow model records its run's environment (``requirements.txt``: ``scikit-learn==1.8.0``, ...;
``python_env.yaml``: ``python: 3.11.7``). When that differs from Parity's, the original estimator's outputs
are what *that* environment computes: this module builds a virtual environment from the requirements (once;
cached under :data:`CACHE_ENV`, keyed by the Python and the sorted requirements) and runs
:mod:`parity.registry.estimator_outputs` (the very code :mod:`parity.registry.predictions` runs here) by
its path in that environment's interpreter. Rows and outputs cross as ``.npz`` files read without pickle.

An environment is built in a staging folder and renamed into place: a killed build never leaves a half
environment that is reused, and of concurrent builders one wins and the others use its environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from parity.core.errors import EnvironmentProblem, InvalidInputError

from . import estimator_outputs

logger = logging.getLogger("parity.registry.environments")

#: Where built environments live (default ``~/.cache/parity/envs``).
CACHE_ENV = "PARITY_ENV_CACHE"
#: How long (s) the child may take to load the model and predict. Generous, as in the loader sandbox: a
#: large forest on a million rows on a loaded two-core machine takes minutes; a hang is still stopped.
DEADLINE_ENV = "PARITY_ENV_DEADLINE_S"
DEFAULT_DEADLINE_S = 900.0
#: Memory (MiB of address space beyond what the child maps after its imports) the model may use.
MEMORY_ENV = "PARITY_ENV_MEMORY_MB"
DEFAULT_MEMORY_MB = 4096
#: How long (s) one build may take: creating the venv and pip's download and install of the wheels.
BUILD_DEADLINE_S = 1800.0
#: Marker written into a complete environment before it is renamed into place; it records what was built.
MARKER = "parity-env.json"
#: Bump when the way environments are built changes: older ones are then not reused.
SCHEMA = 1
#: Packages only MLflow itself needs (to log, serve or trace a model): computing predictions needs none.
SERVING_ONLY = frozenset(
    {"mlflow", "mlflow-skinny", "mlflow-tracing", "gunicorn", "waitress", "uvicorn", "fastapi", "flask"}
)
#: What the child itself imports, added (unpinned) when the recorded requirements lack them.
CHILD_NEEDS = ("numpy", "pandas", "scikit-learn")
#: Lines of pip's (or the child's) output quoted in an error.
TAIL_LINES = 15

_CHILD_SCRIPT = Path(estimator_outputs.__file__)


def _parse(requirements: Sequence[str]) -> list[Requirement]:
    """The requirements that matter to predictions (comments, blank lines and :data:`SERVING_ONLY` dropped)."""
    parsed = []
    for line in requirements:
        text = line.split(" #", 1)[0].strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("-"):
            raise InvalidInputError(
                f"requirement line {line!r} is a pip option: expected one requirement per line "
                "(name==version). Remove the option, or give the package it points to."
            )
        try:
            requirement = Requirement(text)
        except InvalidRequirement as err:
            raise InvalidInputError(
                f"requirement line {line!r} is not a requirement ({err}): expected e.g. "
                "'scikit-learn==1.8.0'. Fix the run's requirements.txt."
            ) from err
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        if canonicalize_name(requirement.name) not in SERVING_ONLY:
            parsed.append(requirement)
    return parsed


def child_requirements(requirements: Sequence[str], fmt: str) -> list[str]:
    """What an environment for ``requirements`` installs to load a ``fmt`` model and predict: the run's
    requirements without :data:`SERVING_ONLY`, plus what the child imports, sorted and without duplicates.

    Parameters
    ----------
    requirements : sequence of str
        Lines of the run's ``requirements.txt``.
    fmt : str
        The model file's format, a key of :data:`~parity.registry.estimator_outputs.FORMATS`.

    Returns
    -------
    list of str
        The requirements to install, normalised (``scikit-learn==1.8.0``).
    """
    _check_format(fmt)
    parsed = _parse(requirements)
    for requirement in parsed:  # one spelling per package, so that equal sets share one environment
        requirement.name = canonicalize_name(requirement.name)
    names = {requirement.name for requirement in parsed}
    texts = {str(requirement) for requirement in parsed}
    texts.update(need for need in (*CHILD_NEEDS, *estimator_outputs.FORMATS[fmt][1]) if need not in names)
    return sorted(texts, key=lambda text: (Requirement(text).name, text))


def _check_format(fmt: str) -> None:
    if fmt not in estimator_outputs.FORMATS:
        raise InvalidInputError(
            f"model format {fmt!r} is not one the run's environment can load: expected one of "
            f"{', '.join(estimator_outputs.FORMATS)}."
        )


def environment_differs(requirements: Sequence[str]) -> list[str]:
    """The pinned requirements whose version differs from what is installed in Parity's own environment.

    Parameters
    ----------
    requirements : sequence of str
        Lines of the run's ``requirements.txt``; only ``name==version`` pins are compared, and not the
        packages only MLflow needs (:data:`SERVING_ONLY`).

    Returns
    -------
    list of str
        E.g. ``["scikit-learn==1.8.0 (here 1.9.0)"]``; empty when Parity's environment matches every pin.
    """
    differs = []
    for requirement in _parse(requirements):
        pins = [spec.version for spec in requirement.specifier if spec.operator in ("==", "===")]
        if len(pins) != 1 or "*" in pins[0]:
            continue
        pinned = f"{requirement.name}=={pins[0]}"
        try:
            here = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            differs.append(f"{pinned} (not installed here)")
            continue
        if not _same_version(here, pins[0]):
            differs.append(f"{pinned} (here {here})")
    return differs


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def cache_root() -> Path:
    """The folder built environments live in: ``$PARITY_ENV_CACHE``, else ``~/.cache/parity/envs``."""
    configured = os.environ.get(CACHE_ENV, "")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "parity" / "envs"


def _version_of(interpreter: str) -> str | None:
    """``interpreter``'s major.minor, or None when it does not run (a pyenv shim of an absent version)."""
    try:
        done = subprocess.run(
            [interpreter, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def base_interpreter(python: str | None) -> tuple[str, str, str]:
    """The interpreter to build an environment with for a run that recorded ``python`` (e.g. ``3.11.7``).

    Returns
    -------
    tuple of str
        The interpreter, its major.minor, and a note (empty, or why Parity's own interpreter stands in).
    """
    own = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if python is None:
        return sys.executable, own, ""
    wanted_version = ".".join(python.strip().split(".")[:2])
    if wanted_version == own:
        return sys.executable, own, ""
    found = shutil.which(f"python{wanted_version}")
    if found and _version_of(found) == wanted_version:
        return found, wanted_version, ""
    note = (
        f"the run recorded Python {python}, but no python{wanted_version} runs on this machine: its "
        f"environment is built with Parity's own Python {own}. Install Python {wanted_version} (on PATH as "
        f"python{wanted_version}) for predictions in the run's own Python."
    )
    return sys.executable, own, note


def _key(version: str, installs: list[str]) -> str:
    text = json.dumps({"schema": SCHEMA, "python": version, "requirements": installs})
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _tail(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-TAIL_LINES:])


def _run_build_step(command: list[str], what: str, installs: list[str]) -> str:
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=BUILD_DEADLINE_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as err:
        raise EnvironmentProblem(
            f"Building an environment with {', '.join(installs)}: {what} did not finish within "
            f"{BUILD_DEADLINE_S:g} s. "
            "Check that PyPI (or the configured index) is reachable, then try again."
        ) from err
    if done.returncode != 0:
        output = _tail(done.stderr if done.stderr.strip() else done.stdout)
        culprit = _culprit(output)
        wheels = "exist on PyPI (or the configured index) as a binary wheel for this Python"
        if culprit:
            named, fix = (
                f"requirement {culprit!r} could not be installed",
                f"Fix or remove it (it must {wheels})",
            )
        else:
            named, fix = (
                "it exited with an error",
                f"Check that every requirement can be installed (each must {wheels})",
            )
        raise EnvironmentProblem(
            f"Building an environment with {', '.join(installs)}: {what} failed: {named}. It said:\n{output}\n"
            f"{fix}, or compute the reference predictions in Parity's own environment."
        )
    return done.stdout


def _culprit(output: str) -> str | None:
    """The requirement pip names as the one it could not find, if it does."""
    for marker in ("No matching distribution found for ", "satisfies the requirement "):
        for line in reversed(output.splitlines()):
            if marker in line:
                return line.split(marker, 1)[1].split(" (from", 1)[0].strip()
    return None


def ensure_environment(requirements: Sequence[str], fmt: str = "skops", python: str | None = None) -> Path:
    """The interpreter of a cached environment with ``requirements``, built first if there is none.

    Parameters
    ----------
    requirements : sequence of str
        Lines of the run's ``requirements.txt`` (see :func:`child_requirements` for what is installed).
    fmt : str
        The model format the environment must load.
    python : str, optional
        The run's Python version (``python_env.yaml``); only its major.minor is matched.

    Returns
    -------
    pathlib.Path
        The environment's ``bin/python``.

    Raises
    ------
    EnvironmentProblem
        When the environment cannot be built (a requirement pip cannot find, no network).
    """
    installs = child_requirements(requirements, fmt)
    interpreter, version, note = base_interpreter(python)
    root = cache_root()
    final = root / _key(version, installs)
    if (final / MARKER).is_file():
        return final / "bin" / "python"
    if note:
        logger.warning("%s", note)
    root.mkdir(parents=True, exist_ok=True)
    _sweep_stale(root)
    _set_aside_incomplete(final)
    staging = root / f".staging-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _build(staging, interpreter, installs, {"python": version, "note": note})
        try:
            staging.rename(final)
        except OSError:
            if not (final / MARKER).is_file():  # not a concurrent builder's finished environment
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final / "bin" / "python"


def _sweep_stale(root: Path) -> None:
    """Remove staging folders of builds that were killed (older than two build deadlines: not running)."""
    for folder in root.glob(".staging-*"):
        try:
            if time.time() - folder.stat().st_mtime > 2 * BUILD_DEADLINE_S:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass  # another sweeper took it


def _set_aside_incomplete(final: Path) -> None:
    """A folder at the final place without the marker was not made here; move it aside rather than reuse it."""
    if final.exists() and not (final / MARKER).is_file():
        final.rename(final.with_name(f".incomplete-{final.name}-{uuid.uuid4().hex[:8]}"))


def _build(staging: Path, interpreter: str, installs: list[str], record: dict[str, str]) -> None:
    _run_build_step([interpreter, "-m", "venv", str(staging)], "creating the virtual environment", installs)
    python = str(staging / "bin" / "python")
    pip = [python, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    install = [*pip, "install", "--progress-bar", "off", "--only-binary", ":all:", *installs]
    _run_build_step(install, "installing the requirements", installs)
    frozen = _run_build_step([*pip, "freeze", "--all"], "listing what was installed", installs)
    marker = {
        "schema": SCHEMA,
        **record,
        "requirements": installs,
        "installed": frozen.split(),
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (staging / MARKER).write_text(json.dumps(marker, indent=1))


def predictions_in_interpreter(
    interpreter: Path | str,
    model_file: Path,
    fmt: str,
    rows: pd.DataFrame,
    *,
    trusted_types: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """Load ``model_file`` in ``interpreter`` and return its reference outputs on ``rows`` (see
    :func:`predictions_in_environment`, which picks the interpreter)."""
    _check_format(fmt)
    try:
        arrays, meta = estimator_outputs.frame_to_arrays(rows)
    except estimator_outputs.CarryError as err:
        raise InvalidInputError(f"the reference rows cannot be sent to the run's environment: {err}") from err
    with tempfile.TemporaryDirectory(prefix="parity-env-request-") as tmp:
        folder = Path(tmp)
        estimator_outputs.write_arrays(folder, "rows", arrays, meta)
        request = {
            "model": str(Path(model_file).resolve()),
            "format": fmt,
            "trusted": list(trusted_types),
            "memory_mb": int(_number(MEMORY_ENV, DEFAULT_MEMORY_MB)),
        }
        (folder / "request.json").write_text(json.dumps(request))
        _run_child([str(interpreter), "-I", str(_CHILD_SCRIPT), str(folder)], Path(model_file))
        out_arrays, out_meta = estimator_outputs.read_arrays(folder, "outputs")
    return estimator_outputs.outputs_from_arrays(out_arrays, out_meta)


def _number(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return float(default)


def _run_child(command: list[str], model_file: Path) -> None:
    deadline = _number(DEADLINE_ENV, DEFAULT_DEADLINE_S)
    child = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a timeout ends it and whatever it started
    )
    try:
        out, err = child.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):  # it ended on its own just now
            os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        raise InvalidInputError(
            f"{model_file}: computing the reference predictions in the run's environment did not finish "
            f"within {deadline:g} s. A model that really needs longer: raise ${DEADLINE_ENV}."
        ) from None
    if child.returncode != 0:
        why = f"signal {-child.returncode}" if child.returncode < 0 else f"status {child.returncode}"
        raise InvalidInputError(
            f"{model_file}: loading the model or predicting in the run's environment failed ({why}):\n"
            f"{_tail(out + chr(10) + err)}\nCheck that the model loads and predicts on the reference rows "
            f"with the run's requirements (memory limit: ${MEMORY_ENV}, {_number(MEMORY_ENV, DEFAULT_MEMORY_MB):g} MiB)."
        )


def predictions_in_environment(
    model_file: Path,
    fmt: str,
    rows: pd.DataFrame,
    requirements: Sequence[str],
    *,
    trusted_types: Sequence[str] = (),
    python: str | None = None,
) -> dict[str, np.ndarray]:
    """The original estimator's reference outputs on ``rows``, computed in the run's recorded environment.

    The same as :func:`parity.registry.predictions.reference_predictions` (same keys, dtypes, shapes and row
    chunking: the same code runs), but in an interpreter of a cached virtual environment built from
    ``requirements``.

    Parameters
    ----------
    model_file : pathlib.Path
        The model file; its trust and SHA-256 have been checked already.
    fmt : str
        ``"skops"``, ``"pickle"`` or ``"joblib"``.
    rows : pandas.DataFrame
        The reference rows.
    requirements : sequence of str
        Lines of the run's ``requirements.txt`` (MLflow's own packages are dropped).
    trusted_types : sequence of str
        The types a skops file may build (``skops.io.load(trusted=...)``).
    python : str, optional
        The run's Python version (``python_env.yaml``); matched by major.minor when such a Python is on PATH.

    Returns
    -------
    dict of str to numpy.ndarray
        One entry per output method, as :func:`~parity.registry.predictions.reference_predictions` returns.

    Raises
    ------
    EnvironmentProblem
        When the environment cannot be built (e.g. a requirement pip cannot find).
    InvalidInputError
        When the model fails to load or predict there (with the end of its error output), or hangs.
    """
    _check_format(fmt)
    interpreter = ensure_environment(requirements, fmt, python)
    return predictions_in_interpreter(interpreter, model_file, fmt, rows, trusted_types=trusted_types)
