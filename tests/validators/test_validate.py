"""validate_runtime and friends on small real models, converted for real, in every runtime of RUNTIMES.

Right artifacts pass within the bands FACTS.md measured; artifacts edited to be wrong fail and name the cell;
a float32 rounding across a tree split is explained, up to MAX_EXPLAINED_FRACTION of the rows.
"""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression

from parity.core.defaults import host_platform
from parity.core.records import Conversion, Stage
from parity.core.records import ConversionStatus as Status
from parity.core.tolerances import TOLERANCES, OutputKind, kind_of, scale_of
from parity.registry import ModelRef, RegisteredModel
from parity.registry.predictions import reference_predictions
from parity.validators import RUNTIMES, formats, runtimes_for
from parity.validators.report import Check, Verdict
from parity.validators.runtimes import BaseRuntime
from parity.validators.targets.table import Target
from parity.validators.validate import (
    MAX_EXPLAINED_FRACTION,
    ModelContext,
    conversion_check,
    sample_index,
    validate_conversion,
    validate_runtime,
)

#: Only this process: emulated and pool targets are tested in test_targets.py and test_aarch64.py.
HOST_ONLY = {"host": Target("host", host_platform(), "process")}

#: How far a correct conversion drifts from scikit-learn (FACTS.md "How far converted outputs drift"),
#: per artifact precision, as a fraction of the output's scale: float32 ONNX probabilities within 4.2e-6,
#: a 20-tree boosted regressor well within 1e-6 of its scale; double-precision PMML within 1e-12.
DRIFT: dict[str, float] = {"float32": 1e-5, "float64": 1e-12}

#: name → (data fixture, unfitted model)
MODELS: dict[str, tuple[str, Callable[[], object]]] = {
    "LogisticRegression": ("iris", lambda: LogisticRegression(max_iter=1000)),
    "GradientBoostingRegressor": (
        "diabetes",
        lambda: GradientBoostingRegressor(n_estimators=20, random_state=0),
    ),
}

#: The reference outputs each runtime gives back, by model kind: pypmml returns no label for classifiers.
OUTPUTS: dict[tuple[str, str], set[str]] = {
    **{(runtime, "LogisticRegression"): {"predict", "predict_proba"} for runtime in RUNTIMES},
    ("pypmml", "LogisticRegression"): {"predict_proba"},
    **{(runtime, "GradientBoostingRegressor"): {"predict"} for runtime in RUNTIMES},
}


def registered(estimator: object, X: pd.DataFrame, name: str = "test-model") -> RegisteredModel:
    """A registered model as the registry would load it, without writing a registry (so without a
    registration record: its contexts pass their tolerances, none)."""
    return RegisteredModel(
        ref=ModelRef(name, 1),
        path=Path("."),
        record={},
        estimator=estimator,
        reference=X,
        predictions=reference_predictions(estimator, X),
    )


def _slow_if_jvm(runtime_name: str) -> list[pytest.MarkDecorator]:
    return [pytest.mark.slow] if formats.FORMATS[RUNTIMES[runtime_name].format].starts_jvm else []


@pytest.fixture(scope="module")
def converted(request, tmp_path_factory) -> Callable[[str, str], tuple[ModelContext, Conversion]]:
    """``converted(model, fmt)``: the fitted model's context and its conversion, once per module."""
    cache: dict[tuple[str, str], tuple[ModelContext, Conversion]] = {}
    contexts: dict[str, ModelContext] = {}

    def get(name: str, fmt: str) -> tuple[ModelContext, Conversion]:
        if name not in contexts:
            data, build = MODELS[name]
            X, y = request.getfixturevalue(data)
            contexts[name] = ModelContext(registered(build().fit(X, y), X, name), tolerances={})
        if (name, fmt) not in cache:
            context = contexts[name]
            out = tmp_path_factory.mktemp(f"{fmt}-{name}")
            conversion = formats.convert(fmt, context.model.estimator, context.model.reference, out)
            assert conversion.ok, conversion.message
            cache[name, fmt] = (context, conversion)
        return cache[name, fmt]

    return get


# --- every runtime passes a right artifact ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("runtime_name", "model"),
    [
        pytest.param(runtime, model, id=f"{runtime}-{model}", marks=_slow_if_jvm(runtime))
        for runtime in RUNTIMES
        for model in MODELS
    ],
)
def test_right_artifact_passes_within_the_documented_bands(runtime_name: str, model: str, converted):
    runtime = RUNTIMES[runtime_name]
    context, conversion = converted(model, runtime.format)

    checks = validate_runtime(context, conversion, runtime, "here")

    assert {c.output for c in checks} == OUTPUTS[runtime_name, model]
    n = len(context.model.reference)
    precision = conversion.details.precision
    for check in checks:
        assert check.verdict is Verdict.PASS, check.explanation
        assert (check.format, check.runtime, check.target) == (runtime.format, runtime_name, "here")
        assert check.rows == len(sample_index(n, runtime.sample_rows))
        assert check.n_outside == 0
        assert check.first_outside == []
        kind = kind_of(check.output, context.classifier)
        assert check.kind == str(kind)
        assert check.tolerance == TOLERANCES[(precision, kind)].describe()
        if kind is OutputKind.LABEL:
            assert check.max_abs is None
        else:
            scale = scale_of(context.model.predictions[check.output])
            assert check.max_abs <= DRIFT[precision] * scale


# --- the runtimes table and runtimes_for ---------------------------------------------------------------


@pytest.mark.parametrize(
    "runtime_name", [pytest.param(name, id=f"{r.format}-{name}") for name, r in RUNTIMES.items()]
)
def test_each_runtime_is_listed_for_its_own_format_only(runtime_name: str):
    runtime = RUNTIMES[runtime_name]
    assert runtime.name == runtime_name
    assert runtime.format in formats.FORMATS, f"{runtime_name} evaluates {runtime.format!r}: no converter"

    listed_for = [fmt for fmt in formats.FORMATS if any(r is runtime for r in runtimes_for(fmt))]

    assert listed_for == [runtime.format]


@pytest.mark.parametrize("fmt", list(formats.FORMATS))
def test_every_format_has_runtimes_of_that_format_in_table_order(fmt: str):
    table = list(RUNTIMES.values())

    found = runtimes_for(fmt)

    assert found, f"no runtime in RUNTIMES evaluates {fmt} artifacts"
    assert [r.format for r in found] == [fmt] * len(found)
    positions = [next(i for i, r in enumerate(table) if r is runtime) for runtime in found]
    assert positions == sorted(set(positions)), "runtimes_for must list each runtime once, in table order"


# --- a wrong ONNX artifact fails and names the cell ------------------------------------------------------


def _onnx_with_changed_coefficients(source: Path, target: Path) -> Path:
    model = onnx.load(str(source))
    (linear,) = [node for node in model.graph.node if node.op_type == "LinearClassifier"]
    (coefficients,) = [a for a in linear.attribute if a.name == "coefficients"]
    changed = [c * 1.5 for c in coefficients.floats]
    linear.attribute.remove(coefficients)
    linear.attribute.append(onnx.helper.make_attribute("coefficients", changed))
    onnx.save(model, str(target))
    return target


@pytest.mark.parametrize("runtime_name", [r.name for r in formats.FORMATS["onnx"].runtimes])
def test_wrong_onnx_artifact_fails_and_names_the_cell(runtime_name: str, iris, tmp_path: Path):
    X, y = iris
    X = pd.concat([X] * 4, ignore_index=True)  # 600 rows: more than onnx-reference samples
    estimator = LogisticRegression(max_iter=1000).fit(X, pd.concat([y] * 4, ignore_index=True))
    context = ModelContext(registered(estimator, X), tolerances={})
    right = formats.convert("onnx", estimator, X, tmp_path)
    wrong = right.at(_onnx_with_changed_coefficients(right.path, tmp_path / "wrong.onnx"))
    runtime = RUNTIMES[runtime_name]

    checks = {c.output: c for c in validate_runtime(context, wrong, runtime, host_platform())}

    proba = checks["predict_proba"]
    assert proba.verdict is Verdict.FAIL
    assert proba.cell == f"onnx/{runtime_name}/{host_platform()}/predict_proba"
    index = sample_index(len(X), runtime.sample_rows)
    assert proba.rows == len(index) == min(len(X), runtime.sample_rows or len(X))
    actual = runtime.evaluate(wrong.path, formats.FORMATS["onnx"].feeds(wrong, X.iloc[index]))[
        "probabilities"
    ]
    expected = estimator.predict_proba(X.iloc[index])
    band = TOLERANCES[("float32", OutputKind.PROBABILITY)]
    outside = (np.abs(actual - expected) > band.atol + band.rtol * np.abs(expected)).any(axis=1)
    assert proba.n_outside == outside.sum() > 0
    assert proba.first_outside == index[np.flatnonzero(outside)[:20]].tolist()
    assert proba.max_abs > band.atol
    assert re.search(r"^\d+ row\(s\) outside .*: a conversion bug\.$", proba.explanation)
    assert "rounding" not in proba.explanation
    assert proba.stage is Stage.COMPARE
    assert proba.band in ("e<1", "big-diff")


def test_not_comparable_output_fails_with_the_shapes(iris, tmp_path: Path):
    """An artifact whose output has the wrong width: the cell fails, it does not raise."""
    X, y = iris
    estimator = LogisticRegression(max_iter=1000).fit(X, y)
    context = ModelContext(registered(estimator, X), tolerances={})
    conversion = formats.convert("onnx", estimator, X, tmp_path)
    context.model.predictions["predict_proba"] = context.model.predictions["predict_proba"][:, :2]

    checks = {c.output: c for c in validate_runtime(context, conversion, RUNTIMES["onnxruntime"], "here")}

    assert checks["predict"].verdict is Verdict.PASS
    assert checks["predict_proba"].verdict is Verdict.FAIL
    assert (
        checks["predict_proba"].explanation
        == "not comparable: shape (150, 3) where the reference has (150, 2): a conversion bug (the artifact's "
        "output has another shape)"
    )
    assert checks["predict_proba"].stage is Stage.COMPARE


# --- a wrong PMML artifact fails in both engines and in the embedded verification -----------------------


def _pmml_with_changed_coefficient(source: Path, target: Path) -> Path:
    text = source.read_text(encoding="utf-8")
    pattern = re.compile(r'(<NumericPredictor name="petal length \(cm\)" coefficient=")([-0-9.eE]+)(")')
    changed, count = pattern.subn(lambda m: f"{m[1]}{float(m[2]) * 3 + 1}{m[3]}", text, count=1)
    assert count == 1
    target.write_text(changed, encoding="utf-8")
    ET.parse(target)  # still well-formed
    return target


@pytest.mark.slow
def test_wrong_pmml_artifact_fails_in_every_engine_and_in_verification(converted, tmp_path: Path):
    context, right = converted("LogisticRegression", "pmml")
    path = _pmml_with_changed_coefficient(right.path, tmp_path / "wrong.pmml")
    wrong = right.at(path)

    every = validate_conversion(context, wrong, targets=HOST_ONLY)
    checks = {(c.runtime, c.output): c for c in every if c.kind != "coverage"}

    for runtime in ("jpmml_evaluator", "pypmml"):
        proba = checks[runtime, "predict_proba"]
        assert proba.verdict is Verdict.FAIL
        assert proba.n_outside > 0
        assert proba.first_outside
        assert proba.explanation.endswith("a conversion bug."), proba.explanation
        assert "rounding" not in proba.explanation
        assert proba.cell == f"pmml/{runtime}/host/predict_proba"
    verification = checks["jpmml_evaluator", "embedded-verification"]
    assert verification.verdict is Verdict.FAIL
    assert verification.rows == right.details.verification_rows
    assert "embedded verification failed" in verification.explanation
    assert ("pypmml", "embedded-verification") not in checks


@pytest.mark.slow
def test_right_pmml_artifact_passes_embedded_verification(converted):
    context, conversion = converted("LogisticRegression", "pmml")

    every = validate_conversion(context, conversion, targets=HOST_ONLY)
    checks = [c for c in every if c.kind != "coverage"]

    assert {(c.runtime, c.output) for c in checks} == {
        ("jpmml_evaluator", "predict"),
        ("jpmml_evaluator", "predict_proba"),
        ("jpmml_evaluator", "embedded-verification"),
        ("pypmml", "predict_proba"),
    }
    assert all(c.verdict is Verdict.PASS for c in checks), [c.explanation for c in checks]
    coverage = {c.output: c for c in every if c.kind == "coverage"}
    assert coverage["predict_proba"].verdict is Verdict.PASS
    assert coverage["predict_proba"].rows == len(context.model.reference)
    assert coverage["decision_function"].verdict is Verdict.NOT_COVERED
    (verification,) = [c for c in checks if c.kind == "verification"]
    assert verification.explanation == f"{conversion.details.verification_rows} embedded rows replayed"


# --- float32 input rounding across a split is explained ---------------------------------------------------

#: HistGradientBoosting compares float64 inputs with float64 thresholds; ONNX rounds both to float32. With
#: training values 1 and 1 + 2**-22 the split sits at 1 + 2**-23 (exactly a float32), and 1 + 2**-23 + 2**-30
#: lies right of it in float64 but rounds onto it in float32: it goes left in ONNX, right in scikit-learn.
SPLIT = 1 + 2.0**-23
NEAR_SPLIT = SPLIT + 2.0**-30
REFERENCE_ROWS = 400


@pytest.fixture(scope="module")
def near_split_model() -> HistGradientBoostingRegressor:
    X = pd.DataFrame({"x": np.r_[np.full(40, 1.0), np.full(40, 1 + 2.0**-22)]})
    y = np.r_[np.zeros(40), np.full(40, 10.0)]
    model = HistGradientBoostingRegressor(max_iter=5, random_state=0).fit(X, y)
    assert model._predictors[0][0].nodes["num_threshold"][0] == SPLIT
    assert np.float32(NEAR_SPLIT) == np.float32(SPLIT) and NEAR_SPLIT > SPLIT
    return model


def _near_split_reference(n_near: int) -> pd.DataFrame:
    x = np.where(np.arange(REFERENCE_ROWS) % 2 == 0, 0.5, 2.0)
    x[np.linspace(1, REFERENCE_ROWS - 1, n_near).astype(int)] = NEAR_SPLIT
    return pd.DataFrame({"x": x})


ALLOWED = max(1, int(MAX_EXPLAINED_FRACTION * REFERENCE_ROWS))


@pytest.mark.parametrize("runtime_name", [r.name for r in formats.FORMATS["onnx"].runtimes])
@pytest.mark.parametrize(
    ("n_near", "verdict", "words"),
    [
        pytest.param(ALLOWED, Verdict.PASS, "row(s) explained by float32 inputs", id="few-rows-pass"),
        pytest.param(
            ALLOWED + 1, Verdict.FAIL, "only because the artifact reads float32 inputs", id="many-rows-fail"
        ),
    ],
)
def test_float32_input_rounding_across_a_split(
    n_near: int, verdict: Verdict, words: str, runtime_name: str, near_split_model, tmp_path: Path
):
    X = _near_split_reference(n_near)
    context = ModelContext(registered(near_split_model, X), tolerances={})
    conversion = formats.convert("onnx", near_split_model, X, tmp_path)
    assert conversion.ok, conversion.message

    (check,) = validate_runtime(context, conversion, RUNTIMES[runtime_name], "here")

    assert check.output == "predict"
    assert check.verdict is verdict, check.explanation
    assert check.n_outside == n_near
    assert check.first_outside == np.flatnonzero(X["x"] == NEAR_SPLIT)[:20].tolist()
    assert check.explanation.startswith(f"{n_near} row(s) ")
    assert words in check.explanation
    if verdict is Verdict.FAIL:
        assert f"more than the {ALLOWED} allowed" in check.explanation


# --- runtimes that cannot run, or raise -----------------------------------------------------------------


@dataclasses.dataclass
class AbsentRuntime(BaseRuntime):
    """A runtime that is not installed here: it says so, and must never be called."""

    name: str = "absent-runtime"
    format: str = "onnx"

    def unavailable_reason(self) -> str | None:
        return "absent-runtime is not installed here: pip install absent-runtime."

    def evaluate(self, path: Path, feeds: dict) -> dict:
        raise AssertionError("an unavailable runtime was evaluated")


@dataclasses.dataclass
class BrokenRuntime(BaseRuntime):
    """A runtime that is installed and raises on every model."""

    name: str = "broken-runtime"
    format: str = "onnx"

    def unavailable_reason(self) -> str | None:
        return None

    def evaluate(self, path: Path, feeds: dict) -> dict:
        raise RuntimeError(f"cannot run {path.name}: operator LinearClassifier is not implemented\n")


@pytest.fixture(scope="module")
def iris_onnx(iris, tmp_path_factory) -> tuple[ModelContext, Conversion]:
    X, y = iris
    estimator = LogisticRegression(max_iter=1000).fit(X, y)
    conversion = formats.convert("onnx", estimator, X, tmp_path_factory.mktemp("iris-onnx"))
    assert conversion.ok, conversion.message
    return ModelContext(registered(estimator, X), tolerances={}), conversion


def test_unavailable_runtime_is_one_unavailable_row(iris_onnx):
    context, conversion = iris_onnx

    checks = validate_runtime(context, conversion, AbsentRuntime(), "linux/x86_64")

    assert checks == [
        Check(
            format="onnx",
            runtime="absent-runtime",
            output="*",
            verdict=Verdict.UNAVAILABLE,
            target="linux/x86_64",
            explanation="absent-runtime is not installed here: pip install absent-runtime.",
            stage=Stage.LOAD,
        )
    ]


def test_raising_runtime_is_one_error_row_with_the_message(iris_onnx):
    context, conversion = iris_onnx

    (check,) = validate_runtime(context, conversion, BrokenRuntime(), "linux/x86_64")

    assert check.verdict is Verdict.ERROR
    assert (check.runtime, check.output) == ("broken-runtime", "*")
    assert (
        check.explanation
        == "RuntimeError: cannot run model.onnx: operator LinearClassifier is not implemented"
    )


def test_runtime_without_a_matching_output_fails(iris_onnx):
    @dataclasses.dataclass
    class Renamed(BrokenRuntime):
        name: str = "renamed-outputs"

        def evaluate(self, path: Path, feeds: dict) -> dict:
            return {"scores": np.zeros((len(feeds["X"]), 3), dtype=np.float32)}

    context, conversion = iris_onnx

    (check,) = validate_runtime(context, conversion, Renamed(), "here")

    assert check.verdict is Verdict.FAIL
    assert check.explanation == "no output matched the reference outputs"


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(Status.UNSUPPORTED, Verdict.UNSUPPORTED), (Status.FAILED, Verdict.FAIL)],
    ids=str,
)
def test_conversion_without_artifact_is_one_row(status: Status, verdict: Verdict, iris_onnx):
    context, _ = iris_onnx
    conversion = Conversion(format="onnx", status=status, message="the converter's own words", seconds=0.1)

    assert conversion_check(conversion).verdict is verdict
    (check,) = validate_conversion(context, conversion)
    assert (check.runtime, check.output, check.verdict) == ("converter", "conversion", verdict)
    assert check.explanation == "the converter's own words"


# --- sampling --------------------------------------------------------------------------------------------

SAMPLE_ROWS = RUNTIMES["onnx-reference"].sample_rows


@pytest.mark.parametrize("n_rows", [1, 10, SAMPLE_ROWS, SAMPLE_ROWS + 1, 10_000, 123_457])
def test_sample_index_is_deterministic_and_bounded(n_rows: int):
    index = sample_index(n_rows, SAMPLE_ROWS)

    assert np.array_equal(index, sample_index(n_rows, SAMPLE_ROWS))
    assert len(index) == min(n_rows, SAMPLE_ROWS)
    assert np.array_equal(index, np.unique(index))  # sorted, no repeats
    assert index[0] == 0
    assert index[-1] == n_rows - 1
    if n_rows <= SAMPLE_ROWS:
        assert np.array_equal(index, np.arange(n_rows))


def test_sample_index_without_a_limit_is_every_row():
    assert np.array_equal(sample_index(1234, None), np.arange(1234))
