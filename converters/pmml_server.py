"""A warm JVM that converts pickled PMMLPipelines to PMML with sklearn2pmml's own ``com.sklearn2pmml.Main``.

Each ``sklearn2pmml.sklearn2pmml()`` call starts a new JVM and pays about 2 s of class loading and JIT
warm-up (FACTS.md, "sklearn2pmml conversion"). :class:`WarmPmmlConverter` keeps one JVM running
``converters/java/ParityConverterServer.java``, which calls ``Main.main`` in-process for each request,
survives the ``System.exit`` that ``Main`` makes on a failed conversion, and refuses every network
connection that would leave the machine: on a failed conversion ``Main`` posts an incident report
(``org.jpmml.telemetry.TelemetryClient``) to an internet endpoint, and Parity never sends data away.
"""

from __future__ import annotations

import base64
import copy
import os
import re
import select
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from zipfile import ZipFile

import joblib
import sklearn2pmml
from sklearn2pmml.resources import _package_classpath

from parity.core.engine import COMPONENTS, JAVA_DIR, Engine, engine, engine_arguments
from parity.core.errors import EnvironmentProblem, InvalidInputError
from parity.core.java import (
    FIRST_JAVA_WITHOUT_SECURITY_MANAGER,
    JAVA_INSTALL_HINT,
    LEAN_JVM_OPTIONS,
    MIN_JAVA,
    VERSION_LINE,
    cache_root,
    compile_java,
    crash_log_options,
    find_java,
    java_version_of,
)
from parity.core.warm import JobFailed, check_field

SERVER_SOURCE = JAVA_DIR / "ParityConverterServer.java"
SERVER_CLASS = "ParityConverterServer"
#: Seconds the converter JVM has to say READY: about 1 s on a quiet 2-core machine (class loading of the
#: sklearn2pmml jars), several times that at load 10; the wait ends as soon as it answers.
JVM_START_TIMEOUT_S = 300

# FACTS.md: sklearn2pmml's Main refuses to convert once its jar's Build-Timestamp is older than 360 days
# ("The SkLearn2PMML package has expired"; Main.validate() compares against now minus 360 days).
SKLEARN2PMML_MAX_AGE_DAYS = 360


@dataclass(frozen=True)
class ServerReply:
    """The outcome of one conversion in the warm JVM.

    Attributes
    ----------
    ok : bool
        True when ``Main`` returned normally (the PMML file was written).
    exit_code : int or None
        The code ``Main`` passed to ``System.exit`` (it does on failure), None when it did not try to exit.
    log : str
        Everything the conversion printed or logged (java.util.logging included).
    blocked_connections : tuple of str
        Network destinations the JVM tried to reach off the machine during this request, all refused.
    seconds : float
        Wall time of the request seen from Python, including the JVM start when this request made one.
    """

    ok: bool
    exit_code: int | None
    log: str
    blocked_connections: tuple[str, ...]
    seconds: float


def sklearn2pmml_build_date() -> date:
    """The build date of the sklearn2pmml jar (its MANIFEST ``Build-Timestamp``).

    Returns
    -------
    datetime.date
        The UTC date the jar holding ``com/sklearn2pmml/Main.class`` was built.

    Raises
    ------
    EnvironmentProblem
        When no jar on sklearn2pmml's classpath holds ``Main`` with a ``Build-Timestamp``.
    """
    for jar in _package_classpath():
        with ZipFile(jar) as archive:
            if "com/sklearn2pmml/Main.class" not in archive.namelist():
                continue
            manifest = archive.read("META-INF/MANIFEST.MF").decode("utf-8")
        stamp = re.search(r"^Build-Timestamp:\s*(\S+)", manifest, re.MULTILINE)
        if stamp:
            return datetime.fromisoformat(stamp[1]).date()
    raise EnvironmentProblem(
        f"sklearn2pmml {sklearn2pmml.__version__}: no jar on its classpath holds com.sklearn2pmml.Main "
        "with a Build-Timestamp. Reinstall sklearn2pmml."
    )


def sklearn2pmml_expiry_date() -> date:
    """The first day sklearn2pmml's Java side may refuse to convert ("The SkLearn2PMML package has expired").

    Returns
    -------
    datetime.date
        :func:`sklearn2pmml_build_date` plus :data:`SKLEARN2PMML_MAX_AGE_DAYS`.
    """
    return sklearn2pmml_build_date() + timedelta(days=SKLEARN2PMML_MAX_AGE_DAYS)


def dump_for_java(pipeline: Any, directory: str | os.PathLike[str]) -> Path:
    """Write a fitted pipeline as the joblib pickle that sklearn2pmml hands to its Java side.

    Works on a deep copy, escaped with ``sklearn2pmml._escape`` as ``sklearn2pmml()`` does (which would
    otherwise rewrite the caller's pipeline in place), then ``joblib.dump(..., compress=3)``.

    Parameters
    ----------
    pipeline : sklearn2pmml.pipeline.PMMLPipeline or BaseEstimator
        The fitted pipeline.
    directory : path-like
        An existing directory; the file gets a fresh ``estimator-*.pkl.z`` name there.

    Returns
    -------
    Path
        The pickle, for :meth:`WarmPmmlConverter.convert`. The caller deletes it.

    Raises
    ------
    InvalidInputError
        When ``pipeline`` is not a scikit-learn estimator.
    """
    if not sklearn2pmml._is_supported(pipeline):
        raise InvalidInputError(
            f"dump_for_java: expected a fitted scikit-learn estimator or PMMLPipeline, got "
            f"{type(pipeline).__name__}. Wrap the model in sklearn2pmml.pipeline.PMMLPipeline."
        )
    escaped = sklearn2pmml._escape(copy.deepcopy(pipeline), escape_func=sklearn2pmml._escape)
    fd, name = tempfile.mkstemp(prefix="estimator-", suffix=".pkl.z", dir=directory)
    os.close(fd)
    joblib.dump(escaped, name, compress=3)
    return Path(name)


def compile_server(java: Path, version_line: str, cache_dir: Path | None = None) -> Path:
    """Compile ParityConverterServer.java once per source and Java version; return the class directory.

    Parameters
    ----------
    java : Path
        The ``java`` executable; ``javac`` next to it is used, else the JDK compiler module through
        ``java -m jdk.compiler/...`` (Debian's JRE ships that module), else ``javac`` on PATH.
    version_line : str
        The Java version line, part of the cache key.
    cache_dir : Path, optional
        Parent of the ``java/<sha256>/`` class directories; default ``$PARITY_CACHE_DIR`` or
        ``~/.cache/parity``.

    Returns
    -------
    Path
        The directory holding ``ParityConverterServer.class``.

    Raises
    ------
    EnvironmentProblem
        When compilation fails.
    """
    return compile_java(SERVER_SOURCE, _package_classpath(), java, version_line, cache_dir or cache_root())


def _sklearn2pmml_environment(version_line: str) -> str:
    """The SKLEARN2PMML_ENVIRONMENT text that sklearn2pmml() sets ("name: version" lines)."""
    match = VERSION_LINE.search(version_line)
    name, version = match.group("name", "version") if match else ("java", version_line)
    pairs = {name: version, "python": sklearn2pmml._python_version(), **sklearn2pmml._package_versions()}
    return "\n".join(f"{key}: {value}" for key, value in pairs.items())


def _stop_process(
    process: subprocess.Popen[bytes], closed_port: socket.socket | None, stderr: IO[bytes] | None = None
) -> None:
    """Close the request pipe (the server exits at end of input); kill the JVM if it lingers.

    Also closes the JVM's standard error file, for a converter never closed before interpreter exit.
    """
    try:
        if process.stdin:
            process.stdin.close()
        process.wait(timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        process.kill()
        process.wait()
    finally:
        if process.stdout:
            process.stdout.close()
        if closed_port is not None:
            closed_port.close()
        if stderr is not None:
            stderr.close()


def checked_java(java_home: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
    """The ``java`` that may host the converter (Java 17 to 23) and its version line.

    Raises
    ------
    EnvironmentProblem
        When there is no working Java, or its version cannot trap ``System.exit``.
    """
    java = find_java(java_home)
    found = java_version_of(str(java)) if java else None
    if java is None or found is None:
        where = "JAVA_HOME" if (java_home or os.environ.get("JAVA_HOME")) else "PATH"
        raise EnvironmentProblem(
            f"No working Java on {where}: the warm PMML converter needs Java {MIN_JAVA}+. {JAVA_INSTALL_HINT}"
        )
    major, version_line = found
    if not MIN_JAVA <= major < FIRST_JAVA_WITHOUT_SECURITY_MANAGER:
        raise EnvironmentProblem(
            f"{java}: {version_line!r} is Java {major}; the warm PMML converter needs Java {MIN_JAVA} to "
            f"{FIRST_JAVA_WITHOUT_SECURITY_MANAGER - 1} (it traps System.exit with a SecurityManager). "
            f"{JAVA_INSTALL_HINT} Or convert with sklearn2pmml.sklearn2pmml(), one JVM per call."
        )
    return java, version_line


def guard_options(proxy_port: int) -> list[str]:
    """JVM options of a JVM that converts: the exit trap's SecurityManager allowed, every proxy on loopback.

    Belt and braces: the converter's SecurityManager already refuses off-machine connections; every proxy
    setting also points at a loopback port, so a request that got past it still stays here.
    """
    proxies = [f"-D{kind}.proxyHost=127.0.0.1" for kind in ("http", "https")]
    proxies += [f"-D{kind}.proxyPort={proxy_port}" for kind in ("http", "https")]
    proxies += ["-DsocksProxyHost=127.0.0.1", f"-DsocksProxyPort={proxy_port}"]
    return [*LEAN_JVM_OPTIONS, *crash_log_options(), "-Djava.security.manager=allow", *proxies]


def main_arguments(
    pkl_path: str | os.PathLike[str], pmml_path: str | os.PathLike[str], pmml_schema: str | None
) -> list[str]:
    """The arguments of sklearn2pmml's ``com.sklearn2pmml.Main`` for one conversion."""
    args = ["--pkl-input", os.path.abspath(pkl_path), "--pmml-output", os.path.abspath(pmml_path)]
    return args + (["--pmml-schema", pmml_schema] if pmml_schema else [])


class _NoReply(Exception):
    """The JVM closed its output (it died) or did not answer in time."""


class WarmPmmlConverter:
    """One long-lived JVM that converts sklearn2pmml pickles to PMML, request after request.

    The JVM starts on the first :meth:`convert` and restarts on the next call if it died. Requests are
    serialised by a lock, so one instance may be shared between threads. Use as a context manager, or
    call :meth:`close`; the JVM is also stopped at interpreter exit.

    Parameters
    ----------
    xmx : str, default "1g"
        The JVM's maximum heap (``-Xmx``).
    java_home : path-like, optional
        A Java installation directory; default ``$JAVA_HOME``, else ``java`` on PATH.
    cache_dir : path-like, optional
        Where the compiled server is cached; default ``$PARITY_CACHE_DIR`` or ``~/.cache/parity``.
    user_classpath : sequence of path-like, default ()
        Extra jars (custom converters), appended after sklearn2pmml's own as ``sklearn2pmml()`` does.
    proxy_port : int, optional
        The loopback port the JVM's HTTP/HTTPS/SOCKS proxy settings point to. By default, a port this
        object keeps bound but never listens on, so any connection through a proxy is refused locally.
    timeout_s : float, default 600
        How long one conversion may take before the JVM is stopped and the request reported failed.

    Raises
    ------
    EnvironmentProblem
        On first use, when Java is missing, too old or too new, or the server does not start.
    """

    def __init__(
        self,
        *,
        xmx: str = "1g",
        java_home: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        user_classpath: Sequence[str | os.PathLike[str]] = (),
        proxy_port: int | None = None,
        timeout_s: float = 600.0,
    ) -> None:
        self.xmx = xmx
        self.java_home = java_home
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.user_classpath = [str(path) for path in user_classpath]
        self.proxy_port = proxy_port
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._pending = b""
        self._finalizer: weakref.finalize | None = None

    def __enter__(self) -> WarmPmmlConverter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The JVM's process id, or None while none runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def convert(
        self,
        pkl_path: str | os.PathLike[str],
        pmml_path: str | os.PathLike[str],
        *,
        pmml_schema: str | None = None,
    ) -> ServerReply:
        """Convert one pickle (see :func:`dump_for_java`) to a PMML file.

        Parameters
        ----------
        pkl_path : path-like
            The joblib pickle of a fitted PMMLPipeline.
        pmml_path : path-like
            Where the PMML document goes (parent directories are created).
        pmml_schema : str, optional
            A PMML schema version to downgrade to, as ``sklearn2pmml(pmml_schema=...)``.

        Returns
        -------
        ServerReply
            ``ok=False`` with the converter's message in ``log`` when the conversion failed.

        Raises
        ------
        InvalidInputError
            When a path holds a tab or a line break (the request protocol cannot carry them).
        EnvironmentProblem
            When the JVM cannot be started.
        """
        args = main_arguments(pkl_path, pmml_path, pmml_schema)
        if any(char in arg for arg in args for char in "\t\r\n"):
            raise InvalidInputError(f"convert: paths must not hold tabs or line breaks, got {args[1::2]!r}.")
        with self._lock:
            start = time.monotonic()
            process = self._ensure_started()
            assert process.stdin is not None  # started with stdin=PIPE
            try:
                process.stdin.write(("\t".join(args) + "\n").encode("utf-8"))
                process.stdin.flush()
                line = self._read_line(process, deadline=time.monotonic() + self.timeout_s)
            except (_NoReply, OSError) as gone:
                self._stop()  # its state is unknown: the next call starts a fresh JVM
                return ServerReply(
                    False, None, f"no reply from the JVM: {gone}", (), time.monotonic() - start
                )
            return self._parse_reply(line, time.monotonic() - start)

    def convert_pipeline(self, pipeline: Any, pmml_path: str | os.PathLike[str]) -> ServerReply:
        """Dump ``pipeline`` with :func:`dump_for_java` to a temporary file and :meth:`convert` it."""
        with tempfile.TemporaryDirectory(prefix="parity-pkl-") as directory:
            return self.convert(dump_for_java(pipeline, directory), pmml_path)

    def start(self) -> None:
        """Start the JVM now rather than on the first conversion (e.g. while something else boots)."""
        with self._lock:
            self._ensure_started()

    def close(self) -> None:
        """Stop the JVM (a later :meth:`convert` starts a new one)."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._process, self._finalizer, self._pending = None, None, b""
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _ensure_started(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._stop()
        java, version_line = self._checked_java()
        classes = compile_server(java, version_line, self.cache_dir)
        port, closed_port = self.proxy_port, None
        if port is None:
            closed_port = socket.socket()  # bound, never listening: connections are refused at once
            closed_port.bind(("127.0.0.1", 0))
            port = closed_port.getsockname()[1]
        # Lives as long as the JVM (closed in _stop): a context manager cannot span calls.
        self._stderr = tempfile.TemporaryFile(prefix="parity-jvm-stderr-")  # noqa: SIM115
        self._process = subprocess.Popen(
            [str(java), *self._jvm_options(port), "-cp", self._classpath(classes), SERVER_CLASS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env={**os.environ, "SKLEARN2PMML_ENVIRONMENT": _sklearn2pmml_environment(version_line)},
            bufsize=0,
        )
        self._finalizer = weakref.finalize(self, _stop_process, self._process, closed_port, self._stderr)
        try:
            ready = self._read_line(self._process, deadline=time.monotonic() + JVM_START_TIMEOUT_S)
        except _NoReply as gone:
            self._stop()
            raise EnvironmentProblem(f"{SERVER_CLASS} did not start: {gone}") from None
        if ready != "READY":
            self._stop()
            raise EnvironmentProblem(f"{SERVER_CLASS} did not start: it said {ready!r} instead of READY.")
        return self._process

    def _checked_java(self) -> tuple[Path, str]:
        return checked_java(self.java_home)

    def _jvm_options(self, proxy_port: int) -> list[str]:
        return [f"-Xmx{self.xmx}", "-XX:TieredStopAtLevel=1", *guard_options(proxy_port)]

    def _classpath(self, classes: Path) -> str:
        return os.pathsep.join([*_package_classpath(), *self.user_classpath, str(classes)])

    def _read_line(self, process: subprocess.Popen[bytes], deadline: float) -> str:
        """Read one reply line, without blocking past ``deadline`` (a pipe read alone could hang)."""
        assert process.stdout is not None  # started with stdout=PIPE
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _NoReply("it did not answer in time and was stopped.")
            ready, _, _ = select.select([process.stdout], [], [], remaining)
            chunk = os.read(process.stdout.fileno(), 1 << 16) if ready else None
            if chunk == b"":
                process.wait()
                raise _NoReply(f"the JVM exited with code {process.returncode}:\n{self._stderr_text()}")
            self._pending += chunk or b""
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode("utf-8")

    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", errors="replace")[-4000:]

    @staticmethod
    def _parse_reply(line: str, seconds: float) -> ServerReply:
        status, exit_code, log, blocked = line.split("\t")
        return ServerReply(
            ok=status == "OK",
            exit_code=None if exit_code == "-" else int(exit_code),
            log=base64.b64decode(log).decode("utf-8", errors="replace"),
            blocked_connections=tuple(base64.b64decode(blocked).decode("utf-8").splitlines()),
            seconds=seconds,
        )


#: Heap of this host's engine JVM, which the converter, JPMML and PMML4S share (``PARITY_ENGINE_HEAP``).
ENGINE_HEAP = "1g"
_closed_port: socket.socket | None = None


def _engine_command() -> tuple[list[str], dict[str, str]]:
    global _closed_port
    java, version_line = checked_java()
    if _closed_port is None:  # bound, never listening, for the life of this process: proxies refused at once
        _closed_port = socket.socket()
        _closed_port.bind(("127.0.0.1", 0))
    heap = os.environ.get("PARITY_ENGINE_HEAP") or ENGINE_HEAP
    # The parallel collector, not the lean options' serial one: evaluation allocates a boxed value per input
    # and output cell, and with SerialGC a 100k-row logistic regression took 1.6x as long (1.9 s vs 3.0 s).
    swap, drop = {"-XX:+UseSerialGC": "-XX:+UseParallelGC"}, {"-Xms32m"}
    options = [f"-Xmx{heap}"]
    options += [swap.get(o, o) for o in guard_options(_closed_port.getsockname()[1]) if o not in drop]
    components = [name for name, component in COMPONENTS.items() if component.jars()]
    command = [str(java), *engine_arguments(components, options)]
    return command, {**os.environ, "SKLEARN2PMML_ENVIRONMENT": _sklearn2pmml_environment(version_line)}


def host_engine() -> Engine:
    """This host's PMML engine: one JVM for the whole process, hosting the converter, JPMML and PMML4S
    (each whose Python package is installed), started on first use."""
    return engine(("host",), "the PMML engine (this host)", _engine_command)


class EngineConverter:
    """sklearn2pmml's ``Main`` in this host's engine (:func:`host_engine`), with
    :class:`WarmPmmlConverter`'s interface; the process's converter (``shared_pmml_converter()``).

    Conversions run one at a time (the converter captures the JVM's output per request) while the engine
    evaluates other models' rows. A conversion that outlives ``timeout_s`` stops the engine; the next job
    starts a new one.

    Parameters
    ----------
    timeout_s : float, default 600
        How long one conversion may take.
    """

    def __init__(self, *, timeout_s: float = 600.0) -> None:
        self.timeout_s = timeout_s

    @property
    def pid(self) -> int | None:
        """The engine JVM's process id, or None while none runs."""
        return host_engine().pid

    def start(self) -> None:
        """Start the engine now rather than on the first conversion."""
        host_engine().start()

    def close(self) -> None:
        """Nothing: the engine serves the whole process and stops when it exits."""

    def convert(
        self,
        pkl_path: str | os.PathLike[str],
        pmml_path: str | os.PathLike[str],
        *,
        pmml_schema: str | None = None,
    ) -> ServerReply:
        """Convert one pickle (see :func:`dump_for_java`) to a PMML file; as :meth:`WarmPmmlConverter.convert`."""
        args = main_arguments(pkl_path, pmml_path, pmml_schema)
        for arg in args:
            check_field(arg)
        engine = host_engine()
        start = time.monotonic()
        engine.start()  # a JVM that cannot start is an EnvironmentProblem, as for WarmPmmlConverter
        try:
            fields = engine.call("convert.convert", args, self.timeout_s)
        except JobFailed as err:
            return ServerReply(
                False, None, f"the engine refused the job: {err}", (), time.monotonic() - start
            )
        except EnvironmentProblem as gone:
            return ServerReply(False, None, f"no reply from the JVM: {gone}", (), time.monotonic() - start)
        return WarmPmmlConverter._parse_reply("\t".join(fields), time.monotonic() - start)

    def convert_pipeline(self, pipeline: Any, pmml_path: str | os.PathLike[str]) -> ServerReply:
        """Dump ``pipeline`` with :func:`dump_for_java` to a temporary file and :meth:`convert` it."""
        with tempfile.TemporaryDirectory(prefix="parity-pkl-") as directory:
            return self.convert(dump_for_java(pipeline, directory), pmml_path)
