"""Converter options per estimator, and every "I do not support this" of both converters as ``unsupported``.

Real estimators, real skl2onnx, the real sklearn2pmml JVM: each refusal below is one the converter makes itself,
and each test checks the status and that the message carries the converter's own words.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import skl2onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier, RandomTreesEmbedding
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.naive_bayes import BernoulliNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, KBinsDiscretizer, StandardScaler
from sklearn.svm import LinearSVC

from parity.converters.onnx import TARGET_OPSET, allowed_options, convert_onnx, converter_options, refuses
from parity.converters.pmml import convert_pmml, shared_pmml_converter
from parity.core.records import ConversionStatus as Status
from parity.validators import formats
from parity.validators.runtimes.onnx import OnnxruntimeRuntime


def _fit(model, X: pd.DataFrame, y: pd.Series):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence of small fits is beside the point here
        return model.fit(X, y)


# --- ONNX: options only where the estimator's converter declares them -------------------------------------

#: name → (unfitted classifier, the reference output its ``probabilities`` output stands for).
CLASSIFIERS: dict[str, tuple[Callable[[], object], str]] = {
    "LinearSVC": (lambda: LinearSVC(random_state=0), "decision_function"),
    "LinearSVC-in-Pipeline": (
        lambda: make_pipeline(StandardScaler(), LinearSVC(random_state=0)),
        "decision_function",
    ),
    "LogisticRegression": (lambda: LogisticRegression(max_iter=1000), "predict_proba"),
    "RandomForestClassifier": (
        lambda: RandomForestClassifier(n_estimators=5, random_state=0),
        "predict_proba",
    ),
}


@pytest.mark.parametrize("name", list(CLASSIFIERS), ids=[f"onnx-{n}" for n in CLASSIFIERS])
def test_classifier_converts_to_a_label_and_a_score_matrix_without_zipmap(name: str, iris, tmp_path: Path):
    X, y = iris
    build, scores = CLASSIFIERS[name]
    estimator = _fit(build(), X, y)

    conversion = convert_onnx(estimator, X, tmp_path / "model.onnx")

    assert conversion.status is Status.CONVERTED, conversion.message
    model = onnx.load(str(conversion.path))
    assert [o.name for o in model.graph.output] == ["label", "probabilities"]
    assert all(o.type.HasField("tensor_type") for o in model.graph.output)  # not a sequence of maps
    assert "ZipMap" not in {node.op_type for node in model.graph.node}
    assert conversion.details.outputs == {"label": "predict", "probabilities": scores}
    raw = OnnxruntimeRuntime().evaluate(conversion.path, formats.FORMATS["onnx"].feeds(conversion, X))
    np.testing.assert_array_equal(raw["label"], estimator.predict(X))
    np.testing.assert_allclose(raw["probabilities"], getattr(estimator, scores)(X), atol=1e-4)


def test_options_follow_what_each_converter_declares(iris):
    X, y = iris
    svc, logreg = _fit(LinearSVC(random_state=0), X, y), _fit(LogisticRegression(max_iter=1000), X, y)
    pipeline = _fit(make_pipeline(StandardScaler(), LinearSVC(random_state=0)), X, y)

    assert "zipmap" not in allowed_options(svc) and "zipmap" in allowed_options(logreg)
    assert converter_options(svc) == {id(svc): {}}  # an entry, empty: see converter_options
    assert converter_options(logreg) == {id(logreg): {"zipmap": False}}
    assert converter_options(pipeline) == {id(pipeline.steps[-1][1]): {}}
    assert converter_options(_fit(LinearRegression(), X, y)) is None
    assert allowed_options(DummyClassifier()) == {}  # no converter: the conversion says so itself


# --- ONNX: what skl2onnx refuses is unsupported; a broken model fails -----------------------------------

#: name → (unfitted model skl2onnx does not support, as it is configured; skl2onnx's words).
ONNX_REFUSED: dict[str, tuple[Callable[[], object], str]] = {
    # no converter registered (MissingShapeCalculator)
    "DummyClassifier": (DummyClassifier, "Unable to find a shape calculator for type"),
    # NotImplementedError
    "KNeighborsClassifier-chebyshev": (
        lambda: KNeighborsClassifier(metric="chebyshev"),
        "metric='chebyshev' is not implemented",
    ),
    # RuntimeError worded as a refusal
    "KBinsDiscretizer-onehot": (lambda: KBinsDiscretizer(encode="onehot"), "onehot encoding not supported"),
    "RandomTreesEmbedding": (
        lambda: RandomTreesEmbedding(n_estimators=3, random_state=0),
        "cannot convert the model with sparse outputs",
    ),
}


@pytest.mark.parametrize("name", list(ONNX_REFUSED), ids=[f"onnx-{n}" for n in ONNX_REFUSED])
def test_what_skl2onnx_refuses_is_unsupported_in_its_own_words(name: str, iris, tmp_path: Path):
    X, y = iris
    build, words = ONNX_REFUSED[name]

    conversion = convert_onnx(_fit(build(), X, y), X, tmp_path / "model.onnx")

    assert conversion.status is Status.UNSUPPORTED, conversion.message
    assert words in conversion.message
    assert conversion.path is None and not (tmp_path / "model.onnx").exists()


def test_an_option_skl2onnx_refuses_is_a_refusal(iris):
    X, y = iris
    svc = _fit(LinearSVC(random_state=0), X, y)
    with pytest.raises(NameError, match=r"Option 'zipmap' not in \[.*\] for class 'LinearSVC'") as caught:
        skl2onnx.convert_sklearn(
            svc,
            initial_types=[("X", FloatTensorType([None, X.shape[1]]))],
            options={id(svc): {"zipmap": False}},
            target_opset=TARGET_OPSET,
        )
    assert refuses(caught.value)


def test_a_broken_model_is_a_failed_onnx_conversion(iris, tmp_path: Path):
    X, y = iris
    broken = _fit(LogisticRegression(max_iter=1000), X, y)
    del broken.classes_  # skl2onnx's converter crashes on it: a bug to see, not a gap in support

    conversion = convert_onnx(broken, X, tmp_path / "model.onnx")

    assert conversion.status is Status.FAILED
    assert conversion.message.startswith("TypeError:")


# --- PMML: what sklearn2pmml refuses is unsupported; a broken model fails ------------------------------

#: name → (unfitted model sklearn2pmml does not support, as it is configured; its words).
PMML_REFUSED: dict[str, tuple[Callable[[], object], str]] = {
    "BernoulliNB": (
        BernoulliNB,
        "org.jpmml.converter.UnsupportedFeatureException: Expected a categorical feature, got wildcard feature",
    ),
    "KNeighborsClassifier-chebyshev": (
        lambda: KNeighborsClassifier(metric="chebyshev"),
        "Attribute 'metric' has an unsupported value 'chebyshev'",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PMML_REFUSED), ids=[f"pmml-{n}" for n in PMML_REFUSED])
def test_what_sklearn2pmml_refuses_is_unsupported_in_its_own_words(name: str, iris, tmp_path: Path):
    X, y = iris
    build, words = PMML_REFUSED[name]

    conversion = formats.convert("pmml", _fit(build(), X, y), X, tmp_path)

    assert conversion.status is Status.UNSUPPORTED, conversion.message
    assert words in conversion.message
    assert conversion.message.splitlines()[0].startswith("org.jpmml.")  # the converter's exception first
    assert "ParityConverterServer refuses" not in conversion.message  # the blocked telemetry is its own line
    assert "blocked outgoing connection(s): https://telemetry.jpmml.org" in conversion.message
    assert conversion.path is None


@pytest.mark.slow
def test_a_broken_model_is_a_failed_pmml_conversion(iris, tmp_path: Path):
    X, y = iris
    broken = _fit(LogisticRegression(max_iter=1000), X, y)
    broken.coef_ = broken.coef_[:, :2]  # two coefficients for four inputs

    conversion = convert_pmml(broken, X, tmp_path / "model.pmml", shared_pmml_converter(), verify_rows=0)

    assert conversion.status is Status.FAILED, conversion.message
    assert "org.jpmml.converter.SchemaException: Expected 2 features, got 4" in conversion.message


@pytest.mark.slow
def test_a_pipeline_that_cannot_be_pickled_is_a_failed_pmml_conversion(iris, tmp_path: Path):
    X, y = iris
    model = _fit(make_pipeline(FunctionTransformer(lambda x: x), LogisticRegression(max_iter=1000)), X, y)

    conversion = convert_pmml(model, X, tmp_path / "model.pmml", shared_pmml_converter())

    assert conversion.status is Status.FAILED
    assert conversion.message.startswith("pickling the PMMLPipeline for the converter: ")
    assert "lambda" in conversion.message
