"""The PMML engine: one JVM on this host converts and evaluates, with JPMML and PMML4S giving what their Python
bridges give, bit for bit, while several threads use it at once."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

import parity.core.engine as engine_module
from parity.converters import convert_pmml, shared_pmml_converter
from parity.converters.pmml_server import host_engine
from parity.core.errors import InvalidInputError
from parity.core.warm import JobFailed
from parity.validators.runtimes.engine import EngineJpmmlRuntime, EnginePmml4sRuntime, pmml_runtimes
from parity.validators.runtimes.pmml import JpmmlRuntime, PypmmlRuntime
from tests.waiting import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Three real PMMLs: an integer-labelled classifier, a forest, a regressor."""
    folder = tmp_path_factory.mktemp("engine")
    X, y = load_iris(return_X_y=True, as_frame=True)
    Xw, yw = load_wine(return_X_y=True, as_frame=True)
    models = {
        "logreg": (LogisticRegression(max_iter=1000).fit(X, y), X),
        "forest": (RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0).fit(Xw, yw), Xw),
        "linear": (LinearRegression().fit(Xw, yw.astype(float)), Xw),
    }
    paths = {}
    for name, (model, rows) in models.items():
        conversion = convert_pmml(model, rows, folder / f"{name}.pmml", shared_pmml_converter())
        assert conversion.path is not None, conversion
        paths[name] = (conversion.path, rows)
    return paths


def test_one_jvm_converts_and_runs_both_engines(converted):
    path, X = converted["logreg"]
    pid = host_engine().pid
    assert pid is not None  # the conversions above started it
    EngineJpmmlRuntime().evaluate(path, X)
    EnginePmml4sRuntime().evaluate(path, X)
    assert EngineJpmmlRuntime().verify(path)[0]
    assert host_engine().pid == pid


@pytest.mark.parametrize("name", ["logreg", "forest", "linear"])
def test_engine_jpmml_gives_what_the_jpype_bridge_gives_bit_for_bit(converted, name):
    path, X = converted[name]
    mine, bridge = EngineJpmmlRuntime().evaluate(path, X), JpmmlRuntime().evaluate(path, X)
    assert list(mine.columns) == list(bridge.columns)
    for column in mine.columns:
        want = bridge[column].to_numpy()
        if want.dtype.kind == "f":
            assert np.array_equal(mine[column].to_numpy(np.float64), want, equal_nan=True), column
        else:
            assert mine[column].tolist() == want.tolist(), column


@pytest.mark.parametrize("name", ["logreg", "forest", "linear"])
def test_engine_pmml4s_gives_what_pypmml_gives_bit_for_bit(converted, name):
    path, X = converted[name]
    mine, bridge = EnginePmml4sRuntime().evaluate(path, X), PypmmlRuntime().evaluate(path, X)
    assert list(mine.columns) == list(bridge.columns)
    for column in mine.columns:
        assert np.array_equal(mine[column].to_numpy(np.float64), bridge[column].to_numpy(np.float64)), column


def test_integer_labels_come_back_as_integers(converted):
    path, X = converted["logreg"]
    labels = EngineJpmmlRuntime().evaluate(path, X)["y"]
    assert labels.dtype == np.int64
    assert set(labels) <= {0, 1, 2}


def test_chunks_and_threads_do_not_change_a_single_bit(converted, monkeypatch):
    path, X = converted["forest"]
    many = pd.concat([X] * 3, ignore_index=True)
    whole = EngineJpmmlRuntime(threads=1).evaluate(path, many)
    monkeypatch.setattr(engine_module, "CHUNK_ROWS", 100)
    chunked = EngineJpmmlRuntime(threads=2).evaluate(path, many)
    pd.testing.assert_frame_equal(whole, chunked, check_exact=True)
    assert list(chunked.index) == list(many.index)


def test_several_threads_share_the_engine(converted):
    jobs = [
        (runtime, *converted[name])
        for name in converted
        for runtime in (EngineJpmmlRuntime(), EnginePmml4sRuntime())
    ]
    alone = [runtime.evaluate(path, X) for runtime, path, X in jobs]
    together: list[pd.DataFrame | None] = [None] * len(jobs)

    def run(i: int) -> None:
        runtime, path, X = jobs[i]
        together[i] = runtime.evaluate(path, X)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for expected, got in zip(alone, together, strict=True):
        pd.testing.assert_frame_equal(expected, got, check_exact=True)


def test_a_row_jpmml_rejects_is_named_by_its_index(tmp_path):
    X = pd.DataFrame({"colour": ["red", "blue", "red", "green"] * 5, "size": np.arange(20.0)})
    y = (X["size"] > 9).astype(int)
    model = make_pipeline(OneHotEncoder(), LogisticRegression()).fit(X, y)
    conversion = convert_pmml(model, X, tmp_path / "onehot.pmml", shared_pmml_converter())
    unseen = pd.DataFrame({"colour": ["red", "purple"], "size": [1.0, 2.0]}, index=[10, 11])
    with pytest.raises(
        InvalidInputError, match=r"could not evaluate 1 of 2 rows; first at index 11: .*purple"
    ):
        EngineJpmmlRuntime().evaluate(conversion.path, unseen)


def test_text_beyond_the_basic_plane_travels_to_both_engines(tmp_path):
    X = pd.DataFrame({"mood": ["\U0001f642", "red", "\U0001f642", "日本"] * 6, "size": np.arange(24.0)})
    y = np.where(X["mood"] == "\U0001f642", "yes \U0001f44d", "no")
    model = make_pipeline(OneHotEncoder(), LogisticRegression()).fit(X, y)
    conversion = convert_pmml(model, X, tmp_path / "moods.pmml", shared_pmml_converter())
    mine, bridge = (
        EngineJpmmlRuntime().evaluate(conversion.path, X),
        JpmmlRuntime().evaluate(conversion.path, X),
    )
    assert mine["y"].tolist() == bridge["y"].tolist() == list(model.predict(X))
    pd.testing.assert_frame_equal(
        EnginePmml4sRuntime().evaluate(conversion.path, X),
        PypmmlRuntime().evaluate(conversion.path, X),
        check_exact=True,
    )


def test_a_file_jpmml_cannot_load_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken.pmml"
    broken.write_text("<PMML><nothing/>")
    with pytest.raises(InvalidInputError, match=r"broken.pmml: jpmml_evaluator .*cannot load or evaluate"):
        EngineJpmmlRuntime().evaluate(broken, pd.DataFrame({"x": [1.0]}))


def test_pmml4s_refuses_infinite_inputs_as_pypmml_does(converted):
    path, X = converted["logreg"]
    bad = X.iloc[:2].copy()
    bad.iloc[0, 0] = np.inf
    with pytest.raises(InvalidInputError, match="infinite"):
        EnginePmml4sRuntime().evaluate(path, bad)


def test_an_unknown_job_names_the_components():
    with pytest.raises(
        JobFailed, match=r"no component for nothing\.here; this engine has convert, jpmml, pmml4s"
    ):
        host_engine().call("nothing.here", [])


def test_a_killed_engine_is_replaced_by_the_next_job(converted):
    path, X = converted["linear"]
    before = EngineJpmmlRuntime().evaluate(path, X)
    pid = host_engine().pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: host_engine().pid != pid, 120, "the killed engine to be reaped")
    again = EngineJpmmlRuntime().evaluate(path, X)
    pd.testing.assert_frame_equal(before, again, check_exact=True)
    assert host_engine().pid not in (None, pid)


def test_the_bridges_are_one_variable_away(monkeypatch):
    assert [type(r) for r in pmml_runtimes()] == [EngineJpmmlRuntime, EnginePmml4sRuntime]
    monkeypatch.setenv("PARITY_PMML_BRIDGES", "1")
    assert [type(r) for r in pmml_runtimes()] == [JpmmlRuntime, PypmmlRuntime]
    monkeypatch.setenv("PARITY_PMML_BRIDGES", "yes")
    with pytest.raises(Exception, match="expected 1"):
        pmml_runtimes()
