"""Embedded verification: rows embedded at the precision of Parity's own bands, and replayed alike everywhere.

Real conversions in the warm sklearn2pmml JVM, replayed by JPMML in this process (jpmml_evaluator) and by the
plain-Java runner (``PmmlRunner.java``) on this machine; one test runs the runner under aarch64 emulation.
The models are those whose correct PMMLs fail at JPMML's default precision (1e-13): naive Bayes probabilities
of 1e-12 computed in another order (FACTS.md).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_wine
from sklearn.ensemble import RandomForestClassifier, VotingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.naive_bayes import GaussianNB, MultinomialNB
from sklearn.svm import LinearSVC
from sklearn2pmml import make_pmml_pipeline

from parity.converters.pmml import (
    VERIFY_ROWS,
    convert_pmml,
    float32_exact,
    shared_pmml_converter,
    verification_precision,
)
from parity.core.defaults import host_platform
from parity.core.records import Conversion
from parity.core.tolerances import Band, OutputKind, scale_of, tolerance_for
from parity.registry import ModelRef, RegisteredModel
from parity.registry.predictions import reference_predictions
from parity.validators.report import Verdict, outcome
from parity.validators.runtimes.pmml import JpmmlRuntime
from parity.validators.targets.pmml_runner import run_pmml_in
from parity.validators.targets.table import Target
from parity.validators.validate import NOT_EMBEDDED, ModelContext, validate_conversion

pytestmark = pytest.mark.slow  # every test converts in the warm sklearn2pmml JVM

#: name → unfitted classifier; MultinomialNB's correct PMML fails JPMML's default precision on wine.
CLASSIFIERS: dict[str, Callable[[], object]] = {
    "MultinomialNB": MultinomialNB,
    "GaussianNB": GaussianNB,
    "LogisticRegression": lambda: LogisticRegression(max_iter=5000),
}
#: The attribute of each model's PMML that the mutation test changes (its first occurrence).
PARAMETER: dict[str, str] = {
    "MultinomialNB": "coefficient",
    "GaussianNB": "mean",
    "LogisticRegression": "coefficient",
}
#: How much the mutation test changes that parameter, relative: far below the ONNX band, far above float64
#: drift; PMML's verification must still catch it.
RELATIVE_CHANGE = 1e-6


@pytest.fixture(scope="module")
def wine() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_wine(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="module")
def converted(wine, tmp_path_factory) -> Callable[[str], Conversion]:
    """``converted(name)``: the wine classifier's PMML, with its verification rows embedded (once)."""
    cache: dict[str, Conversion] = {}

    def get(name: str) -> Conversion:
        if name not in cache:
            X, y = wine
            estimator = CLASSIFIERS[name]().fit(X, y)
            out = tmp_path_factory.mktemp(name) / "model.pmml"
            cache[name] = convert_pmml(estimator, X, out, shared_pmml_converter())
            assert cache[name].ok, cache[name].message
        return cache[name]

    return get


def _embedded_precisions(path: Path) -> set[tuple[float, float]]:
    fields = re.findall(
        r'<VerificationField [^>]*precision="([^"]+)" zeroThreshold="([^"]+)"', path.read_text()
    )
    return {(float(p), float(z)) for p, z in fields}


def _changed(source: Path, attribute: str, target: Path) -> Path:
    text = source.read_text(encoding="utf-8")
    pattern = re.compile(rf'( {attribute}=")([-0-9.eE]+)(")')
    changed, count = pattern.subn(
        lambda m: f"{m[1]}{float(m[2]) * (1 + RELATIVE_CHANGE)!r}{m[3]}", text, count=1
    )
    assert count == 1, f"no {attribute}= in {source}"
    target.write_text(changed, encoding="utf-8")
    return target


# --- the precision: Parity's float64 bands ------------------------------------------------------------------


def test_precision_is_the_float64_band_of_the_verified_output(wine):
    X, y = wine
    probability = tolerance_for("float64", OutputKind.PROBABILITY)
    value = tolerance_for("float64", OutputKind.VALUE)
    assert isinstance(probability, Band) and isinstance(value, Band) and value.scaled
    Xd, yd = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    regressor = LinearRegression().fit(Xd, yd)
    predicted = regressor.predict(Xd)

    assert verification_precision(MultinomialNB().fit(X, y), np.zeros((1, 3))) == (
        probability.rtol,
        probability.atol,
    )
    assert verification_precision(regressor, predicted) == (value.rtol, value.atol * scale_of(predicted))
    assert verification_precision(LinearSVC().fit(X, y), np.zeros(1)) == (0.0, 0.0)  # labels: exact


@pytest.mark.parametrize("name", list(CLASSIFIERS), ids=[f"pmml-{n}" for n in CLASSIFIERS])
def test_embedded_rows_carry_the_band_and_replay_in_process_and_in_plain_java(name: str, converted, wine):
    conversion = converted(name)
    band = tolerance_for("float64", OutputKind.PROBABILITY)
    assert isinstance(band, Band)

    assert _embedded_precisions(conversion.path) == {(band.rtol, band.atol)}
    assert JpmmlRuntime().verify(conversion.path) == (True, f"{VERIFY_ROWS} embedded rows replayed")
    _, where = run_pmml_in(None, conversion.path, wine[0].iloc[:5])
    assert where["verification"] == "ok"


def test_at_jpmml_default_precision_the_same_multinomial_nb_rows_fail(wine, tmp_path: Path):
    """Why the precision is set: these rows of a correct PMML fail at sklearn2pmml's default 1e-13."""
    X, y = wine
    pipeline = make_pmml_pipeline(
        MultinomialNB().fit(X, y), active_fields=list(X.columns), target_fields=["y"]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pipeline.verify(X.sample(n=VERIFY_ROWS, random_state=0))  # the default precision
    path = tmp_path / "default.pmml"
    assert shared_pmml_converter().convert_pipeline(pipeline, path).ok

    passed, message = JpmmlRuntime().verify(path)

    assert not passed
    assert re.search(r"EvaluationException: Values \S+E-\d+ and \S+E-\d+ do not match", message)


def test_float_typed_inputs_replay_on_the_values_scikit_learn_saw(wine, tmp_path: Path):
    """A soft vote of a forest (float-typed inputs) and a logistic regression: on double inputs JPMML's
    rounding to float32 moves the regression's part by ~3e-7 relative; the embedded inputs are float32."""
    X, y = wine
    vote = VotingClassifier(
        [
            ("forest", RandomForestClassifier(n_estimators=5, random_state=0)),
            ("lr", LogisticRegression(max_iter=5000)),
        ],
        voting="soft",
    ).fit(X, y)

    conversion = convert_pmml(vote, X, tmp_path / "vote.pmml", shared_pmml_converter())

    assert conversion.ok and conversion.details.float_inputs, conversion.message
    assert JpmmlRuntime().verify(conversion.path) == (True, f"{VERIFY_ROWS} embedded rows replayed")
    rounded = float32_exact(X)
    assert (rounded.to_numpy(np.float32) == rounded.to_numpy()).all()


def test_a_label_only_classifier_replays_its_labels_exactly(wine, tmp_path: Path):
    X, y = wine
    conversion = convert_pmml(LinearSVC().fit(X, y), X, tmp_path / "svc.pmml", shared_pmml_converter())
    assert conversion.ok, conversion.message

    # JPMML-SkLearn writes no precision for a categorical field: JPMML compares labels by equality
    assert _embedded_precisions(conversion.path) == set()
    assert re.search(r'<VerificationField field="y" column="data:y"/>', conversion.path.read_text())
    assert JpmmlRuntime().verify(conversion.path) == (True, f"{VERIFY_ROWS} embedded rows replayed")


@pytest.mark.parametrize("name", list(CLASSIFIERS), ids=[f"pmml-{n}" for n in CLASSIFIERS])
def test_a_parameter_changed_by_one_millionth_fails_verification_everywhere(
    name: str, converted, wine, tmp_path: Path
):
    wrong = _changed(converted(name).path, PARAMETER[name], tmp_path / "wrong.pmml")

    passed, message = JpmmlRuntime().verify(wrong)
    _, where = run_pmml_in(None, wrong, wine[0].iloc[:5])

    assert not passed
    assert "embedded verification failed" in message
    assert where["verification"].startswith("fail: ")


# --- no verification rows: "not covered", on every target alike ----------------------------------------


@pytest.fixture(scope="module")
def unverified(wine, tmp_path_factory) -> tuple[ModelContext, Conversion]:
    """A correct PMML converted with no verification rows embedded, and its model's context."""
    X, y = wine
    estimator = LogisticRegression(max_iter=5000).fit(X, y)
    out = tmp_path_factory.mktemp("unverified") / "model.pmml"
    conversion = convert_pmml(estimator, X, out, shared_pmml_converter(), verify_rows=0)
    assert conversion.ok and conversion.details.verification_rows == 0, conversion.message
    model = RegisteredModel(
        ref=ModelRef("unverified", 1),
        path=Path("."),
        record={},
        estimator=estimator,
        reference=X,
        predictions=reference_predictions(estimator, X),
    )
    return ModelContext(model, tolerances={}), conversion


def _verification_rows(checks) -> dict[str, object]:
    return {c.target: c for c in checks if c.output == "embedded-verification"}


def test_no_rows_is_not_covered_in_process_and_the_model_still_passes(unverified):
    context, conversion = unverified
    targets = {"host": Target("host", host_platform(), "process")}

    checks = validate_conversion(context, conversion, targets=targets)

    (row,) = _verification_rows(checks).values()
    assert row.verdict is Verdict.NOT_COVERED
    assert row.explanation == NOT_EMBEDDED and row.explanation.startswith("not embedded: ")
    assert row.rows == 0
    assert outcome(checks, False) == "passed", [
        c.explanation for c in checks if c.verdict is not Verdict.PASS
    ]


def test_the_plain_java_runner_says_not_embedded_rather_than_ok(unverified):
    context, conversion = unverified

    _, where = run_pmml_in(None, conversion.path, context.model.reference.iloc[:5])

    assert where["verification"] == "not embedded: the PMML has no ModelVerification rows"
    assert JpmmlRuntime().verify(conversion.path)[1].startswith("not embedded: ")


@pytest.mark.aarch64
def test_no_rows_is_the_same_row_in_process_and_under_aarch64_emulation(unverified):
    context, conversion = unverified
    targets = {
        "host": Target("host", host_platform(), "process"),
        "arm": Target("arm", "linux/aarch64", "emulator", cpu="neoverse-n1", sample_rows=20),
    }

    rows = _verification_rows(validate_conversion(context, conversion, targets=targets))

    assert set(rows) == {"host", "arm"}
    assert {(r.verdict, r.explanation, r.rows) for r in rows.values()} == {
        (Verdict.NOT_COVERED, NOT_EMBEDDED, 0)
    }
    assert rows["arm"].where.verification == "not embedded: the PMML has no ModelVerification rows"
    assert rows["arm"].where.machine == "aarch64"
