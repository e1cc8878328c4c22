"""Parity's PMML engine: one long-lived JVM per target hosting the sklearn2pmml converter, JPMML and PMML4S.

``java/ParityEngine.java`` loads each *component* (:data:`COMPONENTS`) in a class loader of its own — the
converter's jars and JPMML-Evaluator's pin different versions of the same libraries — and serves jobs over
:mod:`parity.core.warm`'s line protocol, several at once. Rows go to it and come back in files of the binary
column format (:mod:`parity.core.columns`: doubles bit for bit), in chunks, and it evaluates each chunk with
several threads. No Python bridge (JPype, py4j) is in the way: on 100k rows JPMML's own evaluation is 3-15x
faster than through them (FACTS.md).

On this host one engine serves the whole process (converter, JPMML and PMML4S in one JVM, not three); an
emulated target gets one with the JPMML component, started under its emulator
(:mod:`parity.validators.targets.pmml_runner`).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .columns import read_output, write_columns
from .errors import EnvironmentProblem
from .java import cache_root, compile_java, find_java, java_version
from .warm import WarmProcess, warm_process

JAVA_DIR = Path(__file__).resolve().with_name("java")
ENGINE_SOURCE = JAVA_DIR / "ParityEngine.java"
#: Seconds one job (a conversion, a chunk of rows) may take before the engine is stopped and restarted.
JOB_TIMEOUT_S = 1800.0
#: Rows per evaluation job: bounded memory on both sides (a 100-tree forest on 100k rows at once ran out of
#: a 3 GB heap; in 10k-row chunks it needed 754 MB), and per-job costs that stay small.
CHUNK_ROWS = 20_000


def _jars_of_package(package: str, *folders: str) -> list[str]:
    """The ``.jar`` files in ``folders`` of ``package`` (found without importing it), sorted."""
    spec = importlib.util.find_spec(package)
    roots = list(spec.submodule_search_locations or []) if spec else []
    return sorted(
        str(jar) for root in roots for folder in folders for jar in Path(root, folder).glob("*.jar")
    )


@dataclass(frozen=True)
class Component:
    """One part of the engine: a Java class with ``job(verb, args)`` and the libraries it runs with.

    Attributes
    ----------
    name : str
        The prefix of its jobs' verbs (``jpmml.evaluate``).
    source : Path
        The class's source, compiled on this host against ``jars()`` and the engine's classes.
    jars : callable
        Its libraries' jar files (from the Python package that ships them).
    package : str
        The Python package that ships the jars, named when they are missing.
    """

    name: str
    source: Path
    jars: Callable[[], list[str]]
    package: str

    def classpath(self, engine_classes: Path, java: Path, version_line: str) -> str:
        """Its class directory (compiled once per source and Java version) and its jars, as a class path."""
        jars = self.jars()
        if not jars:
            raise EnvironmentProblem(
                f"the PMML engine's {self.name} component needs the jars of the {self.package} package and "
                f"finds none: pip install {self.package} (the version in requirements.lock)."
            )
        classes = compile_java(self.source, [*jars, str(engine_classes)], java, version_line, cache_root())
        return os.pathsep.join([str(classes), *jars])


def _sklearn2pmml_jars() -> list[str]:
    from sklearn2pmml.resources import _package_classpath

    return list(_package_classpath())


#: The engine's components, by name.
COMPONENTS: dict[str, Component] = {
    component.name: component
    for component in (
        Component("convert", JAVA_DIR / "ParityConverterServer.java", _sklearn2pmml_jars, "sklearn2pmml"),
        Component(
            "jpmml",
            JAVA_DIR / "PmmlRunner.java",
            lambda: _jars_of_package("jpmml_evaluator", "resources", "dependencies"),
            "jpmml_evaluator",
        ),
        Component(
            "pmml4s", JAVA_DIR / "Pmml4sRunner.java", lambda: _jars_of_package("pypmml", "jars"), "pypmml"
        ),
    )
}


def host_java() -> tuple[Path, str]:
    """This host's ``java`` and its version line; the engine's classes are compiled with it.

    Raises
    ------
    EnvironmentProblem
        When there is no Java 17+ here.
    """
    java, version = find_java(), java_version()
    if java is None or version is None or version[0] < 17:
        raise EnvironmentProblem(
            "the PMML engine needs Java 17+ on this host: apt-get install -y openjdk-17-jre-headless, or set "
            "JAVA_HOME."
        )
    return java, version[1]


def engine_arguments(components: Sequence[str], jvm_options: Sequence[str]) -> list[str]:
    """The ``java`` arguments (after the executable) of an engine hosting ``components``.

    Parameters
    ----------
    components : sequence of str
        Names in :data:`COMPONENTS`.
    jvm_options : sequence of str
        JVM options, before the class path.
    """
    java, version_line = host_java()
    engine_classes = compile_java(ENGINE_SOURCE, [], java, version_line, cache_root())
    parts: list[str] = []
    for name in components:
        component = COMPONENTS[name]
        parts += [
            "--component",
            name,
            component.source.stem,
            component.classpath(engine_classes, java, version_line),
        ]
    return [*jvm_options, "-cp", str(engine_classes), ENGINE_SOURCE.stem, *parts]


class Engine:
    """A client of one engine process (thread-safe; jobs of several threads run at once in the JVM).

    Parameters
    ----------
    process : WarmProcess
        The engine's process (see :func:`engine`).
    """

    def __init__(self, process: WarmProcess) -> None:
        self.process = process

    @property
    def pid(self) -> int | None:
        """The JVM's process id while it runs."""
        return self.process.pid

    def start(self) -> None:
        """Start the JVM now rather than on the first job."""
        self.process.start()

    def call(self, verb: str, args: Sequence[str], timeout_s: float = JOB_TIMEOUT_S) -> list[str]:
        """Run one job (``component.verb``); see :meth:`parity.core.warm.WarmProcess.call`."""
        return self.process.call(verb, args, timeout_s)

    def call_again_if_lost(
        self, verb: str, args: Sequence[str], timeout_s: float = JOB_TIMEOUT_S
    ) -> list[str]:
        """:meth:`call` for a job that only reads its inputs (an evaluation, a replay): when the engine died
        under it — killed for another caller's job that outlived its deadline, or out of memory — it runs
        once more in a fresh engine, so that one model's trouble does not fail another's."""
        try:
            return self.call(verb, args, timeout_s)
        except EnvironmentProblem:
            return self.call(verb, args, timeout_s)

    def on_columns(
        self, verb: str, pmml: Path, X: pd.DataFrame, extra: Sequence[str] = ()
    ) -> Iterator[tuple[pd.DataFrame, list[str], dict]]:
        """Run ``verb`` on ``pmml`` for each chunk of :data:`CHUNK_ROWS` rows of ``X``.

        Yields
        ------
        tuple of (DataFrame, list of str, dict)
            The chunk's output columns (index 0..n-1), the job's reply fields and the ``where`` it wrote.
        """
        with _scratch() as folder:
            given, made = folder / "in.bin", folder / "out.bin"
            for start in range(0, max(len(X), 1), CHUNK_ROWS):
                write_columns(given, X.iloc[start : start + CHUNK_ROWS])
                reply = self.call_again_if_lost(verb, [str(pmml.resolve()), str(given), str(made), *extra])
                frame, where = read_output(made)
                yield frame, reply, where


@contextmanager
def _scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="parity-engine-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def engine(
    key: tuple, name: str, make_command: Callable[[], tuple[list[str], dict[str, str] | None]]
) -> Engine:
    """The engine of ``key`` (one per target), started on first use and kept for the life of this process.

    Parameters
    ----------
    key : tuple
        Identifies the target and its settings.
    name : str
        What it is, for messages.
    make_command : callable
        Returns the command line and environment, called once, when the engine is first needed.
    """

    def make() -> WarmProcess:
        command, env = make_command()
        return WarmProcess(name, command, env)

    return Engine(warm_process(("engine", *key), make))


__all__ = ["CHUNK_ROWS", "COMPONENTS", "Component", "Engine", "engine", "engine_arguments", "host_java"]
