"""parity.formats.FORMATS on small real models: what converts, what each converter records, what it refuses.

Every (format, model) pair of the tables below gets one test, ids like ``pmml-RandomForestClassifier``. What
does not convert is listed as data (:data:`EXPECTED_STATUS`), bugs in :data:`XFAIL`. PMML conversions run in
the process's one warm converter JVM, so they are ``slow``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, is_classifier, is_regressor
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.semi_supervised import LabelSpreading

from parity.converters.onnx import FLOAT, TARGET_OPSET, input_spec
from parity.converters.onnx import precision_of as onnx_precision_of
from parity.converters.pmml import VERIFY_ROWS, target_field
from parity.converters.pmml import precision_of as pmml_precision_of
from parity.core.records import Conversion, OnnxInput
from parity.core.records import ConversionStatus as Status
from parity.validators import formats
from parity.validators.formats import FORMATS
from parity.validators.runtimes.onnx import OnnxruntimeRuntime
from parity.validators.runtimes.pmml import verification_rows

MIXED_NUMERIC = ["alcohol", "malic_acid", "ash", "magnesium", "color_intensity", "proline"]
MIXED_CATEGORIES = ["alcohol_band", "cellar"]


def _mixed_pipeline() -> Pipeline:
    """parity/demo.py's wine-mixed-types model: impute + scale numbers, one-hot strings, logistic regression."""
    prepare = ColumnTransformer(
        [
            ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), MIXED_NUMERIC),
            ("categories", OneHotEncoder(handle_unknown="ignore"), MIXED_CATEGORIES),
        ]
    )
    return Pipeline([("prepare", prepare), ("classify", LogisticRegression(max_iter=1000))])


#: name → (data fixture, unfitted model). Small on purpose: conversions take milliseconds.
MODELS: dict[str, tuple[str, Callable[[], object]]] = {
    "LogisticRegression": ("iris", lambda: LogisticRegression(max_iter=1000)),
    "RandomForestClassifier": ("iris", lambda: RandomForestClassifier(n_estimators=10, random_state=0)),
    "GradientBoostingRegressor": (
        "diabetes",
        lambda: GradientBoostingRegressor(n_estimators=20, random_state=0),
    ),
    # its PMML is a model chain that declares its (double) outputs after its float-input segments
    "GradientBoostingClassifier": (
        "iris",
        lambda: GradientBoostingClassifier(n_estimators=5, random_state=0),
    ),
    "HistGradientBoostingClassifier": (
        "iris",
        lambda: HistGradientBoostingClassifier(max_iter=20, random_state=0),
    ),
    "MLPClassifier": ("iris", lambda: MLPClassifier(hidden_layer_sizes=(8,), max_iter=200, random_state=0)),
    "StandardScaler": ("iris", StandardScaler),
    "MixedTypesPipeline": ("mixed", _mixed_pipeline),
}

#: Pairs that do not convert, and how they end. Every pair not listed must convert.
EXPECTED_STATUS: dict[str, Status] = {
    # a transformer-only PMML has no target or probability fields for Parity to compare
    "pmml-StandardScaler": Status.UNSUPPORTED,
}

#: Pairs that should convert and do not, because of a bug in Parity (strict: the fix must remove the entry).
XFAIL: dict[str, str] = {}

CASES = [
    pytest.param(
        fmt,
        name,
        id=f"{fmt}-{name}",
        marks=[
            *([pytest.mark.slow] if FORMATS[fmt].starts_jvm else []),
            *(
                [pytest.mark.xfail(strict=True, reason=XFAIL[f"{fmt}-{name}"])]
                if f"{fmt}-{name}" in XFAIL
                else []
            ),
        ],
    )
    for fmt in FORMATS
    for name in MODELS
]


def _fit(model, X: pd.DataFrame, y: pd.Series | None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


@pytest.fixture(scope="module")
def fitted(request) -> Callable[[str], tuple[object, pd.DataFrame]]:
    """``fitted(name)``: the model of :data:`MODELS` fitted on its data set (once per module), and X."""
    cache: dict[str, tuple[object, pd.DataFrame]] = {}

    def get(name: str) -> tuple[object, pd.DataFrame]:
        if name not in cache:
            data, build = MODELS[name]
            X, y = request.getfixturevalue(data)
            model = build()
            cache[name] = (_fit(model, X, None if name == "StandardScaler" else y), X)
        return cache[name]

    return get


def _roles(estimator: object) -> dict[str, str]:
    if is_classifier(estimator):
        return {"label": "predict", "probabilities": "predict_proba"}
    if is_regressor(estimator):
        return {"variable": "predict"}
    return {"variable": "transform"}


def _check_onnx(conversion: Conversion, estimator: object, X: pd.DataFrame) -> None:
    details = conversion.details
    model = onnx.load(str(conversion.path))
    graph_inputs = [i.name for i in model.graph.input]
    assert [entry.name for entry in details.inputs] == graph_inputs
    assert [c for entry in details.inputs for c in entry.columns] == list(X.columns)
    assert details.outputs == _roles(estimator)
    assert set(details.outputs) <= {o.name for o in model.graph.output}
    assert details.target_opset == {"ai.onnx": TARGET_OPSET[""], "ai.onnx.ml": TARGET_OPSET["ai.onnx.ml"]}
    assert details.opset == {o.domain or "ai.onnx": o.version for o in model.opset_import}
    # The pinned opsets are a ceiling: skl2onnx never writes a newer operator set than the target.
    for opset in model.opset_import:
        assert opset.version <= TARGET_OPSET[opset.domain if opset.domain == "ai.onnx.ml" else ""]
    assert details.precision == FLOAT


def _check_pmml(conversion: Conversion, estimator: object, X: pd.DataFrame) -> None:
    details = conversion.details
    assert details.target == target_field(X) == "y"
    classes = getattr(estimator, "classes_", None)
    assert details.classes == (None if classes is None else [str(c) for c in classes])
    expected_rows = min(VERIFY_ROWS, len(X)) if hasattr(estimator, "predict") else 0
    assert details.verification_rows == expected_rows
    assert verification_rows(conversion.path) == (expected_rows or None)
    assert details.precision == "float64"
    assert conversion.path.read_text(encoding="utf-8").lstrip().startswith("<?xml")


CHECK_DETAILS: dict[str, Callable[[Conversion, object, pd.DataFrame], None]] = {
    "onnx": _check_onnx,
    "pmml": _check_pmml,
}


def test_every_format_has_a_details_check():
    assert set(CHECK_DETAILS) == set(FORMATS)


@pytest.mark.parametrize(("fmt", "name"), CASES)
def test_convert(fmt: str, name: str, fitted, tmp_path: Path):
    estimator, X = fitted(name)

    conversion = formats.convert(fmt, estimator, X, tmp_path / "out")

    expected = EXPECTED_STATUS.get(f"{fmt}-{name}", Status.CONVERTED)
    assert conversion.status is expected, conversion.message
    assert conversion.format == fmt
    assert conversion.seconds >= 0
    if expected is not Status.CONVERTED:
        assert conversion.path is None
        assert conversion.message
        return
    assert conversion.ok
    assert conversion.path == tmp_path / "out" / FORMATS[fmt].filename
    assert conversion.path.stat().st_size > 0
    CHECK_DETAILS[fmt](conversion, estimator, X)
    assert conversion.to_json()["path"] == FORMATS[fmt].filename
    assert conversion.to_json()["status"] == "converted"


@pytest.mark.slow
def test_pmml_verification_rows_are_bounded_by_the_reference(fitted, tmp_path: Path):
    estimator, X = fitted("LogisticRegression")
    few = X.iloc[:30]

    conversion = formats.convert("pmml", estimator, few, tmp_path)

    assert conversion.ok, conversion.message
    assert conversion.details.verification_rows == min(VERIFY_ROWS, len(few)) == 30
    assert verification_rows(conversion.path) == 30


@pytest.mark.parametrize("name", ["LogisticRegression", "MixedTypesPipeline"])
def test_onnx_details_record_the_opsets_the_file_declares(name: str, fitted, tmp_path: Path):
    estimator, X = fitted(name)
    conversion = formats.convert("onnx", estimator, X, tmp_path)
    declared: dict[str, int] = {}
    for opset in onnx.load(str(conversion.path)).opset_import:
        domain = opset.domain or "ai.onnx"
        declared[domain] = max(declared.get(domain, 0), opset.version)

    assert conversion.details.opset == declared


# --- ONNX inputs ---------------------------------------------------------------------------------------


def test_input_spec_numeric_frame_is_one_matrix(iris):
    X, _ = iris
    assert input_spec(X) == [OnnxInput(name="X", columns=list(X.columns), dtype=FLOAT)]


def test_input_spec_bool_columns_count_as_numeric():
    X = pd.DataFrame({"a": [1.0, 2.0], "flag": [True, False]})
    assert input_spec(X) == [OnnxInput(name="X", columns=["a", "flag"], dtype=FLOAT)]


def test_input_spec_mixed_frame_is_one_input_per_column(mixed):
    X, _ = mixed
    spec = input_spec(X)
    assert [entry.columns for entry in spec] == [[c] for c in X.columns]
    assert {entry.name: entry.dtype for entry in spec} == {
        **dict.fromkeys(MIXED_NUMERIC, FLOAT),
        **dict.fromkeys(MIXED_CATEGORIES, "string"),
    }


def test_feeds_match_the_declared_dtypes_and_blank_missing_strings(mixed):
    X, _ = mixed
    X = X.iloc[:5].copy()
    X.loc[X.index[0], "cellar"] = None
    arrays = FORMATS["onnx"].feed_inputs(input_spec(X), X)
    assert set(arrays) == set(X.columns)
    assert arrays["alcohol"].dtype == np.float32
    assert arrays["alcohol"].shape == (5, 1)
    assert arrays["cellar"].dtype == object
    assert arrays["cellar"][0, 0] == ""
    assert np.isnan(arrays["ash"]).sum() == X["ash"].isna().sum()


def test_mixed_pipeline_converts_with_string_inputs_for_categories(fitted, tmp_path: Path):
    estimator, X = fitted("MixedTypesPipeline")
    conversion = formats.convert("onnx", estimator, X, tmp_path)
    assert conversion.ok, conversion.message
    graph = onnx.load(str(conversion.path)).graph
    elem_types = {i.name: i.type.tensor_type.elem_type for i in graph.input}
    assert elem_types == {
        **dict.fromkeys(MIXED_NUMERIC, onnx.TensorProto.FLOAT),
        **dict.fromkeys(MIXED_CATEGORIES, onnx.TensorProto.STRING),
    }


def test_column_name_with_slash_is_sanitised_and_recorded(tmp_path: Path):
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"ratio/total": rng.normal(size=60), "shop": rng.choice(["a", "b", "c"], size=60)})
    y = (X["ratio/total"] > 0).astype(int)
    model = Pipeline(
        [
            (
                "prepare",
                ColumnTransformer([("n", "passthrough", ["ratio/total"]), ("c", OneHotEncoder(), ["shop"])]),
            ),
            ("classify", LogisticRegression()),
        ]
    ).fit(X, y)

    conversion = formats.convert("onnx", model, X, tmp_path)

    assert conversion.ok, conversion.message
    graph_inputs = [i.name for i in onnx.load(str(conversion.path)).graph.input]
    slash = conversion.details.inputs[0]
    assert slash.columns == ["ratio/total"]
    assert slash.name in graph_inputs
    assert "/" not in slash.name
    raw = OnnxruntimeRuntime().evaluate(conversion.path, FORMATS["onnx"].feeds(conversion, X))
    np.testing.assert_allclose(raw["probabilities"], model.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(raw["label"], model.predict(X))


# --- what the converters refuse ------------------------------------------------------------------------


class HomeMadeClassifier(ClassifierMixin, BaseEstimator):
    """A classifier no converter has heard of."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


UNSUPPORTED_MODELS: dict[str, Callable[[], object]] = {
    "LabelSpreading": LabelSpreading,
    "HomeMadeClassifier": HomeMadeClassifier,
}
#: The converter's own words, per format.
UNSUPPORTED_WORDS: dict[str, str] = {
    "onnx": "Unable to find a shape calculator",
    "pmml": "is not a supported Estimator",
}


@pytest.mark.parametrize(
    ("fmt", "name"),
    [
        pytest.param(
            fmt,
            name,
            id=f"{fmt}-{name}",
            marks=[pytest.mark.slow] if FORMATS[fmt].starts_jvm else [],
        )
        for fmt in FORMATS
        for name in UNSUPPORTED_MODELS
    ],
)
def test_unsupported_estimator_is_a_result_not_an_exception(fmt: str, name: str, iris, tmp_path: Path):
    X, y = iris
    estimator = UNSUPPORTED_MODELS[name]().fit(X, y)

    conversion = formats.convert(fmt, estimator, X, tmp_path)

    assert conversion.path is None
    assert not (tmp_path / FORMATS[fmt].filename).exists()
    assert UNSUPPORTED_WORDS[fmt] in conversion.message
    assert name in conversion.message
    assert conversion.status is Status.UNSUPPORTED


def test_unknown_format_is_a_key_error_listing_the_known_ones(iris, tmp_path: Path):
    X, y = iris
    with pytest.raises(KeyError, match=r"no format 'joblib'; known formats: pmml, onnx"):
        formats.convert("joblib", LogisticRegression(max_iter=1000).fit(X, y), X, tmp_path)


@pytest.mark.slow
def test_failed_pmml_conversion_in_the_jvm_leaves_no_file(iris, tmp_path: Path):
    X, y = iris
    out = tmp_path / FORMATS["pmml"].filename
    out.write_text("stale artifact of an earlier conversion")

    conversion = formats.convert("pmml", LabelSpreading().fit(X, y), X, tmp_path)

    assert not conversion.ok
    assert "Failed to convert" in conversion.message
    assert not out.exists()


@pytest.mark.slow
def test_failed_pmml_preparation_leaves_no_file(iris, tmp_path: Path):
    X, y = iris
    estimator = LogisticRegression(max_iter=1000).fit(X, y)
    renamed = X.set_axis([f"f{i}" for i in range(X.shape[1])], axis=1)  # verify() cannot predict these
    out = tmp_path / FORMATS["pmml"].filename
    out.write_text("stale artifact of an earlier conversion")

    conversion = formats.convert("pmml", estimator, renamed, tmp_path)

    assert conversion.status is Status.FAILED
    assert conversion.message.startswith("preparing the PMMLPipeline:")
    assert not out.exists()


# --- precision, read from the artifact -------------------------------------------------------------------
def _pmml_with(*fields: str) -> str:
    body = "".join(
        f'<DataField name="f{i}" optype="continuous" dataType="{t}"/>' for i, t in enumerate(fields)
    )
    return f'<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><DataDictionary>{body}</DataDictionary></PMML>'


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param(("float", "float"), "float32", id="all-float"),
        pytest.param(("float", "double"), "float64", id="one-double"),
        pytest.param(("string", "integer"), "float64", id="no-float"),
    ],
)
def test_pmml_precision_is_read_from_the_file(fields, expected, tmp_path: Path):
    path = tmp_path / "model.pmml"
    path.write_text(_pmml_with(*fields))
    assert pmml_precision_of(path) == expected


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        pytest.param([onnx.TensorProto.FLOAT], "float32", id="float"),
        pytest.param([onnx.TensorProto.DOUBLE], "float64", id="double"),
        pytest.param([onnx.TensorProto.STRING, onnx.TensorProto.DOUBLE], "float64", id="string-and-double"),
        pytest.param([onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT], "float32", id="mixed"),
    ],
)
def test_onnx_precision_is_read_from_the_graph(inputs, expected):
    from onnx import helper

    graph = helper.make_graph(
        [], "g", [helper.make_tensor_value_info(f"x{i}", t, [None, 1]) for i, t in enumerate(inputs)], []
    )
    assert onnx_precision_of(helper.make_model(graph)) == expected
