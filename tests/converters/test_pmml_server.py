"""The warm sklearn2pmml JVM: real models, a real JVM, real sockets; no mocks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.semi_supervised import LabelSpreading
from sklearn.tree import DecisionTreeClassifier
from sklearn2pmml.pipeline import PMMLPipeline
from sklearn2pmml.resources import _package_classpath

from parity.converters.pmml_server import (
    SKLEARN2PMML_MAX_AGE_DAYS,
    WarmPmmlConverter,
    compile_server,
    dump_for_java,
    sklearn2pmml_build_date,
    sklearn2pmml_expiry_date,
)
from parity.core.errors import EnvironmentProblem, InvalidInputError
from parity.core.java import find_java, java_version

#: Bounds on the loopback listener's thread (each ends as soon as its event happens): a JVM on a machine at
#: load 10 can take many seconds between connecting and sending its first bytes; the old 5 s read window
#: would end the listener's thread and lose every later connection.
LISTENER_READ_DEADLINE_S = 120
LISTENER_STOP_DEADLINE_S = 120
UNSUPPORTED = "is not a supported Estimator"  # JPMML-SkLearn's words for an estimator it cannot convert


@pytest.fixture(scope="module")
def iris() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_iris(return_X_y=True, as_frame=True)
    X.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]  # names PMML can carry
    return X, y


def _fit(estimator: object, iris: tuple[pd.DataFrame, pd.Series]) -> PMMLPipeline:
    return PMMLPipeline([("estimator", estimator)]).fit(*iris)


@pytest.fixture(scope="module")
def pickles(
    iris: tuple[pd.DataFrame, pd.Series], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """One pickle per case, written the way sklearn2pmml writes them."""
    directory = tmp_path_factory.mktemp("pickles")
    models = {
        "logreg": LogisticRegression(max_iter=1000),
        "tree": DecisionTreeClassifier(max_depth=3, random_state=0),
        "unsupported": LabelSpreading(),
    }
    return {name: dump_for_java(_fit(model, iris), directory) for name, model in models.items()}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One compile of the server for the whole module."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def converter(cache_dir: Path) -> WarmPmmlConverter:
    with WarmPmmlConverter(cache_dir=cache_dir) as warm:
        yield warm


@dataclass
class Listener:
    """A loopback TCP listener that records the first bytes of every connection it receives."""

    server: socket.socket
    received: list[bytes] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.getsockname()[1]

    def serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return  # shut down by the fixture
            with connection:
                connection.settimeout(LISTENER_READ_DEADLINE_S)
                self.received.append(connection.recv(4096))


@pytest.fixture
def listener() -> Listener:
    with socket.create_server(("127.0.0.1", 0)) as server:
        recorder = Listener(server)
        thread = threading.Thread(target=recorder.serve, daemon=True)
        thread.start()
        yield recorder
        server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not on Linux
        thread.join(timeout=LISTENER_STOP_DEADLINE_S)
        assert not thread.is_alive(), "the listener thread did not stop when its socket was shut down"


@pytest.mark.slow
def test_two_models_share_one_warm_jvm(converter, pickles, tmp_path):
    first = converter.convert(pickles["logreg"], tmp_path / "logreg.pmml")
    pid = converter.pid
    second = converter.convert(pickles["tree"], tmp_path / "tree.pmml")

    assert first.ok and second.ok, first.log + second.log
    assert converter.pid == pid is not None
    assert "<RegressionModel" in (tmp_path / "logreg.pmml").read_text()
    assert "<TreeModel" in (tmp_path / "tree.pmml").read_text()
    assert "Generated PMML file" in second.log  # java.util.logging output is captured


@pytest.mark.slow
def test_unsupported_estimator_fails_and_the_jvm_survives(converter, pickles, tmp_path):
    failed = converter.convert(pickles["unsupported"], tmp_path / "unsupported.pmml")
    pid = converter.pid
    after = converter.convert(pickles["logreg"], tmp_path / "logreg.pmml")

    assert not failed.ok
    assert UNSUPPORTED in failed.log and "LabelSpreading" in failed.log
    assert not (tmp_path / "unsupported.pmml").exists()
    assert after.ok, after.log
    assert converter.pid == pid


@pytest.mark.slow
def test_system_exit_is_trapped_with_its_code(converter, pickles, tmp_path):
    # A missing input takes Main's FileNotFoundException path: System.exit(-1), no incident report.
    missing = converter.convert(tmp_path / "missing.pkl.z", tmp_path / "missing.pmml")
    pid = converter.pid
    after = converter.convert(pickles["logreg"], tmp_path / "logreg.pmml")

    assert (missing.ok, missing.exit_code, missing.blocked_connections) == (False, -1, ())
    assert "FileNotFoundException" in missing.log
    assert after.ok and converter.pid == pid


@pytest.mark.slow
def test_failed_conversion_sends_nothing_off_the_machine(cache_dir, pickles, listener, tmp_path):
    # The JVM's proxies point at our listener: a report that got past the guard would arrive here.
    with WarmPmmlConverter(cache_dir=cache_dir, proxy_port=listener.port) as warm:
        failed = warm.convert(pickles["unsupported"], tmp_path / "unsupported.pmml")

    assert not failed.ok and UNSUPPORTED in failed.log
    assert failed.blocked_connections, "the jar tries to post an incident report; it must be refused"
    assert all(attempt.startswith("https://") for attempt in failed.blocked_connections)
    assert listener.received == []


@pytest.mark.slow
def test_plain_sklearn2pmml_main_does_try_to_post_an_incident(pickles, listener, tmp_path):
    # The control for the test above: without the server's guard, Main's failure path connects out.
    java = find_java()
    port = listener.port
    command = [str(java), "-Dhttps.proxyHost=127.0.0.1", f"-Dhttps.proxyPort={port}"]
    command += ["-cp", os.pathsep.join(_package_classpath()), "com.sklearn2pmml.Main"]
    command += ["--pkl-input", str(pickles["unsupported"]), "--pmml-output", str(tmp_path / "x.pmml")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode != 0 and UNSUPPORTED in done.stderr
    assert any(data.startswith(b"CONNECT ") for data in listener.received), listener.received


@pytest.mark.slow
def test_dead_jvm_is_restarted_by_the_next_call(cache_dir, pickles, tmp_path):
    with WarmPmmlConverter(cache_dir=cache_dir) as warm:
        assert warm.convert(pickles["logreg"], tmp_path / "a.pmml").ok
        first_pid = warm.pid
        os.kill(first_pid, signal.SIGKILL)
        os.waitpid(first_pid, 0)
        again = warm.convert(pickles["logreg"], tmp_path / "b.pmml")

        assert again.ok, again.log
        assert warm.pid not in (None, first_pid)
    assert warm.pid is None


@pytest.mark.slow
def test_two_threads_share_one_converter(converter, pickles, tmp_path):
    jobs = [(pickles[name], tmp_path / f"{name}-{i}.pmml") for i in range(4) for name in ("logreg", "tree")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        replies = list(pool.map(lambda job: converter.convert(*job), jobs))

    assert all(reply.ok for reply in replies), [reply.log for reply in replies if not reply.ok]


@pytest.mark.slow
def test_pmml_schema_is_passed_through(converter, pickles, tmp_path):
    reply = converter.convert(pickles["logreg"], tmp_path / "old.pmml", pmml_schema="4.3")

    assert reply.ok, reply.log
    assert 'version="4.3"' in (tmp_path / "old.pmml").read_text()


@pytest.mark.slow
def test_convert_pipeline_dumps_and_converts(converter, iris, tmp_path):
    reply = converter.convert_pipeline(_fit(LogisticRegression(max_iter=1000), iris), tmp_path / "x.pmml")

    assert reply.ok, reply.log


@pytest.mark.slow
def test_compiled_server_is_cached_under_parity_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("PARITY_CACHE_DIR", str(tmp_path))
    java = find_java()
    _, version_line = java_version()

    classes = compile_server(java, version_line)

    assert classes.parent == tmp_path / "java"
    assert (classes / "ParityConverterServer.class").is_file()
    assert compile_server(java, version_line) == classes


def test_missing_java_raises_environment_problem(monkeypatch, tmp_path, pickles):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no java on PATH
    monkeypatch.delenv("JAVA_HOME", raising=False)

    assert java_version() is None
    with pytest.raises(
        EnvironmentProblem, match=r"needs Java 17\+.*apt-get install -y openjdk-17-jre-headless"
    ):
        WarmPmmlConverter(cache_dir=tmp_path).convert(pickles["logreg"], tmp_path / "x.pmml")


def test_java_home_without_java_raises_environment_problem(monkeypatch, tmp_path, pickles):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))

    with pytest.raises(EnvironmentProblem, match=r"No working Java on JAVA_HOME.*set JAVA_HOME"):
        WarmPmmlConverter(cache_dir=tmp_path).convert(pickles["logreg"], tmp_path / "x.pmml")


def test_java_version_reports_major_and_version_line():
    major, line = java_version()

    assert major >= 17
    assert f'version "{major}' in line


def test_paths_with_tabs_are_refused_before_any_jvm_starts(tmp_path):
    warm = WarmPmmlConverter(cache_dir=tmp_path)

    with pytest.raises(InvalidInputError, match="tabs or line breaks"):
        warm.convert(tmp_path / "a\tb.pkl.z", tmp_path / "x.pmml")
    assert warm.pid is None


def test_dump_for_java_refuses_non_estimators(tmp_path):
    with pytest.raises(InvalidInputError, match="expected a fitted scikit-learn estimator"):
        dump_for_java({"not": "a model"}, tmp_path)


def test_dump_for_java_leaves_the_pipeline_untouched(iris, tmp_path):
    pipeline = _fit(LogisticRegression(max_iter=1000), iris)

    path = dump_for_java(pipeline, tmp_path)

    assert path.parent == tmp_path and path.name.endswith(".pkl.z")
    assert not hasattr(pipeline.steps[0][1], "_sklearn_tags")  # sklearn2pmml's escaping went to a copy


def test_build_and_expiry_dates_are_sensible():
    built = sklearn2pmml_build_date()

    assert date(2020, 1, 1) < built <= date.today()
    assert sklearn2pmml_expiry_date() - built == timedelta(days=SKLEARN2PMML_MAX_AGE_DAYS)


@pytest.mark.slow
def test_a_request_past_its_timeout_stops_the_jvm(cache_dir, pickles, tmp_path):
    with WarmPmmlConverter(cache_dir=cache_dir, timeout_s=1e-6) as warm:
        late = warm.convert(pickles["logreg"], tmp_path / "late.pmml")
        assert (late.ok, late.exit_code) == (False, None)
        assert "did not answer in time" in late.log
        assert warm.pid is None
        warm.timeout_s = 120
        assert warm.convert(pickles["logreg"], tmp_path / "again.pmml").ok


@pytest.mark.parametrize("version", ["11.0.22", "24.0.1"], ids=["java-11", "java-24"])
def test_java_outside_17_to_23_raises_environment_problem(version, pickles, tmp_path):
    # A stand-in JAVA_HOME whose java only answers -version, as that Java would.
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2025-01-21' >&2\n")
    java.chmod(0o755)

    with pytest.raises(EnvironmentProblem, match=rf"Java {version.split('.')[0]}; .*needs Java 17 to 23"):
        WarmPmmlConverter(java_home=tmp_path).convert(pickles["logreg"], tmp_path / "x.pmml")
