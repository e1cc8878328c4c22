"""The PMML runtimes (pypmml, jpmml_evaluator) on small real models converted with sklearn2pmml.

Models are converted once per session (each ``sklearn2pmml()`` call starts its own JVM, about 1-2 s); the
runtimes' JVMs start once per process, which the tests check too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.preprocessing import OneHotEncoder

from parity.core.errors import InvalidInputError
from parity.core.java import LEAN_JVM_OPTIONS
from parity.validators.runtimes.pmml import JpmmlRuntime, PypmmlRuntime, verification_rows

REPO = Path(__file__).resolve().parents[2]
# PMML keeps doubles: FACTS measured both runtimes within 1e-12 of scikit-learn on every model.
PMML_ATOL = 1e-9
# Two independent PMML engines on the same double-precision model.
ENGINES_ATOL = 1e-12
RUNTIME_CLASSES = [JpmmlRuntime, PypmmlRuntime]


@dataclass(frozen=True)
class Converted:
    """A fitted PMMLPipeline, its PMML file and rows to evaluate."""

    pipeline: Any
    path: Path
    X: pd.DataFrame


def _convert(pipeline: Any, X: pd.DataFrame, y: pd.Series, path: Path, *, verify: bool) -> Converted:
    from sklearn2pmml import sklearn2pmml

    pipeline.fit(X, y)
    if verify:
        pipeline.verify(X.sample(20, random_state=0))
    sklearn2pmml(pipeline, str(path))
    return Converted(pipeline, path, X)


def _iris() -> tuple[pd.DataFrame, pd.Series]:
    data = load_iris(as_frame=True)
    X = data.data.set_axis(["sepal_length", "sepal_width", "petal_length", "petal_width"], axis=1)
    return X, pd.Series(data.target_names[data.target], name="species")


def _colors(n: int = 300) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"color": rng.choice(["red", "green", "blue"], n), "x": rng.normal(size=n)})
    X.loc[rng.random(n) < 0.2, "x"] = np.nan
    y = 2.0 * X["color"].eq("red") + X["x"].fillna(0.0) + rng.normal(scale=0.1, size=n)
    return X, y.rename("y")


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Converted]:
    from sklearn2pmml.pipeline import PMMLPipeline

    out = tmp_path_factory.mktemp("pmml")
    X_iris, y_iris = _iris()
    X_diabetes, y_diabetes = load_diabetes(return_X_y=True, as_frame=True)
    X_colors, y_colors = _colors()
    imputed = ColumnTransformer([("onehot", OneHotEncoder(), ["color"]), ("impute", SimpleImputer(), ["x"])])
    return {
        "logreg": _convert(
            PMMLPipeline([("clf", LogisticRegression(max_iter=1000))]),
            X_iris,
            y_iris,
            out / "logreg.pmml",
            verify=True,
        ),
        "logreg_int": _convert(
            PMMLPipeline([("clf", LogisticRegression(max_iter=1000))]),
            X_iris,
            pd.Series(load_iris().target, name="y"),
            out / "logreg_int.pmml",
            verify=False,
        ),
        "gbr": _convert(
            PMMLPipeline([("reg", GradientBoostingRegressor(random_state=0))]),
            X_diabetes,
            y_diabetes.rename("y"),
            out / "gbr.pmml",
            verify=True,
        ),
        "columns": _convert(
            PMMLPipeline([("ct", imputed), ("reg", LinearRegression())]),
            X_colors,
            y_colors,
            out / "columns.pmml",
            verify=False,
        ),
    }


@pytest.fixture(scope="module")
def runtimes() -> dict[str, Any]:
    return {cls.name: cls() for cls in RUNTIME_CLASSES}


def _regression_column(runtime_name: str) -> str:
    return {"jpmml_evaluator": "y", "pypmml": "predicted_y"}[runtime_name]


# --- no JVM ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", RUNTIME_CLASSES, ids=lambda cls: cls.name)
def test_runtime_identity(cls: type) -> None:
    runtime = cls()
    assert runtime.format == "pmml"
    assert runtime.name in {"jpmml_evaluator", "pypmml"}
    assert runtime.jvm_options == ("-Xmx512m", *LEAN_JVM_OPTIONS)
    assert runtime.chunk_rows == 10_000


@pytest.mark.parametrize("cls", RUNTIME_CLASSES, ids=lambda cls: cls.name)
@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"chunk_rows": 0}, "chunk_rows must be a positive int"),
        ({"cache_size": -1}, "cache_size must be a positive int"),
        ({"max_heap": "lots"}, "max_heap must look like '512m'"),
        ({"max_heap": "5²m"}, "max_heap must look like '512m'"),  # str.isdigit() takes '²'; java does not
    ],
    ids=["chunk_rows", "cache_size", "max_heap", "max_heap-superscript"],
)
def test_bad_settings_are_refused(cls: type, settings: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        cls(**settings)


@pytest.mark.parametrize("cls", RUNTIME_CLASSES, ids=lambda cls: cls.name)
def test_missing_file_is_refused(cls: type, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no such PMML file"):
        cls().evaluate(tmp_path / "absent.pmml", pd.DataFrame({"x": [1.0]}))


@pytest.mark.parametrize("cls", RUNTIME_CLASSES, ids=lambda cls: cls.name)
def test_non_frame_input_is_refused(cls: type, tmp_path: Path) -> None:
    path = tmp_path / "model.pmml"
    path.write_text("<PMML/>")
    with pytest.raises(InvalidInputError, match=r"X must be a pandas DataFrame.*got ndarray"):
        cls().evaluate(path, np.zeros((2, 2)))


def test_pypmml_unavailable_without_java(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "")
    assert re.search(
        r"needs a `java` executable.*openjdk-17-jre-headless", PypmmlRuntime().unavailable_reason() or ""
    )


def test_jpmml_unavailable_without_java(monkeypatch: pytest.MonkeyPatch) -> None:
    import jpype

    def no_jvm() -> str:
        raise jpype.JVMNotFoundException("No JVM shared library file (libjvm.so) found.")

    monkeypatch.setattr(jpype, "isJVMStarted", lambda: False)
    monkeypatch.setattr(jpype, "getDefaultJVMPath", no_jvm)
    assert re.search(r"no Java runtime.*openjdk-17-jre-headless", JpmmlRuntime().unavailable_reason() or "")


@pytest.mark.parametrize("cls", RUNTIME_CLASSES, ids=lambda cls: cls.name)
def test_available_here(cls: type) -> None:
    assert cls().unavailable_reason() is None


def test_verification_rows_counts_only_the_top_level_table(tmp_path: Path) -> None:
    path = tmp_path / "nested.pmml"
    path.write_text(
        '<PMML xmlns="http://www.dmg.org/PMML-4_4"><MiningModel><Segmentation><Segment><TreeModel>'
        "<ModelVerification><InlineTable><row/></InlineTable></ModelVerification>"
        "</TreeModel></Segment></Segmentation>"
        "<ModelVerification><InlineTable><row/><row/><row/></InlineTable></ModelVerification>"
        "</MiningModel></PMML>"
    )
    assert verification_rows(path) == 3
    path.write_text('<PMML xmlns="http://www.dmg.org/PMML-4_4"><TreeModel/></PMML>')
    assert verification_rows(path) is None
    path.write_text("<PMML>")
    with pytest.raises(InvalidInputError, match="not well-formed XML"):
        verification_rows(path)


# --- JVM ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["jpmml_evaluator", "pypmml"])
def test_classifier_probabilities_match_sklearn(name: str, runtimes: dict, models: dict) -> None:
    model = models["logreg"]
    out = runtimes[name].evaluate(model.path, model.X)
    columns = [f"probability({label})" for label in model.pipeline.classes_]
    expected = model.pipeline.predict_proba(model.X)
    np.testing.assert_allclose(out[columns].to_numpy(dtype=float), expected, rtol=0, atol=PMML_ATOL)
    assert out.index.equals(model.X.index)


@pytest.mark.slow
def test_jpmml_labels_match_sklearn(runtimes: dict, models: dict) -> None:
    jpmml, pypmml = runtimes["jpmml_evaluator"], runtimes["pypmml"]
    strings, ints = models["logreg"], models["logreg_int"]
    labels = jpmml.evaluate(strings.path, strings.X)["species"]
    assert labels.tolist() == strings.pipeline.predict(strings.X).tolist()
    assert all(isinstance(label, str) for label in labels)
    int_labels = jpmml.evaluate(ints.path, ints.X)["y"]
    assert int_labels.dtype == np.int64
    assert int_labels.tolist() == ints.pipeline.predict(ints.X).tolist()
    # pypmml gives probabilities only, named after the integer classes.
    pypmml_columns = list(pypmml.evaluate(ints.path, ints.X).columns)
    assert pypmml_columns == ["probability(0)", "probability(1)", "probability(2)"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["jpmml_evaluator", "pypmml"])
def test_regressor_matches_sklearn(name: str, runtimes: dict, models: dict) -> None:
    model = models["gbr"]
    out = runtimes[name].evaluate(model.path, model.X)
    assert list(out.columns) == [_regression_column(name)]
    np.testing.assert_allclose(out.iloc[:, 0], model.pipeline.predict(model.X), rtol=0, atol=PMML_ATOL)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["jpmml_evaluator", "pypmml"])
def test_column_transformer_with_nan_matches_sklearn(name: str, runtimes: dict, models: dict) -> None:
    model = models["columns"]
    assert model.X["x"].isna().sum() > 20
    out = runtimes[name].evaluate(model.path, model.X)
    np.testing.assert_allclose(
        out[_regression_column(name)], model.pipeline.predict(model.X), rtol=0, atol=PMML_ATOL
    )


@pytest.mark.slow
def test_missing_strings_are_missing_values_in_both_runtimes(runtimes: dict, models: dict) -> None:
    model = models["columns"]
    X = model.X.head(6).copy()
    X.loc[[0, 1], "color"] = None
    X.loc[2, "x"] = None
    jpmml = runtimes["jpmml_evaluator"].evaluate(model.path, X)["y"]
    pypmml = runtimes["pypmml"].evaluate(model.path, X)["predicted_y"]
    assert jpmml.notna().all()
    np.testing.assert_allclose(jpmml, pypmml, rtol=0, atol=ENGINES_ATOL)


@pytest.mark.slow
def test_unseen_category_fails_in_jpmml_and_is_missing_in_pypmml(runtimes: dict, models: dict) -> None:
    model = models["columns"]
    X = model.X.head(4).copy()
    X.loc[2, "color"] = "purple"
    with pytest.raises(InvalidInputError, match=r'1 of 4 rows.*index 2.*invalid value "purple"'):
        runtimes["jpmml_evaluator"].evaluate(model.path, X)
    out = runtimes["pypmml"].evaluate(model.path, X)["predicted_y"]
    assert out.isna().tolist() == [False, False, True, False]


@pytest.mark.slow
@pytest.mark.parametrize("cls", RUNTIME_CLASSES, ids=lambda cls: cls.name)
@pytest.mark.parametrize("model_name", ["logreg", "columns"])
def test_chunks_give_the_same_result_as_one_call(cls: type, model_name: str, models: dict) -> None:
    model = models[model_name]
    X = model.X.set_axis(model.X.index * 10)  # a non-default index must survive chunking
    whole = cls(chunk_rows=len(X)).evaluate(model.path, X)
    chunked = cls(chunk_rows=7).evaluate(model.path, X)
    pd.testing.assert_frame_equal(chunked, whole)
    assert chunked.index.equals(X.index)


@pytest.mark.slow
@pytest.mark.parametrize("cls", RUNTIME_CLASSES, ids=lambda cls: cls.name)
def test_empty_input_gives_empty_output(cls: type, models: dict) -> None:
    model = models["logreg"]
    out = cls().evaluate(model.path, model.X.iloc[:0])
    assert len(out) == 0
    assert "probability(setosa)" in out.columns


#: Each thread makes 10 small evaluations (well under a second each quiet, a few seconds each at load 10):
#: five minutes mean a hang.
THREADS_JOIN_S = 300
#: How long pypmml's gateway JVM may take to exit after its Python process did (it notices the closed pipe
#: and shuts down): under a second quiet, longer at load 10; the wait ends as soon as it is gone.
GATEWAY_EXIT_DEADLINE_S = 120


@pytest.mark.slow
@pytest.mark.parametrize("name", ["jpmml_evaluator", "pypmml"])
def test_two_threads_at_once_give_the_same_results(name: str, runtimes: dict, models: dict) -> None:
    runtime = runtimes[name]
    work = [(models["gbr"], runtime.evaluate(models["gbr"].path, models["gbr"].X))]
    work.append((models["logreg"], runtime.evaluate(models["logreg"].path, models["logreg"].X)))
    failures: list[str] = []

    def evaluate_repeatedly() -> None:
        for _ in range(5):
            for model, expected in work:
                try:
                    if not runtime.evaluate(model.path, model.X).equals(expected):
                        failures.append(f"{model.path.name}: differs")
                except Exception as err:
                    failures.append(f"{model.path.name}: {err!r}")

    threads = [threading.Thread(target=evaluate_repeatedly, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=THREADS_JOIN_S)
    hung = [thread.name for thread in threads if thread.is_alive()]
    assert not hung, f"{name}: {hung} still evaluating after {THREADS_JOIN_S} s (a deadlock between threads?)"
    assert not failures


@pytest.mark.slow
def test_verify_passes_on_embedded_rows(runtimes: dict, models: dict) -> None:
    for model in (models["logreg"], models["gbr"]):
        assert runtimes["jpmml_evaluator"].verify(model.path) == (True, "20 embedded rows replayed")


@pytest.mark.slow
def test_verify_fails_on_a_tampered_expected_value(runtimes: dict, models: dict, tmp_path: Path) -> None:
    text = models["logreg"].path.read_text()
    first = re.search(r"<data:probability_setosa>([^<]+)</data:probability_setosa>", text)
    assert first is not None
    wrong = repr(float(first[1]) + 0.01)
    tampered_text = f"{text[: first.start(1)]}{wrong}{text[first.end(1) :]}"
    tampered = tmp_path / "tampered.pmml"
    tampered.write_text(tampered_text)
    passed, message = runtimes["jpmml_evaluator"].verify(tampered)
    assert not passed
    assert "tampered.pmml: embedded verification failed" in message
    # JPMML names the two values (expected, then computed), not the field.
    assert re.search(rf"EvaluationException: Values {re.escape(wrong)} and \S+ do not match", message)
    assert "\n\tat " not in message  # no Java stack trace


@pytest.mark.slow
def test_verify_explains_a_missing_table(runtimes: dict, models: dict) -> None:
    passed, message = runtimes["jpmml_evaluator"].verify(models["columns"].path)
    assert not passed
    assert re.search(r"^not embedded: columns.pmml: has no <ModelVerification>.*PMMLPipeline.verify", message)


@pytest.mark.slow
def test_jvms_start_once_per_process(runtimes: dict, models: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import jpype
    from pypmml.base import PMMLContext

    starts: list[tuple] = []
    start_jvm = jpype.startJVM
    monkeypatch.setattr(jpype, "startJVM", lambda *a, **kw: (starts.append(a), start_jvm(*a, **kw))[1])
    first, second = JpmmlRuntime(), JpmmlRuntime()
    first.evaluate(models["logreg"].path, models["logreg"].X)
    assert jpype.isJVMStarted()
    second.evaluate(models["gbr"].path, models["gbr"].X)
    assert len(starts) <= 1  # none when an earlier test of this session started it

    PypmmlRuntime().evaluate(models["logreg"].path, models["logreg"].X)
    gateway = PMMLContext._gateway
    PypmmlRuntime().evaluate(models["gbr"].path, models["gbr"].X)
    assert gateway is not None
    assert PMMLContext._gateway is gateway


_FRESH_PROCESS = """
import io, json, sys
from pathlib import Path
import jpype
import pandas as pd
from pypmml.base import PMMLContext
from parity.validators.runtimes.pmml import JpmmlRuntime, PypmmlRuntime

paths, X = [Path(p) for p in sys.argv[1:3]], pd.read_json(io.StringIO(sys.argv[3]), orient="split")
starts = []
start_jvm = jpype.startJVM
jpype.startJVM = lambda *a, **kw: (starts.append(a), start_jvm(*a, **kw))[1]
gateways = set()
for path in paths:
    JpmmlRuntime(max_heap="256m").evaluate(path, X)
    PypmmlRuntime(max_heap="200m").evaluate(path, X)
    gateways.add(id(PMMLContext._gateway))
py4j = PMMLContext._gateway._gateway.jvm
from java.lang import Runtime
print(json.dumps({
    "jpype_starts": len(starts),
    "jpype_heap": Runtime.getRuntime().maxMemory(),
    "pypmml_gateways": len(gateways),
    "pypmml_heap": py4j.java.lang.Runtime.getRuntime().maxMemory(),
    "pypmml_pid": py4j.java.lang.ProcessHandle.current().pid(),
}))
"""


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
def test_fresh_process_bounds_heaps_and_leaves_no_jvm(models: dict) -> None:
    X = models["logreg"].X.head(50)
    args = [str(models["logreg"].path), str(models["logreg_int"].path), X.to_json(orient="split")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["jpype_starts"] == 1
    assert facts["pypmml_gateways"] == 1
    assert facts["jpype_heap"] <= 256 * 2**20
    assert facts["pypmml_heap"] <= 200 * 2**20
    deadline = time.monotonic() + GATEWAY_EXIT_DEADLINE_S
    while _alive(facts["pypmml_pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(facts["pypmml_pid"]), (
        f"pypmml's gateway JVM outlived its Python process by {GATEWAY_EXIT_DEADLINE_S} s"
    )
