"""The two PMML runtimes as Parity validates with them: JPMML and PMML4S in this host's engine JVM.

They keep the names of the Python packages that wrap the same engines (``jpmml_evaluator``, ``pypmml``), so
reports, roles and tolerances read as before; what changed is the path: rows go to the engine
(:mod:`parity.core.engine`) as binary columns, in chunks, and come back the same way, evaluated with
several threads inside one warm JVM that also hosts the converter. The bridges
(:mod:`.pmml`: JPype, py4j) stay available to users who want them, and ``PARITY_PMML_BRIDGES=1`` makes
Parity validate through them (:func:`pmml_runtimes`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from parity.converters.pmml_server import host_engine
from parity.core.engine import COMPONENTS
from parity.core.errors import EnvironmentProblem, InvalidInputError
from parity.core.java import find_java
from parity.core.records import Role
from parity.core.warm import JobFailed

from . import BaseRuntime, Runtime
from .pmml import (
    JpmmlRuntime,
    PypmmlRuntime,
    _check_frame,
    _existing_file,
    _stack,
    embedded_rows,
)

#: Threads one evaluation job uses in the engine (its rows split among them): the machine's cores.
DEFAULT_THREADS = max(1, len(os.sched_getaffinity(0)))
#: Set to 1 to validate through the Python bridges (jpmml_evaluator with JPype, pypmml with py4j).
BRIDGES_VARIABLE = "PARITY_PMML_BRIDGES"


class _EngineRuntime(BaseRuntime):
    """What both engine runtimes share: availability, start, the chunked evaluation job."""

    format = "pmml"
    component: str
    package: str

    def __init__(self, *, threads: int = DEFAULT_THREADS) -> None:
        if not (isinstance(threads, int) and threads > 0):
            raise InvalidInputError(f"threads must be a positive int, got {threads!r}.")
        self.threads = threads

    def unavailable_reason(self) -> str | None:
        """Why this runtime cannot run here, with what to do about it; None when it can."""
        if find_java() is None:
            return (
                "the PMML engine needs a `java` executable and there is none on PATH or JAVA_HOME: install "
                "openjdk-17-jre-headless (apt-get install -y openjdk-17-jre-headless) or set JAVA_HOME."
            )
        if not COMPONENTS[self.component].jars():
            return f"the PMML engine's {self.component} component needs the {self.package} package: pip install {self.package}."
        return None

    def start(self) -> None:
        """Start the engine now rather than on the first evaluation."""
        host_engine().start()

    def _evaluate(self, path: Path, X: pd.DataFrame) -> tuple[list[pd.DataFrame], list[list[str]]]:
        parts, replies = [], []
        try:
            for frame, reply, _ in host_engine().on_columns(
                f"{self.component}.evaluate", path, X, [str(self.threads)]
            ):
                parts.append(frame)
                replies.append(reply)
        except JobFailed as err:
            raise InvalidInputError(
                f"{path.name}: {self.name} (the engine's {self.component}) cannot load or evaluate this PMML: "
                f"{err}. Convert the model again, or report it to the converter if the file is valid PMML."
            ) from err
        return parts, replies


class EngineJpmmlRuntime(_EngineRuntime):
    """JPMML-Evaluator in the engine: the target field, then every output field; it replays the PMML's
    embedded verification rows. Deploy role, as JPMML is sklearn2pmml's reference engine.

    Parameters
    ----------
    threads : int
        Threads evaluating one chunk of rows in the engine.
    """

    name = "jpmml_evaluator"
    component = "jpmml"
    package = "jpmml_evaluator"
    verifies = True

    def evaluate(self, pmml_path: Path | str, X: pd.DataFrame) -> pd.DataFrame:
        """Evaluate a PMML file on every row of ``X``; as :meth:`.pmml.JpmmlRuntime.evaluate`.

        Returns
        -------
        pandas.DataFrame
            One row per input row with ``X``'s index: the target column (integer labels as int64), then the
            output fields.

        Raises
        ------
        InvalidInputError
            When the file is missing or JPMML cannot load it, or JPMML rejects a row (e.g. a category the
            model never saw); the message gives how many rows failed and the first one.
        EnvironmentProblem
            When the engine cannot start or dies.
        """
        path = _existing_file(pmml_path)
        X = _check_frame(X)
        parts, replies = self._evaluate(path, X)
        failed = sum(int(reply[0]) for reply in replies)
        if failed:
            offset, (_, first, message) = next(
                (sum(len(p) for p in parts[:i]), reply) for i, reply in enumerate(replies) if int(reply[0])
            )
            index = X.index[offset + int(first)]
            index = index.item() if isinstance(index, np.generic) else index
            raise InvalidInputError(
                f"{path.name}: JPMML could not evaluate {failed} of {len(X)} rows; first at index "
                f"{index!r}: {message}. Check those values against the PMML's "
                "DataDictionary (an unseen category, or a value out of range)."
            )
        return _stack(parts, X.index)

    def verify(self, pmml_path: Path | str) -> tuple[bool, str]:
        """Replay the PMML's embedded ``<ModelVerification>`` rows with JPMML; as
        :meth:`.pmml.JpmmlRuntime.verify`."""
        path = _existing_file(pmml_path)
        rows, nothing = embedded_rows(path)
        if nothing:
            return False, nothing
        try:
            (outcome,) = host_engine().call_again_if_lost("jpmml.verify", [str(path.resolve())])
        except JobFailed as err:
            raise InvalidInputError(
                f"{path.name}: jpmml_evaluator (the engine's JPMML) cannot load this PMML: {err}. Convert the "
                "model again, or report it to the converter if the file is valid PMML."
            ) from err
        if outcome == "ok":
            return True, f"{rows} embedded rows replayed"
        return False, f"{path.name}: embedded verification failed: {outcome.removeprefix('fail: ')}"


class EnginePmml4sRuntime(_EngineRuntime):
    """PMML4S (the engine pypmml wraps) in the engine: its output fields, named as pypmml names them.

    Witness role: PMML4S disagrees with JPMML by design in places (float split predicates compared in
    double, missing values for NaN rows: FACTS.md).

    Parameters
    ----------
    threads : int
        Threads evaluating one chunk of rows in the engine.
    """

    name = "pypmml"
    role = Role.WITNESS
    component = "pmml4s"
    package = "pypmml"

    def evaluate(self, pmml_path: Path | str, X: pd.DataFrame) -> pd.DataFrame:
        """Evaluate a PMML file on every row of ``X``; as :meth:`.pmml.PypmmlRuntime.evaluate`.

        Raises
        ------
        InvalidInputError
            When the file is missing, PMML4S cannot load it, a row holds an infinite number (pypmml's JSON
            cannot carry one either), or PMML4S fails on a row.
        EnvironmentProblem
            When the engine cannot start or dies.
        """
        path = _existing_file(pmml_path)
        X = _check_frame(X)
        numeric, others = X.select_dtypes(include="number"), X.select_dtypes(exclude="number")
        infinite = np.isinf(numeric.to_numpy(dtype=np.float64)).any() or any(
            isinstance(value, float) and math.isinf(value) for column in others for value in others[column]
        )
        if infinite:
            raise InvalidInputError(
                f"{path.name}: pypmml could not evaluate rows holding infinite numbers. Check the input "
                "values (finite numbers, known categories)."
            )
        parts, _ = self._evaluate(path, X)
        return _stack(parts, X.index)


def pmml_runtimes() -> tuple[Runtime, ...]:
    """The PMML runtimes Parity validates with: the engine's, or with ``PARITY_PMML_BRIDGES=1`` the bridges.

    Raises
    ------
    EnvironmentProblem
        For a ``PARITY_PMML_BRIDGES`` value other than 0 or 1.
    """
    value = os.environ.get(BRIDGES_VARIABLE, "0").strip()
    if value not in ("", "0", "1"):
        raise EnvironmentProblem(
            f"{BRIDGES_VARIABLE}={value!r}: expected 1 (the Python bridges) or 0 (the engine)."
        )
    if value == "1":
        return (JpmmlRuntime(), PypmmlRuntime())
    return (EngineJpmmlRuntime(), EnginePmml4sRuntime())
