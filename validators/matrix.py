"""The generated estimator matrix: every estimator kind both converters support, through Parity, each
non-pass cell checked independently.

The estimators come from :func:`sklearn.utils.all_estimators` intersected with what skl2onnx registers
(``skl2onnx._supported_operators``) and with what sklearn2pmml's Java side maps (the
``META-INF/sklearn2pmml.properties`` files of the JPMML-SkLearn jars sklearn2pmml ships: its Python side
has no list). :data:`ENTRIES` holds one entry per estimator kind (small, deterministic, fitted on a
bundled data set) plus common pipelines; an estimator of the intersection that is not run says why
(:data:`NOT_RUN`). What each cell is expected to be is data too (:data:`EXPECTED`): a cell that is not
``pass`` or ``unsupported`` is a confirmed defect of a converter or runtime (strict xfail) or a false
alarm of Parity's (non-strict xfail until the validator is fixed).

Each cell (estimator × format) is converted with :func:`parity.validators.formats.convert`, validated with
:func:`parity.validators.validate.validate_conversion` on this process only, and decided with
:func:`parity.core.records.decide_outcome`. A cell that did not pass is then checked without Parity's
mapping, comparison or tolerances (:func:`independent_check`): onnxruntime or jpmml_evaluator called
directly on the artifact, every output matched to the estimator's own ``predict``/``predict_proba``/...
"""

from __future__ import annotations

import re
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import (
    calibration,
    cluster,
    compose,
    cross_decomposition,
    decomposition,
    discriminant_analysis,
    ensemble,
    feature_extraction,
    feature_selection,
    impute,
    linear_model,
    model_selection,
    multiclass,
    multioutput,
    naive_bayes,
    neighbors,
    neural_network,
    pipeline,
    preprocessing,
    svm,
    tree,
)
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine

from parity.core.defaults import host_platform
from parity.core.records import Check, Conversion, ConversionStatus, Outcome, Verdict, decide_outcome
from parity.core.tables import table_of
from parity.registry import ModelRef, RegisteredModel
from parity.registry.predictions import reference_predictions

from .formats import FORMATS, convert
from .targets.table import Target
from .validate import ModelContext, remedied, sample_index, validate_conversion

#: The matrix runs on this process only: every runtime of each format, every reference row.
HOST_ONLY: dict[str, Target] = {"host": Target("host", host_platform(), "process")}
#: Reference rows per entry (evenly spread over the data set the estimator was fitted on).
REFERENCE_ROWS = 200

# --- the data sets -------------------------------------------------------------------------------------


def _iris() -> tuple[pd.DataFrame, pd.Series]:
    return load_iris(return_X_y=True, as_frame=True)


def _wine() -> tuple[pd.DataFrame, pd.Series]:
    return load_wine(return_X_y=True, as_frame=True)


def _breast_cancer() -> tuple[pd.DataFrame, pd.Series]:
    return load_breast_cancer(return_X_y=True, as_frame=True)


def _diabetes() -> tuple[pd.DataFrame, pd.Series]:
    return load_diabetes(return_X_y=True, as_frame=True)


def _iris_counts() -> tuple[pd.DataFrame, pd.Series]:
    """Iris measurements doubled and rounded: small non-negative integers (counts, categories)."""
    X, y = _iris()
    return (X * 2).round().astype(np.int64), y


def _iris_missing() -> tuple[pd.DataFrame, pd.Series]:
    """Iris with missing values in two columns."""
    X, y = _iris()
    X = X.copy()
    X.iloc[::7, 0] = np.nan
    X.iloc[3::11, 2] = np.nan
    return X, y


def _wine_mixed() -> tuple[pd.DataFrame, pd.Series]:
    """Wine with a string category (the colour intensity's tercile) instead of the colour intensity."""
    X, y = _wine()
    X = X.copy()
    band = pd.qcut(X.pop("color_intensity"), 3, labels=["low", "mid", "high"]).astype(str)
    X["color_band"] = band
    return X, y


def _wine_categories() -> tuple[pd.DataFrame, pd.Series]:
    """Two string categories only: the terciles of wine's colour intensity and hue."""
    X, y = _wine()
    cats = {
        f"{c}_band": pd.qcut(X[c], 3, labels=["low", "mid", "high"]).astype(str)
        for c in ("color_intensity", "hue")
    }
    return pd.DataFrame(cats), y


def _diabetes_two_targets() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Diabetes with a second target derived from the first and the BMI."""
    X, y = _diabetes()
    return X, pd.DataFrame({"progression": y, "derived": y / 2 + 100 * X["bmi"]})


@dataclass(frozen=True)
class Dataset:
    """A bundled data set with named columns."""

    name: str
    load: Callable[[], tuple[pd.DataFrame, Any]]


#: The data sets entries fit on, by name.
DATASETS: dict[str, Dataset] = table_of(
    "dataset",
    [
        Dataset("iris", _iris),
        Dataset("wine", _wine),
        Dataset("breast_cancer", _breast_cancer),
        Dataset("diabetes", _diabetes),
        Dataset("iris_counts", _iris_counts),
        Dataset("iris_missing", _iris_missing),
        Dataset("wine_mixed", _wine_mixed),
        Dataset("wine_categories", _wine_categories),
        Dataset("diabetes_two_targets", _diabetes_two_targets),
    ],
)

# --- the entries ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One row of the matrix: an estimator kind, how to build it small and deterministic, its data.

    Attributes
    ----------
    name : str
        The row's name (test ids ``<format>-<name>``).
    build : callable
        Returns the unfitted estimator.
    dataset : str
        A key of :data:`DATASETS`.
    covers : tuple of str
        The estimator classes of the supported intersection this entry exercises.
    """

    name: str
    build: Callable[[], Any]
    dataset: str
    covers: tuple[str, ...] = ()

    def classes(self) -> tuple[str, ...]:
        """The estimator classes this entry stands for (its own class when none were given)."""
        return self.covers or (type(self.build()).__name__,)


def _e(
    build: Callable[[], Any], dataset: str, name: str | None = None, covers: tuple[str, ...] = ()
) -> Entry:
    return Entry(name or type(build()).__name__, build, dataset, covers)


_RS = {"random_state": 0}
_lr = lambda: linear_model.LogisticRegression(max_iter=1000)  # noqa: E731
_dt = lambda: tree.DecisionTreeClassifier(max_depth=3, **_RS)  # noqa: E731
_scaled = lambda est: pipeline.make_pipeline(preprocessing.StandardScaler(), est)  # noqa: E731


def _classifiers() -> list[Entry]:
    lm, ens = linear_model, ensemble
    return [
        _e(_lr, "iris"),
        _e(lambda: lm.LogisticRegressionCV(cv=3, max_iter=1000), "iris"),
        _e(lambda: lm.RidgeClassifier(), "iris"),
        _e(lambda: lm.RidgeClassifierCV(), "iris"),
        _e(lambda: lm.Perceptron(**_RS), "iris"),
        _e(lambda: lm.SGDClassifier(**_RS), "iris"),
        _e(lambda: svm.LinearSVC(**_RS), "iris"),
        _e(lambda: svm.SVC(**_RS), "iris"),
        _e(lambda: svm.SVC(probability=True, **_RS), "iris", "SVC(probability=True)"),
        _e(lambda: _scaled(svm.SVC(**_RS)), "breast_cancer", "StandardScaler+SVC(binary)", ("SVC",)),
        _e(lambda: svm.NuSVC(**_RS), "iris"),
        _e(lambda: discriminant_analysis.LinearDiscriminantAnalysis(), "iris"),
        _e(lambda: naive_bayes.GaussianNB(), "iris"),
        _e(lambda: naive_bayes.BernoulliNB(binarize=3.0), "iris"),
        _e(lambda: naive_bayes.MultinomialNB(), "iris_counts"),
        _e(lambda: naive_bayes.ComplementNB(), "iris_counts"),
        _e(lambda: naive_bayes.CategoricalNB(), "iris_counts"),
        _e(lambda: neighbors.KNeighborsClassifier(), "iris"),
        _e(lambda: neural_network.MLPClassifier(hidden_layer_sizes=(10,), max_iter=300, **_RS), "iris"),
        _e(_dt, "wine"),
        _e(lambda: tree.ExtraTreeClassifier(max_depth=4, **_RS), "wine"),
        _e(lambda: ens.RandomForestClassifier(n_estimators=10, max_depth=5, **_RS), "wine"),
        _e(lambda: ens.ExtraTreesClassifier(n_estimators=10, max_depth=5, **_RS), "wine"),
        _e(lambda: ens.GradientBoostingClassifier(n_estimators=10, max_depth=2, **_RS), "breast_cancer"),
        _e(lambda: ens.HistGradientBoostingClassifier(max_iter=10, **_RS), "breast_cancer"),
        _e(lambda: ens.AdaBoostClassifier(n_estimators=10, **_RS), "iris"),
        _e(lambda: ens.BaggingClassifier(_dt(), n_estimators=5, **_RS), "iris"),
        _e(lambda: ens.VotingClassifier([("lr", _lr()), ("dt", _dt())], voting="soft"), "iris"),
        _e(lambda: ens.StackingClassifier([("lr", _lr()), ("dt", _dt())], _lr(), cv=3), "iris"),
        _e(lambda: calibration.CalibratedClassifierCV(naive_bayes.GaussianNB(), cv=3), "iris"),
        _e(lambda: multiclass.OneVsRestClassifier(_lr()), "iris"),
        _e(lambda: model_selection.GridSearchCV(_lr(), {"C": [0.1, 1.0]}, cv=3), "iris"),
        _e(lambda: model_selection.TunedThresholdClassifierCV(_dt(), cv=3, **_RS), "breast_cancer"),
        _e(lambda: feature_selection.RFE(_lr(), n_features_to_select=2), "iris"),
        _e(lambda: feature_selection.RFECV(_lr(), cv=3), "iris"),
    ]


def _regressors() -> list[Entry]:
    lm, ens = linear_model, ensemble
    plain = [
        lm.LinearRegression,
        lm.Ridge,
        lm.Lasso,
        lm.ElasticNet,
        lm.Lars,
        lm.LassoLars,
        lm.BayesianRidge,
        lm.ARDRegression,
        lm.OrthogonalMatchingPursuit,
        lm.PoissonRegressor,
        lm.GammaRegressor,
        lm.TweedieRegressor,
    ]
    return [
        *(_e(cls, "diabetes") for cls in plain),
        _e(lambda: lm.RidgeCV(), "diabetes"),
        _e(lambda: lm.LassoCV(cv=3), "diabetes"),
        _e(lambda: lm.ElasticNetCV(cv=3), "diabetes"),
        _e(lambda: lm.LarsCV(cv=3), "diabetes"),
        _e(lambda: lm.LassoLarsCV(cv=3), "diabetes"),
        _e(lambda: lm.OrthogonalMatchingPursuitCV(cv=3), "diabetes"),
        _e(lambda: lm.HuberRegressor(max_iter=1000), "diabetes"),
        _e(lambda: lm.QuantileRegressor(alpha=0.0), "diabetes"),
        _e(lambda: lm.TheilSenRegressor(max_subpopulation=200, **_RS), "diabetes"),
        _e(lambda: lm.SGDRegressor(**_RS), "diabetes"),
        _e(lambda: svm.LinearSVR(max_iter=5000, **_RS), "diabetes"),
        _e(lambda: svm.SVR(), "diabetes"),
        _e(lambda: svm.NuSVR(), "diabetes"),
        _e(lambda: cross_decomposition.PLSRegression(n_components=2), "diabetes"),
        _e(lambda: neighbors.KNeighborsRegressor(), "diabetes"),
        _e(lambda: neural_network.MLPRegressor(hidden_layer_sizes=(10,), max_iter=300, **_RS), "diabetes"),
        _e(lambda: tree.DecisionTreeRegressor(max_depth=4, **_RS), "diabetes"),
        _e(lambda: tree.ExtraTreeRegressor(max_depth=4, **_RS), "diabetes"),
        _e(lambda: ens.RandomForestRegressor(n_estimators=10, max_depth=5, **_RS), "diabetes"),
        _e(lambda: ens.ExtraTreesRegressor(n_estimators=10, max_depth=5, **_RS), "diabetes"),
        _e(lambda: ens.GradientBoostingRegressor(n_estimators=20, **_RS), "diabetes"),
        _e(lambda: ens.HistGradientBoostingRegressor(max_iter=10, **_RS), "diabetes"),
        _e(lambda: ens.AdaBoostRegressor(n_estimators=10, **_RS), "diabetes"),
        _e(lambda: ens.BaggingRegressor(n_estimators=5, **_RS), "diabetes"),
        _e(
            lambda: ens.VotingRegressor(
                [("ridge", lm.Ridge()), ("dt", tree.DecisionTreeRegressor(max_depth=3))]
            ),
            "diabetes",
        ),
        _e(
            lambda: ens.StackingRegressor(
                [("ridge", lm.Ridge()), ("knn", neighbors.KNeighborsRegressor())], lm.Ridge(), cv=3
            ),
            "diabetes",
        ),
        _e(lambda: multioutput.MultiOutputRegressor(lm.Ridge()), "diabetes_two_targets"),
    ]


def _unsupervised() -> list[Entry]:
    return [
        _e(lambda: cluster.KMeans(3, n_init=3, **_RS), "iris"),
        _e(lambda: cluster.MiniBatchKMeans(3, n_init=3, **_RS), "iris"),
        _e(lambda: ensemble.IsolationForest(n_estimators=10, **_RS), "iris"),
        _e(lambda: svm.OneClassSVM(), "iris"),
        _e(lambda: linear_model.SGDOneClassSVM(**_RS), "iris"),
    ]


def _transformers() -> list[Entry]:
    pre, fs, dec = preprocessing, feature_selection, decomposition
    return [
        _e(pre.StandardScaler, "iris"),
        _e(pre.MinMaxScaler, "iris"),
        _e(pre.MaxAbsScaler, "iris"),
        _e(pre.RobustScaler, "iris"),
        _e(pre.Normalizer, "iris"),
        _e(lambda: pre.Binarizer(threshold=3.0), "iris"),
        _e(lambda: pre.PolynomialFeatures(2), "iris"),
        _e(lambda: pre.PowerTransformer(), "iris"),
        _e(lambda: pre.QuantileTransformer(n_quantiles=50), "iris"),
        _e(lambda: pre.KBinsDiscretizer(3, encode="ordinal", strategy="uniform"), "iris"),
        _e(lambda: pre.FunctionTransformer(), "iris"),
        _e(lambda: pre.OneHotEncoder(sparse_output=False), "wine_categories"),
        _e(lambda: pre.OrdinalEncoder(), "wine_categories"),
        _e(lambda: pre.TargetEncoder(**_RS), "wine_categories"),
        _e(lambda: impute.SimpleImputer(), "iris_missing"),
        _e(lambda: dec.PCA(2), "iris"),
        _e(lambda: dec.IncrementalPCA(2), "iris"),
        _e(lambda: dec.TruncatedSVD(2, **_RS), "iris"),
        _e(lambda: feature_extraction.text.TfidfTransformer(), "iris_counts"),
        _e(lambda: fs.VarianceThreshold(0.2), "iris"),
        _e(lambda: fs.SelectKBest(k=2), "iris"),
        _e(lambda: fs.SelectPercentile(percentile=50), "iris"),
        _e(lambda: fs.SelectFpr(), "iris"),
        _e(lambda: fs.SelectFdr(), "iris"),
        _e(lambda: fs.SelectFwe(), "iris"),
        _e(lambda: fs.GenericUnivariateSelect(mode="k_best", param=2), "iris"),
        _e(lambda: fs.SelectFromModel(_lr()), "iris"),
    ]


def _column_transformer() -> pipeline.Pipeline:
    X, _ = _wine_mixed()
    numeric = [c for c in X.columns if c != "color_band"]
    columns = compose.ColumnTransformer(
        [
            ("cat", preprocessing.OneHotEncoder(handle_unknown="ignore"), ["color_band"]),
            ("num", preprocessing.StandardScaler(), numeric),
        ]
    )
    return pipeline.make_pipeline(columns, _lr())


def _pipelines() -> list[Entry]:
    pre = preprocessing
    return [
        _e(
            lambda: _scaled(_lr()),
            "breast_cancer",
            "StandardScaler+LogisticRegression",
            ("Pipeline", "StandardScaler"),
        ),
        _e(
            _column_transformer,
            "wine_mixed",
            "ColumnTransformer(OneHotEncoder,StandardScaler)+LogisticRegression",
            ("ColumnTransformer", "OneHotEncoder"),
        ),
        _e(
            lambda: pipeline.make_pipeline(impute.SimpleImputer(), _lr()),
            "iris_missing",
            "SimpleImputer+LogisticRegression",
            ("SimpleImputer",),
        ),
        _e(
            lambda: pipeline.make_pipeline(decomposition.PCA(2), _lr()),
            "iris",
            "PCA+LogisticRegression",
            ("PCA",),
        ),
        _e(
            lambda: pipeline.make_pipeline(pre.PolynomialFeatures(2), linear_model.Ridge()),
            "diabetes",
            "PolynomialFeatures+Ridge",
            ("PolynomialFeatures",),
        ),
        _e(
            lambda: pipeline.make_pipeline(
                pre.MinMaxScaler(), neural_network.MLPRegressor(hidden_layer_sizes=(10,), max_iter=300, **_RS)
            ),
            "diabetes",
            "MinMaxScaler+MLPRegressor",
            ("MinMaxScaler",),
        ),
        _e(
            lambda: pipeline.make_pipeline(feature_selection.SelectKBest(k=2), _lr()),
            "iris",
            "SelectKBest+LogisticRegression",
            ("SelectKBest",),
        ),
        _e(
            lambda: pipeline.make_pipeline(
                pre.KBinsDiscretizer(3, encode="onehot-dense", strategy="uniform"), _lr()
            ),
            "iris",
            "KBinsDiscretizer+LogisticRegression",
            ("KBinsDiscretizer",),
        ),
        _e(
            lambda: pipeline.make_pipeline(
                pipeline.make_union(decomposition.PCA(2), feature_selection.SelectKBest(k=2)), _lr()
            ),
            "iris",
            "FeatureUnion(PCA,SelectKBest)+LogisticRegression",
            ("FeatureUnion",),
        ),
        _e(
            lambda: pipeline.make_pipeline(
                pre.StandardScaler(), ensemble.RandomForestClassifier(n_estimators=10, max_depth=5, **_RS)
            ),
            "wine",
            "StandardScaler+RandomForestClassifier",
            ("Pipeline",),
        ),
    ]


#: Every entry of the matrix, by name, in report order.
ENTRIES: dict[str, Entry] = table_of(
    "matrix entry", [*_classifiers(), *_regressors(), *_unsupervised(), *_transformers(), *_pipelines()]
)

#: Estimators of the supported intersection that the matrix does not run, and why.
NOT_RUN: dict[str, str] = {
    "CountVectorizer": "takes one column of raw text; Parity's reference rows are tabular columns",
    "TfidfVectorizer": "takes one column of raw text; Parity's reference rows are tabular columns",
    "DictVectorizer": "takes a list of dicts, not a DataFrame; Parity's reference rows are tabular columns",
    "LabelEncoder": "encodes the target y, not the rows X: nothing to convert apart from a model",
    "LabelBinarizer": "encodes the target y, not the rows X: nothing to convert apart from a model",
    "MultiOutputClassifier": "Parity cannot register it: reference_predictions makes one array of "
    "predict_proba's per-target list (ValueError: inhomogeneous shape), a registry gap",
    "NearestNeighbors": "has no predict, predict_proba, decision_function or transform: Parity has no "
    "reference output to compare (kneighbors only)",
}


# --- what each cell is ---------------------------------------------------------------------------------


class Kind(StrEnum):
    """What a cell of the matrix is, independently of what Parity said."""

    PASS = "pass"
    #: the converter refused the estimator (or Parity refuses to validate that artifact kind)
    UNSUPPORTED = "unsupported"
    #: the artifact really is wrong against scikit-learn, checked without Parity
    DEFECT = "confirmed defect"
    #: the artifact is right, checked without Parity, and Parity rejected it
    FALSE_ALARM = "false alarm"
    #: the harness or Parity raised
    CRASH = "crash"


@dataclass(frozen=True)
class Expected:
    """A cell that is known not to pass, with the reason (an upstream issue, or what goes wrong)."""

    kind: Kind
    reason: str


def _unsupported(reason: str) -> Expected:
    return Expected(Kind.UNSUPPORTED, reason)


def _defect(reason: str) -> Expected:
    return Expected(Kind.DEFECT, reason)


def _false_alarm(reason: str) -> Expected:
    return Expected(Kind.FALSE_ALARM, f"false alarm: {reason}")


_SELECTOR = (
    "sklearn2pmml 0.133.1 with scikit-learn 1.9.0 cannot convert a fitted selector: 'The feature initializer "
    "object (Python class sklearn2pmml.SelectorProxy) does not specify feature type information' (also "
    "through its own PMMLPipeline.fit + sklearn2pmml())"
)
_EDGE = (
    "values lying exactly on a KBinsDiscretizer bin edge (iris has them: 2.8, 3.6, 5.5, 6.7) land one bin "
    "off: scikit-learn 1.9 digitizes against its double edges (2.8000000000000003..., uniform edges from "
    "float arithmetic: scikit-learn#30924), "
)

#: ``(format, entry)`` → what the cell is when it is not a plain pass, measured December 2026 (scikit-learn
#: 1.9.0, skl2onnx 1.20.0, onnxruntime 1.32.0, sklearn2pmml 0.133.1, jpmml_evaluator 0.16.0, pypmml 1.5.8),
#: each non-pass cell checked independently (see :func:`independent_check`).
EXPECTED: dict[tuple[str, str], Expected] = {
    # --- confirmed defects: the artifact is wrong (or cannot be made or run) whoever checks it ---------
    ("pmml", "Perceptron"): _defect(
        "sklearn2pmml writes Perceptron's one-vs-rest as logit-normalised segments: decision values above ~37 "
        "saturate to 1.0 in double, the classes tie and JPMML picks the first (13 of 150 iris rows)"
    ),
    ("pmml", "CalibratedClassifierCV"): _defect(
        "JPMML gives probability 0 for every class of the calibrated GaussianNB PMML (labels right, "
        "probabilities off by up to 0.92)"
    ),
    ("pmml", "OneVsRestClassifier"): _defect(
        "JPMML cannot evaluate sklearn2pmml's OneVsRest PMML with integer labels: NumberFormatException for "
        "input string '(other)' on every row (pypmml evaluates it within 4.4e-16)"
    ),
    ("pmml", "StackingRegressor"): _defect(
        "JPMML cannot evaluate the stacked KNeighborsRegressor: MissingAttributeException 'Required "
        "attribute InstanceField@field is not defined' on every row"
    ),
    ("pmml", "RFE"): _defect(_SELECTOR),
    ("pmml", "RFECV"): _defect(_SELECTOR),
    ("pmml", "SelectKBest+LogisticRegression"): _defect(_SELECTOR),
    ("onnx", "RFE"): _defect(
        "skl2onnx converts RFE as its transform only (the selected columns): no label or probability output, "
        "so nothing RFE.predict gives can be served ('no output matched')"
    ),
    ("onnx", "RFECV"): _defect(
        "skl2onnx converts RFECV as its transform only (the selected columns): no label or probability "
        "output, so nothing RFECV.predict gives can be served ('no output matched')"
    ),
    ("onnx", "KBinsDiscretizer"): _defect(
        _EDGE + "skl2onnx compares float32 inputs with float32-rounded edges (18 of 150 rows; double inputs "
        "would be the remedy)"
    ),
    ("onnx", "KBinsDiscretizer+LogisticRegression"): _defect(
        _EDGE + "skl2onnx compares in float32 (1 of 150 rows: the label flips, probabilities 0.18 off)"
    ),
    ("pmml", "KBinsDiscretizer+LogisticRegression"): _defect(
        _EDGE + "sklearn2pmml's closedOpen intervals put 2.8 in the upper bin (1 of 150 rows: the label "
        "flips, probabilities 0.18 off)"
    ),
    # --- false alarms: the artifact is right, checked independently, and Parity rejects it: none ---------
    ("pmml", "AdaBoostClassifier"): _unsupported(
        "InvalidLabelException 'Expected 2 target categories, got 3': JPMML-SkLearn converts binary AdaBoost only"
    ),
    # --- unsupported ------------------------------------------------------------------------------------
    ("onnx", "VotingClassifier"): _unsupported("skl2onnx: flatten_transform==True is not implemented yet"),
    ("pmml", "BernoulliNB"): _unsupported(
        "UnsupportedFeatureException: JPMML-SkLearn expects categorical inputs"
    ),
    ("pmml", "CategoricalNB"): _unsupported(
        "UnsupportedFeatureException: JPMML-SkLearn expects categorical inputs"
    ),
    ("pmml", "MultiOutputRegressor"): _unsupported("UnsupportedLabelException: one target only"),
    ("pmml", "TunedThresholdClassifierCV"): _unsupported(
        "InvalidAttributeException: 'response_method' has an unsupported value 'auto' (scikit-learn's default)"
    ),
    ("onnx", "TargetEncoder"): _unsupported("skl2onnx supports TargetEncoder for binary or 1-d targets only"),
}


#: Parity converts no transformer-only PMML (it compares PMML through target and probability fields).
EXPECTED.update(
    {
        ("pmml", name): _unsupported("Parity refuses transformer-only PMML: no target or probability fields")
        for name, entry in ENTRIES.items()
        if not hasattr(entry.build(), "predict")
    }
)


def expected(fmt: str, name: str) -> Expected:
    """What cell ``fmt``-``name`` is expected to be.

    Parameters
    ----------
    fmt : str
        A key of :data:`parity.validators.formats.FORMATS`.
    name : str
        A key of :data:`ENTRIES`.

    Returns
    -------
    Expected
        The entry of :data:`EXPECTED`, or ``pass`` with no reason.
    """
    return EXPECTED.get((fmt, name), Expected(Kind.PASS, ""))


# --- fitting and running a cell ------------------------------------------------------------------------


@dataclass(frozen=True)
class Fitted:
    """An entry fitted on its data set, registered in memory with its reference rows."""

    entry: Entry
    model: RegisteredModel

    @property
    def estimator(self) -> Any:
        return self.model.estimator

    @property
    def reference(self) -> pd.DataFrame:
        return self.model.reference


def fit(entry: Entry) -> Fitted:
    """Fit ``entry`` on its data set and register it in memory, as the registry would load it.

    Parameters
    ----------
    entry : Entry

    Returns
    -------
    Fitted
        With :data:`REFERENCE_ROWS` evenly spread reference rows and their reference predictions.
    """
    X, y = DATASETS[entry.dataset].load()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of deliberately small fits
        estimator = entry.build().fit(X, y)
    reference = X.iloc[sample_index(len(X), REFERENCE_ROWS)].reset_index(drop=True)
    model = RegisteredModel(
        ref=ModelRef(f"matrix-{re.sub(r'[^a-z0-9]+', '-', entry.name.lower()).strip('-')}", 1),
        path=Path("."),
        # in memory, never written: no registration record, and its contexts pass tolerances={} so that
        # nothing reads one (as tests/validators/test_validate.py's registered() does)
        record={},  # type: ignore[arg-type]
        estimator=estimator,
        reference=reference,
        predictions=reference_predictions(estimator, reference),
    )
    return Fitted(entry, model)


@dataclass(frozen=True)
class Cell:
    """One estimator × format: what Parity said, and what the cell is.

    Attributes
    ----------
    entry, format : str
    outcome : str
        Parity's outcome for this format alone (:func:`parity.core.records.decide_outcome`), or ``crash``.
    kind : Kind
        What the cell is, with the independent check's word for every cell that did not pass.
    deviations : dict of str to float
        Per reference output, the largest absolute deviation any runtime showed (labels: rows that differ).
    reason : str
        The first failing check's one-line reason (runtime/output: explanation).
    evidence : str
        What the independent check found (empty for a cell that passed).
    not_compared : tuple of str
        Reference outputs that no runtime of the format compared (a gap even where the cell passed).
    seconds : float
    """

    entry: str
    format: str
    outcome: str
    kind: Kind
    deviations: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    evidence: str = ""
    not_compared: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def expected(self) -> Expected:
        return expected(self.format, self.entry)


def _one_line(text: str, limit: int = 240) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _first_failure(checks: Iterable[Check]) -> str:
    """The one-line reason of the first blocking check that did not pass (else the first non-blocking one)."""
    failing = [c for c in checks if c.verdict not in (Verdict.PASS, Verdict.NOT_COVERED)]
    for check in sorted(failing, key=lambda c: not c.required):
        return _one_line(f"{check.runtime}/{check.output}: {check.verdict}: {check.explanation}")
    return ""


#: Check kinds that compare no output with scikit-learn's.
_NOT_COMPARISONS = ("conversion", "verification", "coverage")


def _comparisons(checks: Iterable[Check]) -> Iterator[Check]:
    for check in checks:
        if check.kind not in _NOT_COMPARISONS and check.output != "*" and check.against == "scikit-learn":
            yield check


def _deviations(checks: Iterable[Check]) -> dict[str, float]:
    """Per output, the largest deviation over the blocking runtimes: ``max_abs``, or rows outside for labels."""
    found: dict[str, float] = {}
    for check in _comparisons(c for c in checks if c.required):
        value = check.max_abs if check.max_abs is not None else float(check.n_outside)
        found[check.output] = max(found.get(check.output, 0.0), value)
    return found


def run_cell(fitted: Fitted, fmt: str, out_dir: Path) -> Cell:
    """Convert, validate on this process, decide, and check independently what did not pass.

    Parameters
    ----------
    fitted : Fitted
    fmt : str
        A key of :data:`parity.validators.formats.FORMATS`.
    out_dir : Path
        Where the artifact is written.

    Returns
    -------
    Cell
        ``crash`` (never an exception) when Parity or the harness raised.
    """
    start = time.perf_counter()
    name = fitted.entry.name
    try:
        with warnings.catch_warnings():
            # third-party numerics warnings (onnx's reference evaluator taking log(0)...) are not verdicts
            warnings.simplefilter("ignore")
            conversion = convert(fmt, fitted.estimator, fitted.reference, out_dir)
            context = ModelContext(fitted.model, tolerances={})
            checks = validate_conversion(context, conversion, targets=HOST_ONLY)
            # as the flow does: a float32 artifact failing a comparison gets its double-precision variant
            made, checks = remedied(context, conversion, checks, out_dir / "remedy", HOST_ONLY)
            outcome = decide_outcome(checks, conversion.status is ConversionStatus.UNSUPPORTED)
            variants = [c for name, c in made.items() if name != conversion.name]
            kind, evidence = classify(fmt, fitted, conversion, outcome, variants)
    except Exception as err:
        reason = _one_line(f"{type(err).__name__}: {err}")
        return Cell(name, fmt, "crash", Kind.CRASH, reason=reason, seconds=time.perf_counter() - start)
    return Cell(
        name,
        fmt,
        str(outcome),
        kind,
        _deviations(checks),
        _first_failure(checks),
        evidence,
        _not_compared(fitted, conversion, checks),
        time.perf_counter() - start,
    )


def _not_compared(fitted: Fitted, conversion: Conversion, checks: Iterable[Check]) -> tuple[str, ...]:
    """The reference outputs no runtime compared, for a conversion that made an artifact."""
    if not conversion.ok:
        return ()
    compared = {check.output for check in _comparisons(checks)}
    return tuple(output for output in fitted.model.predictions if output not in compared)


# --- the independent check -----------------------------------------------------------------------------

#: How far (as a fraction of the output's scale, ``max(1, max |expected|)``) an artifact's value may be
#: from scikit-learn's, on the original or the float32-rounded row, for the independent check to call it
#: right: float32 arithmetic accumulates well below 1e-4 on these small models; doubles below 1e-6.
RIGHT_WITHIN: dict[str, float] = {"onnx": 1e-4, "pmml": 1e-6}
#: Probabilities of the two most likely classes closer than this make a label flip a tie, not an error.
TIE = 1e-6
#: The estimator methods the independent check compares, the first ones deciding whether it is right.
METHODS: tuple[str, ...] = ("predict", "predict_proba", "transform", "decision_function", "score_samples")
#: The outputs that decide; the others are reported only (their meaning may differ between engines).
DECIDING: tuple[str, ...] = ("predict", "predict_proba")
# sklearn2pmml's words for "no converter for this", the Parity-side ones included
_REFUSED = re.compile(
    r"not supported|Unsupported\w*Exception|unsupported value|Expected \d+ target categories|has no predict"
)


def _rounded(X: pd.DataFrame) -> pd.DataFrame:
    X = X.copy()
    for column in X.columns:
        if pd.api.types.is_float_dtype(X[column]):
            X[column] = X[column].astype(np.float32).astype(np.float64)
    return X


def _estimator_outputs(estimator: Any, X: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every output of :data:`METHODS` the estimator has, on ``X``, as dense arrays."""
    outputs: dict[str, np.ndarray] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method in METHODS:
            if not hasattr(estimator, method):
                continue
            try:
                result = getattr(estimator, method)(X)
            except Exception:
                continue  # a method that does not apply (transform of a fitted selector's wrapper...)
            result = result.toarray() if hasattr(result, "toarray") else result
            if isinstance(result, list):  # multi-output predict_proba: one array per target
                continue
            outputs[method] = np.asarray(result)
    return outputs


def _layouts(candidate: np.ndarray, n: int, shape: tuple[int, ...]) -> Iterator[tuple[str, np.ndarray]]:
    """The ways a runtime's array may lay out an output of ``shape`` (``n`` rows)."""
    c = np.asarray(candidate)
    if c.shape == shape:
        yield "as is", c
    if c.size == int(np.prod(shape)) and c.shape != shape:
        yield "reshaped", c.reshape(shape)
    if len(shape) == 1 and c.ndim == 2 and c.shape[0] == n:
        for j in range(c.shape[1]):
            yield f"column {j}", c[:, j]


def _as_float(values: np.ndarray) -> np.ndarray | None:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def _label_misses(expected: tuple[np.ndarray, np.ndarray], actual: np.ndarray, ties: np.ndarray) -> int:
    """Rows whose label differs from scikit-learn's on both the original and the rounded row, tie or not."""

    def same(e: np.ndarray) -> np.ndarray:
        fe, fa = _as_float(e), _as_float(actual)
        if fe is not None and fa is not None:
            return fe == fa
        return np.asarray(e).astype(str) == np.asarray(actual).astype(str)

    return int((~(same(expected[0]) | same(expected[1]) | ties)).sum())


def _numeric_gap(expected: tuple[np.ndarray, np.ndarray], actual: np.ndarray) -> float | None:
    a = _as_float(actual)
    e0, e1 = _as_float(expected[0]), _as_float(expected[1])
    if a is None or e0 is None or e1 is None:
        return None
    scale = max(1.0, float(np.nanmax(np.abs(e0))) if e0.size else 1.0)
    gap = np.minimum(np.abs(a - e0), np.abs(a - e1))
    gap = np.where(np.isnan(a) & np.isnan(e0), 0.0, gap)
    return float(np.nanmax(np.where(np.isnan(gap), np.inf, gap))) / scale if gap.size else 0.0


def _variants(layout: str, values: np.ndarray, label: bool) -> Iterator[tuple[str, np.ndarray]]:
    """The array as laid out, and for numbers negated, and its square root (squared distances)."""
    yield layout, values
    numbers = None if label else _as_float(values)
    if numbers is not None:
        yield f"{layout}, negated", -numbers
        if numbers.size and np.nanmin(numbers) >= 0:
            yield f"{layout}, square root", np.sqrt(numbers)


@dataclass(frozen=True)
class Match:
    """The best counterpart of one estimator output among a runtime's arrays."""

    output: str
    #: label: rows that differ; numbers: the largest gap as a fraction of the output's scale
    gap: float
    where: str


def _best_match(
    output: str,
    expected: tuple[np.ndarray, np.ndarray],
    candidates: dict[str, np.ndarray],
    ties: np.ndarray,
    label: bool,
) -> Match | None:
    """The candidate array (in any known layout, sign flipped or not) closest to ``expected``."""
    n, shape = len(expected[0]), expected[0].shape
    best: Match | None = None
    for name, candidate in candidates.items():
        for layout, values in _layouts(candidate, n, shape):
            for how, v in _variants(layout, values, label):
                gap = float(_label_misses(expected, v, ties)) if label else _numeric_gap(expected, v)
                if gap is not None and (best is None or gap < best.gap):
                    best = Match(output, gap, f"{name} ({how})")
    return best


def _onnx_arrays(path: Path, X: pd.DataFrame) -> dict[str, np.ndarray]:
    """onnxruntime's outputs for ``X``, fed as the graph declares its inputs (one matrix, or per column)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    if len(inputs) == 1 and len(X.columns) > 1:
        blocks = {inputs[0].name: X}
    else:
        blocks = {i.name: X[[c]] for i, c in zip(inputs, X.columns, strict=True)}
    feeds = {}
    for entry in inputs:
        block = blocks[entry.name]
        if entry.type == "tensor(string)":
            feeds[entry.name] = block.astype(str).to_numpy(object)
        else:
            feeds[entry.name] = block.to_numpy(dtype=np.float64).astype(np.float32)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, (_dense(v) for v in session.run(None, feeds)), strict=True))


def _dense(values: Any) -> np.ndarray:
    """An output as an array; ZipMap's list of ``{class: probability}`` as a matrix in its key order."""
    if isinstance(values, list) and values and isinstance(values[0], dict):
        keys = list(values[0])
        return np.array([[row[k] for k in keys] for row in values], dtype=np.float64)
    return np.asarray(values)


def _pmml_arrays(path: Path, X: pd.DataFrame) -> dict[str, np.ndarray]:
    """jpmml_evaluator's result columns for ``X``, one array per column and one per family of columns
    (``probability(...)``, ``affinity(...)``...) in the file's order."""
    from jpmml_evaluator import make_evaluator
    from jpmml_evaluator.jpype import JPypeBackend

    from . import RUNTIMES

    RUNTIMES["jpmml_evaluator"].start()  # the process's one JPype JVM, with jpmml_evaluator's jars
    evaluator = make_evaluator(str(path), backend=JPypeBackend())
    arguments = X.astype(object).where(X.notna(), None).reset_index(drop=True)
    results, _ = evaluator.evaluateAll(arguments, nan_as_missing=False, error_col=None)
    arrays = {f"column {c!r}": results[c].to_numpy() for c in results.columns}
    families: dict[str, list[str]] = {}
    for column in map(str, results.columns):
        if "(" in column:
            families.setdefault(column.split("(")[0], []).append(column)
    for family, columns in families.items():
        arrays[f"{family}(*)"] = results[columns].to_numpy()
    return arrays


def _ties(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """Rows whose two best classes score within :data:`TIE` (probabilities, else decision values)."""
    n = len(next(iter(outputs.values())))
    for output in ("predict_proba", "decision_function"):
        scores = outputs.get(output)
        if scores is not None and scores.ndim == 2 and scores.shape[1] >= 2:
            top = np.sort(scores, axis=1)
            return (top[:, -1] - top[:, -2]) <= TIE * max(1.0, float(np.abs(top).max()))
    return np.zeros(n, dtype=bool)


def independent_check(fmt: str, path: Path, fitted: Fitted) -> tuple[bool, str]:
    """Whether the artifact agrees with the estimator, found without Parity's mapping or tolerances.

    Every estimator output (:data:`METHODS`) is matched to the runtime array (onnxruntime, or
    jpmml_evaluator) closest to it in any layout converters emit; labels must be equal on every row except
    ties and rows where scikit-learn on float32-rounded inputs gives the artifact's label; numbers must be
    within :data:`RIGHT_WITHIN` of the output's scale on the original or the rounded row.

    Parameters
    ----------
    fmt : str
        ``onnx`` or ``pmml``.
    path : Path
        The artifact.
    fitted : Fitted

    Returns
    -------
    tuple of (bool, str)
        Whether the outputs that decide (:data:`DECIDING`, else the first output) are right, and the
        evidence: each output's best counterpart and gap.
    """
    X = fitted.reference
    est = fitted.estimator
    plain, rounded = _estimator_outputs(est, X), _estimator_outputs(est, _rounded(X))
    arrays = _onnx_arrays(path, X) if fmt == "onnx" else _pmml_arrays(path, X)
    ties = _ties(plain)
    from sklearn.base import is_regressor

    within = RIGHT_WITHIN[fmt]
    deciding = [o for o in DECIDING if o in plain] or list(plain)[:1]
    right, notes = True, []
    for output, values in plain.items():
        label = output == "predict" and not is_regressor(est)
        match = _best_match(output, (values, rounded[output]), arrays, ties, label)
        if match is None:
            notes.append(f"{output}: no counterpart")
            continue
        ok = match.gap == 0 if label else match.gap <= within
        gap = f"{int(match.gap)} row(s) differ" if label else f"gap {match.gap:.3g} of scale"
        if output in deciding:
            right = right and ok
            notes.append(f"{output}: {'ok' if ok else 'WRONG'} {gap} vs {match.where}")
        else:
            closest = "" if ok else "no counterpart within the band, closest "
            notes.append(f"{output}: {closest or 'ok '}{gap} vs {match.where}")
    engine = "onnxruntime" if fmt == "onnx" else "jpmml_evaluator"
    return right, f"{engine} direct, {len(X)} rows: " + "; ".join(notes)


def classify(
    fmt: str, fitted: Fitted, conversion: Conversion, outcome: Outcome, variants: Iterable[Conversion] = ()
) -> tuple[Kind, str]:
    """What a cell is, given Parity's outcome; every cell that did not pass is checked independently.

    Parameters
    ----------
    fmt : str
    fitted : Fitted
    conversion : Conversion
        The format's own conversion.
    outcome : Outcome
        Parity's decision on the format's rows.
    variants : iterable of Conversion
        Remedies Parity tried (a double-precision ONNX): the cell is a false alarm when one of them is right.

    Returns
    -------
    tuple of (Kind, str)
        The kind and the evidence for it.
    """
    if outcome is Outcome.PASSED:
        return Kind.PASS, ""
    if outcome is Outcome.UNSUPPORTED:
        return Kind.UNSUPPORTED, _one_line(conversion.message)
    if not conversion.ok:
        if _REFUSED.search(conversion.message):
            return (
                Kind.FALSE_ALARM,
                "the converter refused the estimator, Parity calls it a failed conversion: "
                + _one_line(conversion.message),
            )
        if fmt == "onnx":
            return _retry_onnx(fitted, conversion)
        return Kind.DEFECT, "the converter failed: " + _one_line(conversion.message)
    if conversion.path is None:
        return Kind.CRASH, "a converted cell without an artifact"
    right, evidence = independent_check(fmt, conversion.path, fitted)
    for variant in variants:
        if variant.ok and variant.path is not None:
            try:
                fine, found = independent_check(fmt, variant.path, fitted)
            except Exception as err:  # a variant the runtime cannot even load is not right
                said = str(err).replace(str(variant.path), variant.path.name)  # no scratch folder in the doc
                fine, found = False, _one_line(f"{type(err).__name__}: {said}", 160)
            right, evidence = right or fine, f"{evidence}; remedy {variant.name}: {found}"
    return (Kind.FALSE_ALARM if right else Kind.DEFECT), evidence


def _retry_onnx(fitted: Fitted, conversion: Conversion) -> tuple[Kind, str]:
    """A failed ONNX conversion tried again with skl2onnx's defaults (no options), checked independently."""
    import skl2onnx

    X = fitted.reference
    with tempfile.TemporaryDirectory(prefix="parity-matrix-") as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = skl2onnx.to_onnx(
                fitted.estimator, X.to_numpy(np.float32)[:1], target_opset={"": 18, "ai.onnx.ml": 3}
            )
        except Exception as err:
            return Kind.DEFECT, _one_line(
                f"skl2onnx fails with its defaults too: {type(err).__name__}: {err}"
            )
        path = Path(scratch) / "plain.onnx"
        path.write_bytes(model.SerializeToString())
        right, evidence = independent_check("onnx", path, fitted)
    if right:
        return Kind.FALSE_ALARM, "Parity's options broke the conversion (" + _one_line(
            conversion.message, 120
        ) + "); skl2onnx's defaults convert it right: " + evidence
    return Kind.DEFECT, "skl2onnx's defaults convert it, wrong: " + evidence


# --- the whole matrix ----------------------------------------------------------------------------------


def run_matrix(
    names: Iterable[str] | None = None, formats: Iterable[str] | None = None, work_dir: Path | None = None
) -> list[Cell]:
    """Every cell of the matrix (or of the entries ``names``), entry by entry, format by format.

    Parameters
    ----------
    names : iterable of str, optional
        Keys of :data:`ENTRIES`; default all.
    formats : iterable of str, optional
        Keys of :data:`parity.validators.formats.FORMATS`; default all.
    work_dir : Path, optional
        Where artifacts are written; default a temporary folder, removed afterwards.

    Returns
    -------
    list of Cell

    Raises
    ------
    KeyError
        For a name not in :data:`ENTRIES` (the message lists close ones).
    """
    chosen = [entry_of(n) for n in names] if names else list(ENTRIES.values())
    fmts = list(formats or FORMATS)
    with tempfile.TemporaryDirectory(prefix="parity-matrix-") as scratch:
        root = work_dir or Path(scratch)
        return [cell for entry in chosen for cell in _run_entry(entry, fmts, root)]


def _run_entry(entry: Entry, formats: Iterable[str], root: Path) -> list[Cell]:
    """The cells of one entry; a fit or registration that raises makes each of its cells a crash."""
    try:
        fitted = fit(entry)
    except Exception as err:
        reason = _one_line(f"fitting or registering: {type(err).__name__}: {err}")
        return [Cell(entry.name, fmt, "crash", Kind.CRASH, reason=reason) for fmt in formats]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", entry.name)
    return [run_cell(fitted, fmt, root / slug / fmt) for fmt in formats]


def entry_of(name: str) -> Entry:
    """The entry called ``name``.

    Raises
    ------
    KeyError
        When there is none; the message names close matches.
    """
    if name in ENTRIES:
        return ENTRIES[name]
    close = [n for n in ENTRIES if name.lower() in n.lower()][:8]
    hint = (
        f"; did you mean {', '.join(close)}?" if close else f"; {len(ENTRIES)} entries, see docs/coverage.md"
    )
    raise KeyError(f"no matrix entry {name!r}{hint}")


# --- the published table -------------------------------------------------------------------------------


def counts(cells: Iterable[Cell]) -> dict[Kind, int]:
    """How many cells of each kind.

    Parameters
    ----------
    cells : iterable of Cell

    Returns
    -------
    dict of Kind to int
        Every kind, in :class:`Kind` order, 0 where none.
    """
    found = dict.fromkeys(Kind, 0)
    for cell in cells:
        found[cell.kind] += 1
    return found


def _deviations_text(cell: Cell) -> str:
    return ", ".join(f"{output} {value:.3g}" for output, value in cell.deviations.items())


def markdown(cells: list[Cell], seconds: float | None = None) -> str:
    """``docs/coverage.md``: the counts, then one row per estimator × format, then what is not run.

    Parameters
    ----------
    cells : list of Cell
    seconds : float, optional
        How long the run took, stated in the header.

    Returns
    -------
    str
    """
    total = counts(cells)
    took = f" in {seconds:.0f} s" if seconds is not None else ""
    versions = ", ".join(f"{name} {_version(name)}" for name in TOOLCHAIN)
    lines = [
        "# Coverage: every estimator kind both converters support, through Parity",
        "",
        "Generated by `parity coverage` (`parity.validators.matrix`); do not edit by hand. "
        f"{len(cells)} cells{took}: each entry of `ENTRIES` converted to each format, validated on this "
        "process by every runtime of the format, decided with `decide_outcome`; every cell that did not pass "
        "checked again without Parity (onnxruntime or jpmml_evaluator called directly, each output matched "
        "to the estimator's own `predict`/`predict_proba`/...).",
        "",
        f"Toolchain: {versions}.",
        "",
        "| " + " | ".join(str(k) for k in Kind) + " |",
        "|" + "---|" * len(Kind),
        "| " + " | ".join(str(total[k]) for k in Kind) + " |",
        "",
        "Max deviation: per reference output, the largest absolute deviation of any deploy runtime (labels: rows "
        "that differ). Not compared: reference outputs no runtime of the format compared (a gap even in a "
        "passing cell). Reason: the first failing check. Evidence: the independent check.",
        "",
        "| estimator | format | Parity | cell | max deviation | not compared | reason | evidence |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cell in cells:
        row = [
            cell.entry,
            cell.format,
            cell.outcome,
            str(cell.kind),
            _deviations_text(cell),
            ", ".join(cell.not_compared),
            cell.reason,
            cell.evidence,
        ]
        lines.append("| " + " | ".join(_cell_text(v) for v in row) + " |")
    lines += ["", "## In the supported intersection, not run", "", "| estimator | why |", "|---|---|"]
    lines += [f"| {name} | {_cell_text(why)} |" for name, why in NOT_RUN.items()]
    return "\n".join(lines) + "\n"


#: The distributions whose versions decide the matrix, named in the table's header.
TOOLCHAIN: tuple[str, ...] = (
    "scikit-learn",
    "skl2onnx",
    "onnxruntime",
    "onnx",
    "sklearn2pmml",
    "jpmml_evaluator",
    "pypmml",
)


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def _cell_text(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


# --- what both converters support ----------------------------------------------------------------------

#: The file in each JPMML-SkLearn jar that maps Python class names to its converters.
PMML_MAPPING = "META-INF/sklearn2pmml.properties"


def pmml_class_patterns() -> list[re.Pattern[str]]:
    """The Python classes sklearn2pmml's Java side converts, as patterns of ``module.Class`` names.

    Read from :data:`PMML_MAPPING` in every jar of the installed sklearn2pmml package; a key such as
    ``sklearn.ensemble.(_forest|forest).RandomForestClassifier`` names several module paths at once.

    Returns
    -------
    list of re.Pattern
        One per key, to be matched in full against ``module.QualifiedName``.
    """
    import sklearn2pmml

    patterns = []
    for jar in sorted((Path(sklearn2pmml.__file__).parent / "resources").glob("*.jar")):
        with zipfile.ZipFile(jar) as archive:
            if PMML_MAPPING not in archive.namelist():
                continue
            for line in archive.read(PMML_MAPPING).decode("utf-8").splitlines():
                key = line.partition("=")[0].strip()
                if key and not key.startswith("#"):
                    patterns.append(re.compile(key.replace(".", r"\.")))
    return patterns


def supported_intersection() -> dict[str, type]:
    """scikit-learn's estimators that skl2onnx registers a converter for and sklearn2pmml maps, by name.

    Returns
    -------
    dict of str to type
        In :func:`sklearn.utils.all_estimators` order.
    """
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from sklearn.utils import all_estimators

    patterns = pmml_class_patterns()

    def pmml(cls: type) -> bool:
        names = (
            f"{cls.__module__}.{cls.__qualname__}",
            f"{'.'.join(cls.__module__.split('.')[:2])}.{cls.__qualname__}",
        )
        return any(p.fullmatch(n) for p in patterns for n in names)

    return {name: cls for name, cls in all_estimators() if cls in sklearn_operator_name_map and pmml(cls)}


def uncovered() -> list[str]:
    """Estimators of :func:`supported_intersection` that no entry covers and :data:`NOT_RUN` does not list.

    Returns
    -------
    list of str
        Empty when the matrix accounts for every estimator both converters support.
    """
    covered = {c for entry in ENTRIES.values() for c in entry.classes()} | set(NOT_RUN)
    return [name for name in supported_intersection() if name not in covered]
