"""The two PMML runtimes: pypmml (PMML4S behind a py4j gateway) and jpmml_evaluator (JPMML through JPype).

Both run on a JVM that starts once per process, on first use, with a bounded heap (``-Xmx``, 512 MiB by
default). The options of that first start hold for the life of the process: JPype runs the JVM inside this
process and cannot restart it, and pypmml keeps one gateway per process. A runtime created later with other
options logs a warning and shares the JVM already running.

- pypmml's gateway is a child ``java`` process launched by py4j with ``die_on_exit``: it exits with Python.
- jpmml_evaluator runs through JPype, in this process, because its py4j backend leaves its JVM running after
  Python exits.

Rows go to the JVM in chunks (10,000 by default) so that memory does not grow with the number of rows, and
loaded models are kept in a small LRU per runtime so one model is not parsed again for every chunk. Both
classes may be used from several threads at once (see each class for what is locked).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from parity.core.errors import EnvironmentProblem, InvalidInputError
from parity.core.java import LEAN_JVM_OPTIONS, crash_log_options, find_java
from parity.core.numbers import decimal_int
from parity.core.records import Role

from . import BaseRuntime, ModelCache

log = logging.getLogger(__name__)

#: Heap cap of a JVM this module starts (the ``-Xmx`` value); JPMML on a 100-tree forest ran out of memory
#: on one 100k-row call at every cap up to 3 GB, but needed 754 MB in 10k-row chunks at 512m.
DEFAULT_MAX_HEAP = "512m"
#: Rows sent to the JVM per call.
DEFAULT_CHUNK_ROWS = 10_000
#: Loaded models kept per runtime.
DEFAULT_CACHE_SIZE = 4

_INSTALL_JAVA = "install a Java runtime (apt-get install -y openjdk-17-jre-headless) or set JAVA_HOME"
_JPMML_UTIL = "org.jpmml.evaluator.python.PythonEvaluatorUtil"


def _check_settings(max_heap: str, chunk_rows: int, cache_size: int) -> None:
    if not (isinstance(chunk_rows, int) and chunk_rows > 0):
        raise InvalidInputError(f"chunk_rows must be a positive int, got {chunk_rows!r}.")
    if not (isinstance(cache_size, int) and cache_size > 0):
        raise InvalidInputError(f"cache_size must be a positive int, got {cache_size!r}.")
    heap_ok = isinstance(max_heap, str) and decimal_int(max_heap[:-1]) is not None
    if not (heap_ok and max_heap[-1].lower() in "kmg"):
        raise InvalidInputError(f"max_heap must look like '512m' or '2g' (the -Xmx value), got {max_heap!r}.")


def _existing_file(pmml_path: Path | str) -> Path:
    path = Path(pmml_path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such PMML file. Pass the path that the PMML converter wrote.")
    return path


def _check_frame(X: object) -> pd.DataFrame:
    if not isinstance(X, pd.DataFrame):
        raise InvalidInputError(
            f"X must be a pandas DataFrame whose columns are named like the PMML's input fields, "
            f"got {type(X).__name__}."
        )
    return X


def _chunks(X: pd.DataFrame, rows: int) -> Iterator[pd.DataFrame]:
    """Yield consecutive row blocks of at most ``rows`` rows; an empty frame yields itself once."""
    yield X.iloc[:rows]
    for start in range(rows, len(X), rows):
        yield X.iloc[start : start + rows]


def _missing_as_none(X: pd.DataFrame) -> pd.DataFrame:
    """``X`` as Python objects (object dtype), with every missing value (NaN, None, NA) as ``None``."""
    return X.astype(object).where(X.notna(), None)


def _stack(parts: Sequence[pd.DataFrame], index: pd.Index) -> pd.DataFrame:
    out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
    if len(out) != len(index):
        raise InvalidInputError(f"the runtime returned {len(out)} rows for {len(index)} input rows.")
    out.index = index
    return out


def _java_message(err: BaseException) -> str:
    """The Java class and message behind an exception raised through a bridge, without the stack trace."""
    java = getattr(err, "java_exception", err)  # py4j wraps the Java exception; JPype raises it directly
    get_class, get_message = getattr(java, "getClass", None), getattr(java, "getMessage", None)
    if callable(get_class) and callable(get_message):
        return f"{get_class().getName()}: {get_message()}"
    if len(err.args) == 2 and all(isinstance(arg, str) for arg in err.args):
        return ": ".join(err.args)  # pypmml's PMMLError(java_class_name, message)
    return str(err) or type(err).__name__


#: How a replay begins to say that the PMML carries no verification rows; ``PmmlRunner.java`` says the same.
NOTHING_EMBEDDED = "not embedded"


def verification_rows(pmml_path: Path | str) -> int | None:
    """Count the rows of the top-level model's embedded ``<ModelVerification>`` table.

    Parameters
    ----------
    pmml_path : pathlib.Path or str
        A PMML file.

    Returns
    -------
    int or None
        The number of ``<row>`` elements in the table, or None when the top-level model has no table.

    Raises
    ------
    InvalidInputError
        When the file is missing or is not well-formed XML.
    """
    path = _existing_file(pmml_path)
    # iterparse opens a path itself and closes it only when exhausted: returning early would leave it open
    with path.open("rb") as handle:
        return _count_rows(path, ET.iterparse(handle, events=("start", "end")))


def _count_rows(path: Path, events: Iterator[tuple[str, Any]]) -> int | None:
    depth, rows, inside = 0, 0, False
    try:
        for event, element in events:
            tag = element.tag.rpartition("}")[2]
            if event == "start":
                depth += 1
                # PMML (1) > model element (2) > ModelVerification (3): nested segment models are deeper.
                inside = inside or (tag == "ModelVerification" and depth == 3)
                continue
            depth -= 1
            if inside and tag == "row":
                rows += 1
            elif inside and tag == "ModelVerification" and depth == 2:
                return rows
            element.clear()
    except ET.ParseError as err:
        raise InvalidInputError(f"{path}: is not well-formed XML ({err}); convert the model again.") from err
    return None


def embedded_rows(path: Path) -> tuple[int | None, str | None]:
    """The PMML's embedded verification rows, and why there is nothing to replay when there are none.

    Returns
    -------
    tuple of (int or None, str or None)
        :func:`verification_rows`, and None, or (starting with :data:`NOTHING_EMBEDDED`) what to do.
    """
    rows = verification_rows(path)
    if rows:
        return rows, None
    table = "has an empty <ModelVerification> table" if rows == 0 else "has no <ModelVerification>"
    return rows, (
        f"{NOTHING_EMBEDDED}: {path.name}: {table}, so there is nothing to replay. Call "
        "PMMLPipeline.verify(X_sample) (with named columns) before sklearn2pmml()."
    )


class JpmmlRuntime(BaseRuntime):
    """JPMML through jpmml_evaluator's JPype backend, with the JVM inside this process.

    The JVM starts on first use with ``-Xmx<max_heap>`` plus ``jvm_options`` and jpmml_evaluator's jars,
    and then serves the whole process: JPype cannot stop and restart a JVM with other options, so
    the first runtime to start it decides its heap. When something else started a JPype JVM first, this
    runtime uses that JVM (it must have jpmml_evaluator's jars on its class path) and logs a warning.

    Not thread-safe (``thread_safe = False``: callers hold :func:`~parity.validators.runtimes.exclusive`):
    JPMML's evaluators are, but JPype's first conversions from two threads at once crashed 7 of 50 fresh
    processes (SIGSEGV in ``JPHintsConversion::matches``, ``PyGILState_Release`` fatal errors). Each call
    still evaluates its chunk on the JVM's common fork-join pool.

    Parameters
    ----------
    max_heap : str
        The JVM's ``-Xmx`` value, used only if this runtime is the one that starts the JVM.
    chunk_rows : int
        Rows sent to the JVM per call.
    cache_size : int
        Loaded models kept (least recently used are dropped).
    jvm_options : sequence of str
        More JVM options for the first start, e.g. ``("-XX:TieredStopAtLevel=1",)``.
    """

    name = "jpmml_evaluator"
    format = "pmml"
    verifies: bool = True
    thread_safe = False

    _jvm_lock: ClassVar[threading.Lock] = threading.Lock()
    #: The options this module started the JVM with; None while it did not start one.
    _started_with: ClassVar[tuple[str, ...] | None] = None

    def __init__(
        self,
        *,
        max_heap: str = DEFAULT_MAX_HEAP,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        cache_size: int = DEFAULT_CACHE_SIZE,
        jvm_options: Sequence[str] = LEAN_JVM_OPTIONS,
    ) -> None:
        _check_settings(max_heap, chunk_rows, cache_size)
        self.max_heap = max_heap
        self.chunk_rows = chunk_rows
        self.jvm_options: tuple[str, ...] = (f"-Xmx{max_heap}", *jvm_options)
        self._backend: Any = None
        self._models: ModelCache[Any] = ModelCache(cache_size, self._load)

    def unavailable_reason(self) -> str | None:
        """Why this runtime cannot run here, with what to do about it; None when it can."""
        try:
            import jpmml_evaluator  # noqa: F401
            import jpype
        except ImportError as err:
            return f"jpmml_evaluator cannot be imported ({err}): pip install jpmml_evaluator JPype1."
        if jpype.isJVMStarted():
            try:
                jpype.JClass(_JPMML_UTIL)
            except Exception:
                return (
                    "a JPype JVM already runs in this process without jpmml_evaluator's jars on its class "
                    "path: start JpmmlRuntime before anything else starts a JPype JVM."
                )
            return None
        try:
            jpype.getDefaultJVMPath()
        except jpype.JVMNotFoundException as err:
            return f"JPype finds no Java runtime ({err}): {_INSTALL_JAVA}."
        return None

    def evaluate(self, pmml_path: Path | str, X: pd.DataFrame) -> pd.DataFrame:
        """Evaluate a PMML file on every row of ``X``, in chunks of ``chunk_rows``.

        Parameters
        ----------
        pmml_path : pathlib.Path or str
            The PMML file.
        X : pandas.DataFrame
            Input rows, columns named like the PMML's input fields. NaN, None and NA are passed as
            missing values, in numeric and string columns alike.

        Returns
        -------
        pandas.DataFrame
            JPMML's raw results, one row per input row with ``X``'s index: the target column (named as in
            the PMML, e.g. ``y``; labels keep the PMML's data type: str, or int for integer targets) then
            the output fields, e.g. ``probability(<class>)``.

        Raises
        ------
        InvalidInputError
            When the file is missing or JPMML cannot load it, or JPMML rejects a row (e.g. a category the
            model never saw); the message gives how many rows failed and the first one.
        EnvironmentProblem
            When the JVM cannot start.
        """
        path = _existing_file(pmml_path)
        X = _check_frame(X)
        evaluator = self._models.get(path)
        parts = []
        for chunk in _chunks(X, self.chunk_rows):
            arguments = _missing_as_none(chunk).reset_index(drop=True)
            results, errors = evaluator.evaluateAll(arguments, nan_as_missing=False, error_col=None)
            if errors is not None and errors.notna().any():
                failed = errors[errors.notna()]
                raise InvalidInputError(
                    f"{path.name}: JPMML could not evaluate {len(failed)} of {len(chunk)} rows of a chunk; "
                    f"first at index {chunk.index[failed.index[0]]!r}: {failed.iloc[0]}. Check those values "
                    "against the PMML's DataDictionary (an unseen category, or a value out of range)."
                )
            parts.append(results)
        return _stack(parts, X.index)

    def verify(self, pmml_path: Path | str) -> tuple[bool, str]:
        """Replay the PMML's embedded ``<ModelVerification>`` rows with JPMML.

        Parameters
        ----------
        pmml_path : pathlib.Path or str
            The PMML file, written after ``PMMLPipeline.verify(X_sample)``.

        Returns
        -------
        tuple of (bool, str)
            ``(True, "N embedded rows replayed")`` when every row matches; otherwise False and why: JPMML's
            first mismatch, or, starting with :data:`NOTHING_EMBEDDED`, that the file has no (or an empty)
            verification table (JPMML's own ``verify()`` passes such a file without a word).

        Raises
        ------
        InvalidInputError
            When the file is missing, is not XML, or JPMML cannot load it.
        EnvironmentProblem
            When the JVM cannot start.
        """
        path = _existing_file(pmml_path)
        rows, nothing = embedded_rows(path)
        if nothing:
            return False, nothing
        evaluator = self._models.get(path)
        try:
            evaluator.verify()
        except Exception as err:
            return False, f"{path.name}: embedded verification failed: {_java_message(err)}"
        return True, f"{rows} embedded rows replayed"

    def _load(self, path: Path) -> Any:
        from jpmml_evaluator import make_evaluator

        backend = self._ensure_backend()
        try:
            return make_evaluator(path, backend=backend)
        except Exception as err:
            raise InvalidInputError(
                f"{path.name}: jpmml_evaluator cannot load this PMML: {_java_message(err)}. "
                "Convert the model again, or report it to the converter if the file is valid PMML."
            ) from err

    def start(self) -> None:
        """Start the JVM now rather than on the first evaluation."""
        self._ensure_backend()

    def _ensure_backend(self) -> Any:
        import jpype

        # Worker threads (Prefect's thread pool) that touch Java are attached to the JVM as non-daemons;
        # JPype's JVM shutdown at interpreter exit then waits for them for ever. The JVM lives inside this
        # process and holds nothing to flush, so let it end with the process instead.
        import jpype.config

        jpype.config.destroy_jvm = False
        return self._start_backend()

    def _start_backend(self) -> Any:
        import jpype
        from jpmml_evaluator import _classpath

        with JpmmlRuntime._jvm_lock:
            if self._backend is not None:
                return self._backend
            if not jpype.isJVMStarted():
                try:
                    jpype.startJVM(
                        *self.jvm_options, *crash_log_options(), classpath=_classpath(user_classpath=[])
                    )
                except Exception as err:
                    raise EnvironmentProblem(
                        f"the JPype JVM did not start with {' '.join(self.jvm_options)}: {err}. "
                        f"Check the options, or {_INSTALL_JAVA}."
                    ) from err
                JpmmlRuntime._started_with = self.jvm_options
            elif JpmmlRuntime._started_with is None:
                log.warning(
                    "jpmml_evaluator: a JPype JVM was already running; %s not applied.", self.jvm_options
                )
            elif JpmmlRuntime._started_with != self.jvm_options:
                log.warning(
                    "jpmml_evaluator: the JVM already runs with %s and cannot restart; %s not applied.",
                    JpmmlRuntime._started_with,
                    self.jvm_options,
                )
            from jpmml_evaluator.jpype import JPypeBackend

            try:
                self._backend = JPypeBackend()
            except ImportError as err:
                raise EnvironmentProblem(
                    f"the JPype JVM in this process cannot load jpmml_evaluator's classes ({err}): something "
                    "else started it without them; create JpmmlRuntime before anything else starts JPype."
                ) from err
            return self._backend


class PypmmlRuntime(BaseRuntime):
    """PMML4S through pypmml, in a child ``java`` process behind a py4j gateway.

    The gateway starts on first use with ``-Xmx<max_heap>`` plus ``jvm_options`` (after any options in
    ``$JAVA_OPTS``, so these win) and serves the whole process; py4j launches it with ``die_on_exit``, so the
    JVM exits when Python does. When a pypmml gateway already runs, this runtime uses it and logs a warning.

    py4j gives each calling thread its own connection and PMML4S documents its models as read-only and
    thread-safe (a race that returned NaN, autodeployai/pmml4s#14, was fixed in 0.9.10; 1.5.8 runs here),
    so only the gateway start and the model cache are locked.

    Parameters
    ----------
    max_heap : str
        The gateway JVM's ``-Xmx`` value, used only if this runtime is the one that starts it.
    chunk_rows : int
        Rows sent to the JVM per call (as one JSON document).
    cache_size : int
        Loaded models kept (least recently used are dropped).
    jvm_options : sequence of str
        More JVM options for the first start.
    """

    name = "pypmml"
    #: PMML4S disagrees with JPMML (sklearn2pmml's reference engine) by design in places: float split
    #: predicates compared in double, missing values for NaN rows (FACTS.md)
    role = Role.WITNESS
    format = "pmml"

    _gateway_lock: ClassVar[threading.Lock] = threading.Lock()
    #: The options this module started the gateway with; None while it did not start one.
    _started_with: ClassVar[tuple[str, ...] | None] = None

    def __init__(
        self,
        *,
        max_heap: str = DEFAULT_MAX_HEAP,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        cache_size: int = DEFAULT_CACHE_SIZE,
        jvm_options: Sequence[str] = LEAN_JVM_OPTIONS,
    ) -> None:
        _check_settings(max_heap, chunk_rows, cache_size)
        self.max_heap = max_heap
        self.chunk_rows = chunk_rows
        self.jvm_options: tuple[str, ...] = (f"-Xmx{max_heap}", *jvm_options)
        self._models: ModelCache[Any] = ModelCache(cache_size, self._load)

    def unavailable_reason(self) -> str | None:
        """Why this runtime cannot run here, with what to do about it; None when it can."""
        try:
            import pypmml  # noqa: F401
        except ImportError as err:
            return f"pypmml cannot be imported ({err}): pip install pypmml."
        if find_java() is None:  # the java py4j launches: $JAVA_HOME/bin/java, else PATH's
            where = "$JAVA_HOME/bin" if os.environ.get("JAVA_HOME") else "PATH"
            return (
                f"pypmml's gateway needs a `java` executable and there is none on {where}: {_INSTALL_JAVA}."
            )
        return None

    def evaluate(self, pmml_path: Path | str, X: pd.DataFrame) -> pd.DataFrame:
        """Evaluate a PMML file on every row of ``X``, in chunks of ``chunk_rows``.

        Parameters
        ----------
        pmml_path : pathlib.Path or str
            The PMML file.
        X : pandas.DataFrame
            Input rows, columns named like the PMML's input fields. NaN, None and NA are sent as JSON
            ``null`` (missing), in numeric and string columns alike; floats travel at full precision.

        Returns
        -------
        pandas.DataFrame
            PMML4S's raw results, one row per input row with ``X``'s index, columns as PMML4S names them:
            the PMML's output fields (``probability(<class>)`` for sklearn2pmml classifiers, with no
            predicted label), or ``predicted_<target>`` for regressors. A row PMML4S cannot score (e.g.
            an unseen category) comes back as missing values, not as an error.

        Raises
        ------
        InvalidInputError
            When the file is missing, PMML4S cannot load it, or a call fails (e.g. infinite inputs).
        EnvironmentProblem
            When the gateway JVM cannot start.
        """
        path = _existing_file(pmml_path)
        X = _check_frame(X)
        model = self._models.get(path)
        if X.empty:  # PMML4S fails to print an empty result
            return pd.DataFrame(columns=list(model.outputNames), index=X.index)
        parts = []
        for chunk in _chunks(X, self.chunk_rows):
            rows = _missing_as_none(chunk).to_numpy().tolist()
            try:
                # pypmml's own DataFrame path rounds inputs to 10 digits (pandas' to_json default).
                payload = json.dumps({"columns": list(chunk.columns), "data": rows}, allow_nan=False)
                result = json.loads(model.predict(payload))
            except Exception as err:
                raise InvalidInputError(
                    f"{path.name}: pypmml could not evaluate a chunk of {len(chunk)} rows: "
                    f"{_java_message(err)}. Check the input values (finite numbers, known categories)."
                ) from err
            parts.append(pd.DataFrame(result["data"], columns=result["columns"]))
        return _stack(parts, X.index)

    def _load(self, path: Path) -> Any:
        from pypmml import Model as PmmlModel

        self._ensure_gateway()
        try:
            return PmmlModel.fromFile(str(path))
        except Exception as err:
            raise InvalidInputError(
                f"{path.name}: pypmml cannot load this PMML: {_java_message(err)}. "
                "Convert the model again, or compare with jpmml_evaluator to tell a runtime gap from a bad file."
            ) from err

    def start(self) -> None:
        """Start the gateway JVM now rather than on the first evaluation."""
        self._ensure_gateway()

    def _ensure_gateway(self) -> None:
        from pypmml.base import PMMLContext

        with PypmmlRuntime._gateway_lock:
            if PMMLContext.gateway() is None:
                try:
                    PMMLContext.getOrCreate(
                        gateway="py4j", java_opts=[*self.jvm_options, *crash_log_options()]
                    )
                except Exception as err:
                    raise EnvironmentProblem(
                        f"pypmml's gateway JVM did not start with {' '.join(self.jvm_options)}: {err}. "
                        f"Check the options, or {_INSTALL_JAVA}."
                    ) from err
                PypmmlRuntime._started_with = self.jvm_options
            elif PypmmlRuntime._started_with is None:
                log.warning("pypmml: a gateway was already running; %s not applied.", self.jvm_options)
            elif PypmmlRuntime._started_with != self.jvm_options:
                log.warning(
                    "pypmml: the gateway already runs with %s; %s not applied.",
                    PypmmlRuntime._started_with,
                    self.jvm_options,
                )
