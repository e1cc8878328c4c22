"""Reference predictions computed in a training run's own environment (parity.registry.environments).

The slow tests build one real virtual environment with scikit-learn 1.8.0 (Parity runs 1.9.0), fit and
skops-dump a pipeline *inside it*, and compare what Parity computes there with what that environment's own
``predict`` gives. The others run the same child code in Parity's own interpreter.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from parity.core.errors import EnvironmentProblem, InvalidInputError
from parity.registry import environments, estimator_outputs
from parity.registry.environments import (
    MARKER,
    base_interpreter,
    child_requirements,
    ensure_environment,
    environment_differs,
    predictions_in_environment,
    predictions_in_interpreter,
)
from parity.registry.predictions import reference_predictions
from tests.waiting import wait_for

#: The run's recorded environment: an older scikit-learn than Parity's (skops 0.16 needs scikit-learn >= 1.2).
RUN_REQUIREMENTS = ["scikit-learn==1.8.0", "numpy", "scipy", "pandas", "skops==0.16.0", "mlflow==3.17.2"]
OWN_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"

#: Builds the rows from the JSON the test writes, identically in both processes; fits, dumps and predicts.
FIT_SCRIPT = """
import json, sys
import numpy as np, pandas as pd, sklearn, skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

folder = sys.argv[1]
data = json.load(open(folder + "/data.json"))
color = np.array([np.nan if c is None else c for c in data["color"]], dtype=object)
X = pd.DataFrame({"a": pd.Series(data["a"], dtype=float), "b": pd.Series(data["b"], dtype=float),
                  "color": pd.Series(color, dtype=object)})
model = make_pipeline(
    ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["a", "b"]),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="none"),
                              OneHotEncoder(handle_unknown="ignore")), ["color"]),
    ]),
    LogisticRegression(max_iter=500),
).fit(X, np.array(data["y"], dtype=object))
sio.dump(model, folder + "/model.skops")
direct = {m: np.asarray(getattr(model, m)(X)) for m in ("predict", "predict_proba", "decision_function")}
np.savez(folder + "/direct.npz", **{m: v.astype(str) if v.dtype == object else v for m, v in direct.items()})
json.dump({"dtypes": {m: str(v.dtype) for m, v in direct.items()}, "sklearn": sklearn.__version__,
           "untrusted": sio.get_untrusted_types(file=folder + "/model.skops")}, open(folder + "/fit.json", "w"))
"""


#: What one builder process runs: build (or find) the environment and print its interpreter.
BUILD_SCRIPT = """
import json, sys
from parity.registry.environments import ensure_environment
print(ensure_environment(json.loads(sys.argv[1]), "skops", python=sys.argv[2]))
"""
#: How long a build may take to create its staging folder's interpreter: ``python -m venv`` starts with it
#: (well under a second here); the bound only catches a builder that never starts.
STAGING_START_S = 120.0


def _data(n_rows: int, seed: int = 0) -> dict[str, list]:
    rng = np.random.RandomState(seed)
    a = rng.normal(size=n_rows)
    b = rng.normal(size=n_rows) * 3
    color = rng.choice(["red", "green", "blue"], size=n_rows).astype(object)
    y = np.where(a + (color == "red") > 0.5, "yes", "no").astype(object)
    a[rng.rand(n_rows) < 0.1] = np.nan
    color[rng.rand(n_rows) < 0.1] = None
    return {"a": a.tolist(), "b": b.tolist(), "color": color.tolist(), "y": y.tolist()}


def _frame(data: dict[str, list]) -> pd.DataFrame:
    """The rows FIT_SCRIPT builds, built the same way here."""
    color = np.array([np.nan if c is None else c for c in data["color"]], dtype=object)
    return pd.DataFrame(
        {
            "a": pd.Series(data["a"], dtype=float),
            "b": pd.Series(data["b"], dtype=float),
            "color": pd.Series(color, dtype=object),
        }
    )


def _pipeline() -> object:
    return make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["a", "b"]),
                (
                    "cat",
                    make_pipeline(
                        SimpleImputer(strategy="constant", fill_value="none"),
                        OneHotEncoder(handle_unknown="ignore"),
                    ),
                    ["color"],
                ),
            ]
        ),
        LogisticRegression(max_iter=500),
    )


def _assert_identical(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    """Same keys in the same order, dtypes, shapes, and values bit for bit (object labels compared as values)."""
    assert list(got) == list(expected)
    for name, values in expected.items():
        assert got[name].dtype == values.dtype, name
        assert got[name].shape == values.shape, name
        if values.dtype == object:
            assert got[name].tolist() == values.tolist(), name
        else:
            assert got[name].tobytes() == values.tobytes(), name


@pytest.fixture(scope="module")
def env_cache(tmp_path_factory):
    """A cache of environments for this module only."""
    with pytest.MonkeyPatch.context() as patch:
        root = tmp_path_factory.mktemp("envs")
        patch.setenv(environments.CACHE_ENV, str(root))
        yield root


@pytest.fixture(scope="module")
def run_env(env_cache) -> Path:
    """The interpreter of the run's environment, built once (about a minute with pip's cache warm)."""
    return ensure_environment(RUN_REQUIREMENTS, "skops", python=OWN_PYTHON)


@pytest.fixture(scope="module")
def fitted_there(run_env, tmp_path_factory) -> tuple[Path, dict, dict[str, np.ndarray], pd.DataFrame]:
    """A pipeline fitted and dumped in the run's environment, and its outputs computed there directly."""
    folder = tmp_path_factory.mktemp("fitted")
    data = _data(400)
    (folder / "data.json").write_text(json.dumps(data))
    subprocess.run([str(run_env), "-I", "-c", FIT_SCRIPT, str(folder)], check=True, timeout=600)
    fit = json.loads((folder / "fit.json").read_text())
    with np.load(folder / "direct.npz", allow_pickle=False) as npz:
        direct = {name: npz[name].astype(fit["dtypes"][name]) for name in fit["dtypes"]}
    return folder / "model.skops", fit, direct, _frame(data)


@pytest.mark.slow
def test_predictions_in_the_run_environment_are_its_own_bit_for_bit(fitted_there, run_env):
    model, fit, direct, rows = fitted_there
    assert fit["sklearn"] == "1.8.0" != sklearn.__version__  # the child really runs another scikit-learn
    got = predictions_in_environment(
        model, "skops", rows, RUN_REQUIREMENTS, trusted_types=fit["untrusted"], python=OWN_PYTHON
    )
    _assert_identical(got, direct)
    assert got["predict"].dtype == object and set(got["predict"]) == {"yes", "no"}  # labels come back as text


@pytest.mark.slow
def test_a_second_call_builds_nothing(fitted_there, run_env, env_cache):
    model, fit, _, rows = fitted_there
    env_folder = run_env.parent.parent
    marker = env_folder / MARKER
    built = marker.stat().st_mtime_ns
    predictions_in_environment(
        model, "skops", rows, RUN_REQUIREMENTS, trusted_types=fit["untrusted"], python=OWN_PYTHON
    )
    assert marker.stat().st_mtime_ns == built
    assert [p.name for p in env_cache.iterdir()] == [env_folder.name]  # one env, no staging folder left
    record = json.loads(marker.read_text())
    assert record["requirements"] == child_requirements(RUN_REQUIREMENTS, "skops")
    assert "scikit-learn==1.8.0" in record["installed"]
    assert not any(line.startswith("mlflow") for line in record["installed"])


@pytest.mark.slow
def test_a_requirement_pip_cannot_find_is_named(env_cache, tmp_path):
    missing = "parity-no-such-package-4f1c==1.0"
    with pytest.raises(EnvironmentProblem, match="parity-no-such-package-4f1c") as caught:
        ensure_environment(["scikit-learn==1.8.0", missing], "skops", python=OWN_PYTHON)
    assert "could not be installed" in str(caught.value)
    assert not any(p.name.startswith(".staging-") for p in env_cache.iterdir())


@pytest.mark.slow
def test_a_killed_build_is_never_reused_and_concurrent_builders_end_with_one_env(tmp_path):
    root = tmp_path / "envs"
    env = {**os.environ, environments.CACHE_ENV: str(root)}
    command = [sys.executable, "-c", BUILD_SCRIPT, json.dumps(RUN_REQUIREMENTS), OWN_PYTHON]
    killed = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        wait_for(
            lambda: list(root.glob(".staging-*/bin/python")), STAGING_START_S, "the build's staging venv", 0.1
        )
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
    half = sorted(p.name for p in root.iterdir())
    assert len(half) == 1 and half[0].startswith(".staging-")  # nothing at the final place

    builders = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    answers = [builder.communicate(timeout=environments.BUILD_DEADLINE_S)[0].strip() for builder in builders]
    assert [builder.returncode for builder in builders] == [0, 0]
    assert answers[0] == answers[1]
    finals = [p for p in root.iterdir() if not p.name.startswith(".")]
    assert [str(p / "bin" / "python") for p in finals] == [answers[0]]
    assert (finals[0] / MARKER).is_file()
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == half  # the killed one's only


def test_environment_differs_names_the_pins_that_differ():
    requirements = [
        "scikit-learn==1.8.0",
        f"numpy=={np.__version__}",
        "pandas",  # not pinned: nothing to compare
        "mlflow==1.0.0",  # only MLflow needs it: not compared
        "parity-no-such-package-4f1c==2.0",
        "# a comment",
        "",
    ]
    assert environment_differs(requirements) == [
        f"scikit-learn==1.8.0 (here {sklearn.__version__})",
        "parity-no-such-package-4f1c==2.0 (not installed here)",
    ]
    assert environment_differs([f"scikit-learn=={sklearn.__version__}"]) == []


def test_child_requirements_drop_mlflow_and_add_what_the_child_imports():
    assert child_requirements(
        ["mlflow==3.17.2", "mlflow-skinny==3.17.2", "scikit-learn==1.8.0"], "skops"
    ) == [
        "numpy",
        "pandas",
        "scikit-learn==1.8.0",
        "skops",
    ]
    assert child_requirements(["Scikit_Learn==1.8.0", "joblib"], "joblib") == child_requirements(
        ["joblib", "scikit-learn==1.8.0"], "joblib"
    )
    with pytest.raises(InvalidInputError, match="pip option"):
        child_requirements(["--extra-index-url https://example.invalid"], "skops")
    with pytest.raises(InvalidInputError, match="not a requirement"):
        child_requirements(["scikit-learn=>1.8"], "skops")


def test_a_python_that_is_not_here_falls_back_to_parity_own_with_a_note():
    interpreter, version, note = base_interpreter("2.7.18")
    assert (interpreter, version) == (sys.executable, OWN_PYTHON)
    assert "python2.7" in note and "Parity's own Python" in note
    assert base_interpreter(f"{OWN_PYTHON}.99") == (sys.executable, OWN_PYTHON, "")


@pytest.fixture(scope="module")
def own_model() -> tuple[object, pd.DataFrame]:
    """The pipeline fitted in Parity's own process, and rows enough for two row pieces."""
    data = _data(estimator_outputs.PREDICT_ROWS + 300, seed=1)
    rows = _frame(data)
    assert len(estimator_outputs.row_chunks(len(rows))) == 2
    return _pipeline().fit(rows, np.array(data["y"], dtype=object)), rows


def _dump(model: object, fmt: str, path: Path) -> list[str]:
    """Write ``model`` as ``fmt``; the types a skops load must trust."""
    if fmt == "skops":
        sio.dump(model, path)
        return sio.get_untrusted_types(file=path)
    if fmt == "joblib":
        import joblib

        joblib.dump(model, path)
    else:
        path.write_bytes(pickle.dumps(model))
    return []


@pytest.mark.parametrize("fmt", sorted(estimator_outputs.FORMATS))
def test_the_shared_code_gives_parity_own_outputs_across_the_boundary(fmt, own_model, tmp_path):
    """The child code run by its path in Parity's own interpreter returns what reference_predictions returns
    in this process, in several row pieces."""
    model, rows = own_model
    trusted = _dump(model, fmt, tmp_path / f"model.{fmt}")
    got = predictions_in_interpreter(
        sys.executable, tmp_path / f"model.{fmt}", fmt, rows, trusted_types=trusted
    )
    _assert_identical(got, reference_predictions(model, rows))


def test_rows_cross_the_boundary_unchanged():
    frame = pd.DataFrame(
        {
            "x": [0.5, np.nan, 2.0, -0.0],
            "n": np.arange(4, dtype=np.int64),
            "b": [True, False, True, False],
            "s": pd.Series(["a", None, np.nan, "d"], dtype=object),
            "t": pd.Series(["u", "v", None, "w"], dtype="str"),
            "c": pd.Categorical(["u", "v", None, "u"]),
            "d": pd.to_datetime(["2026-01-01", "2026-02-01", None, "2026-03-01"]),
        }
    )
    arrays, meta = estimator_outputs.frame_to_arrays(frame)
    assert all(values.dtype != object for values in arrays.values())  # nothing needs a pickle
    back = estimator_outputs.frame_from_arrays(arrays, json.loads(json.dumps(meta)))
    pd.testing.assert_frame_equal(back, frame)
    assert back["s"].iloc[1] is None and back["s"].iloc[2] != back["s"].iloc[2]  # None and NaN each kept

    outputs = {"predict": np.array(["yes", "no"], dtype=object), "predict_proba": np.eye(2)}
    arrays, meta = estimator_outputs.outputs_to_arrays(outputs)
    _assert_identical(estimator_outputs.outputs_from_arrays(arrays, meta), outputs)


def test_text_mixed_with_numbers_is_refused():
    rows = pd.DataFrame({"s": pd.Series(["a", 1], dtype=object)})
    with pytest.raises(InvalidInputError, match=r"column 's'.*int values"):
        predictions_in_interpreter(sys.executable, Path("unused.skops"), "skops", rows)


def test_a_model_that_fails_in_the_child_raises_with_its_error(tmp_path):
    garbage = tmp_path / "model.skops"
    garbage.write_bytes(b"not a zip file")
    rows = pd.DataFrame({"a": [1.0]})
    with pytest.raises(InvalidInputError, match=r"(?s)failed \(status 1\).*BadZipFile"):
        predictions_in_interpreter(sys.executable, garbage, "skops", rows)
    with pytest.raises(InvalidInputError, match="expected one of skops, pickle, joblib"):
        predictions_in_environment(garbage, "onnx", rows, [])


def test_a_model_that_fails_to_predict_in_the_child_says_so(own_model, tmp_path):
    model, rows = own_model
    _dump(model, "pickle", tmp_path / "model.pickle")
    with pytest.raises(InvalidInputError, match=r"(?s)predicting on the reference rows failed.*columns"):
        predictions_in_interpreter(
            sys.executable, tmp_path / "model.pickle", "pickle", rows.drop(columns="b")
        )


def test_a_child_past_its_deadline_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setenv(environments.DEADLINE_ENV, "0.001")  # far below an interpreter's start-up
    with pytest.raises(InvalidInputError, match=re.escape("did not finish within 0.001 s")):
        predictions_in_interpreter(sys.executable, tmp_path / "m.skops", "skops", pd.DataFrame({"a": [1.0]}))
