"""The file registry: registration, provenance, safe loading and the prediction round trip; real models only."""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import pathlib
import pickle
import sys
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn
import skops.io as sio
from sklearn.base import BaseEstimator
from sklearn.exceptions import InconsistentVersionWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from parity.core.errors import IntegrityError, InvalidInputError, RegistryError, UntrustedModelError
from parity.registry import ALLOWLIST, FileRegistry, ModelRef, check_name
from parity.registry.loading import load_model, never_trusted, untrusted_types
from parity.registry.predictions import predictions_from_frame, predictions_to_frame, reference_predictions
from parity.registry.store import PREDICTIONS_FILE, RECORD_FILE, REFERENCE_FILE

IRIS_NAMES = np.array(["setosa", "versicolor", "virginica"])
CLAIMED_SKLEARN = "1.5.0"  # a scikit-learn version this environment does not run
CUSTOM_MODULE = "parity_test_custom_steps"
CUSTOM_SOURCE = '''
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class Doubler(TransformerMixin, BaseEstimator):
    """A transformer skops has never heard of: its type is untrusted by default."""

    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X):
        return np.asarray(X, dtype=float) * 2.0
'''
CUSTOM_TYPE = f"{CUSTOM_MODULE}.Doubler"


# -- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def logreg(iris: tuple[pd.DataFrame, pd.Series]) -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(*iris)


@pytest.fixture
def registry(tmp_path: Path) -> FileRegistry:
    return FileRegistry(tmp_path / "registry")


@pytest.fixture(scope="module")
def custom_module(tmp_path_factory: pytest.TempPathFactory):
    """A small module of our own on sys.path, holding a transformer type skops does not trust."""
    folder = tmp_path_factory.mktemp("custom")
    (folder / f"{CUSTOM_MODULE}.py").write_text(CUSTOM_SOURCE)
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(CUSTOM_MODULE)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(CUSTOM_MODULE, None)


@pytest.fixture
def custom_skops(custom_module, iris: tuple[pd.DataFrame, pd.Series], tmp_path: Path) -> Path:
    model = make_pipeline(custom_module.Doubler(), LogisticRegression(max_iter=1000)).fit(*iris)
    path = tmp_path / "custom.skops"
    sio.dump(model, path)
    return path


def _pickle_claiming_version(estimator: object, version: str) -> bytes:
    """Pickle ``estimator`` as if scikit-learn ``version`` had written it.

    scikit-learn's ``BaseEstimator.__getstate__`` adds ``_sklearn_version`` to the state and
    ``__setstate__`` compares it with the running version; rewriting that one entry of the state the
    estimator's own ``__reduce_ex__`` returns gives exactly what an older scikit-learn would have written.
    """

    class ClaimingPickler(pickle.Pickler):
        def reducer_override(self, obj):
            if not isinstance(obj, BaseEstimator):
                return NotImplemented
            func, args, state, *rest = obj.__reduce_ex__(pickle.DEFAULT_PROTOCOL)
            return (func, args, {**state, "_sklearn_version": version}, *rest)

    buffer = io.BytesIO()
    ClaimingPickler(buffer, protocol=pickle.DEFAULT_PROTOCOL).dump(estimator)
    return buffer.getvalue()


class _Canary:
    """Unpickling this writes a file: the proof that a pickle was (or was not) loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.write_text, (pathlib.Path(self.path), "pwned"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pickle_file(obj: object, path: Path) -> Path:
    path.write_bytes(pickle.dumps(obj))
    return path


# -- registering and opening -----------------------------------------------------------------------------
def test_register_numbers_versions_from_one(registry, logreg, iris):
    X, _ = iris
    first = registry.register(logreg, X, "iris-lr")
    second = registry.register(logreg, X, "iris-lr")
    assert (first, second) == (ModelRef("iris-lr", 1), ModelRef("iris-lr", 2))
    assert registry.refs() == [first, second]
    assert registry.resolve("iris-lr") == second
    assert registry.record(first).version == 1
    assert str(second) == "iris-lr:2"


def test_register_explicit_version_taken_is_refused(registry, logreg, iris):
    X, _ = iris
    registry.register(logreg, X, "iris-lr", version=3)
    with pytest.raises(RegistryError, match=r"iris-lr:3 is already registered.*immutable"):
        registry.register(logreg, X, "iris-lr", version=3)
    assert registry.refs() == [ModelRef("iris-lr", 3)]
    assert registry.register(logreg, X, "iris-lr") == ModelRef("iris-lr", 4)


@pytest.mark.parametrize("version", [0, -1], ids=["zero", "negative"])
def test_register_refuses_a_version_below_one(registry, logreg, iris, version):
    with pytest.raises(InvalidInputError, match="positive integer"):
        registry.register(logreg, iris[0], "iris-lr", version=version)


def test_open_round_trips_estimator_reference_and_predictions(registry, logreg, iris):
    X, _ = iris
    model = registry.open(registry.register(logreg, X, "iris-lr"))
    assert model.ref == ModelRef("iris-lr", 1)
    assert isinstance(model.estimator, LogisticRegression)
    np.testing.assert_array_equal(model.estimator.predict_proba(X), logreg.predict_proba(X))
    pd.testing.assert_frame_equal(model.reference, X)
    assert sorted(model.predictions) == ["decision_function", "predict", "predict_proba"]
    assert model.predictions["predict"].shape == (150,)
    assert model.predictions["predict_proba"].shape == (150, 3)
    assert model.predictions["decision_function"].shape == (150, 3)
    np.testing.assert_array_equal(model.predictions["predict_proba"], logreg.predict_proba(X))
    assert model.original_sklearn_version is None and model.notes == []
    assert model.model_file == model.path / "model.skops"
    record = model.record
    assert record.schema_version == 1
    assert record.estimator_type == "sklearn.linear_model._logistic.LogisticRegression"
    assert record.model.format == "skops"
    assert record.model.sha256 == _sha(model.model_file)
    assert record.reference.sha256 == _sha(model.path / REFERENCE_FILE)
    assert record.reference.rows == 150
    assert record.predictions.classes == [0, 1, 2]
    assert record.predictions.outputs["predict_proba"].to_json() == {"shape": [150, 3], "dtype": "float64"}
    assert json.loads((model.path / RECORD_FILE).read_text())["schema"] == 1


def test_transformer_keeps_transform_only(registry, iris):
    X, _ = iris
    scaler = StandardScaler().fit(X)
    model = registry.open(registry.register(scaler, X, "scaler"))
    assert list(model.predictions) == ["transform"]
    np.testing.assert_allclose(model.predictions["transform"], scaler.transform(X))
    assert model.record.predictions.classes is None


def test_regressor_keeps_predict_only(registry, diabetes):
    X, y = diabetes
    regressor = LinearRegression().fit(X, y)
    model = registry.open(registry.register(regressor, X, "diabetes-lr"))
    assert list(model.predictions) == ["predict"]
    np.testing.assert_allclose(model.predictions["predict"], regressor.predict(X))


def test_pipeline_summary_names_each_step(registry, iris):
    X, y = iris
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    record = registry.record(registry.register(pipeline, X, "iris-pipe"))
    assert record.estimator_summary == "StandardScaler > LogisticRegression"


def test_register_needs_exactly_one_of_estimator_or_file(registry, logreg, iris, tmp_path):
    with pytest.raises(InvalidInputError, match="exactly one of a fitted estimator or model_file"):
        registry.register(None, iris[0], "nothing")
    path = tmp_path / "m.skops"
    sio.dump(logreg, path)
    with pytest.raises(InvalidInputError, match="exactly one"):
        registry.register(logreg, iris[0], "both", model_file=path)


def test_register_missing_model_file(registry, iris, tmp_path):
    with pytest.raises(InvalidInputError, match=r"model file .*absent\.skops does not exist"):
        registry.register(None, iris[0], "m", model_file=tmp_path / "absent.skops")


def test_register_unknown_model_suffix(registry, iris, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(UntrustedModelError, match=r"unknown model file type '\.onnx'.*skops\.io\.dump"):
        registry.register(None, iris[0], "m", model_file=path)


# -- provenance ------------------------------------------------------------------------------------------
def test_provenance_records_training_data_sources_and_scores(registry, logreg, iris, tmp_path):
    X, y = iris
    snapshot = tmp_path / "train.csv"
    X.assign(target=y).to_csv(snapshot, index=False)
    train_py = tmp_path / "train.py"
    train_py.write_text("# how the model was trained\n")
    ref = registry.register(
        logreg,
        X,
        "iris-lr",
        training_data_uri="s3://bucket/iris.csv",
        training_data_snapshot=snapshot,
        source_files=[train_py],
        cv_scores={"accuracy": 0.95, "cv5": [0.9, 0.95, 1.0]},
    )
    record = registry.record(ref)
    data = record.provenance.training_data
    assert data.uri == "s3://bucket/iris.csv"
    assert data.snapshot == str(snapshot.resolve())
    assert data.snapshot_sha256 == hashlib.sha256(snapshot.read_bytes()).hexdigest()
    source = record.provenance.source.to_json()
    assert source["origin"] == "given"
    assert source["files"] == [{"file": "source/train.py", "origin": str(train_py), "sha256": _sha(train_py)}]
    assert (registry.path(ref) / "source" / "train.py").read_text() == "# how the model was trained\n"
    assert record.provenance.cv_scores == {"accuracy": 0.95, "cv5": [0.9, 0.95, 1.0]}
    assert isinstance(record.provenance.cv_scores["accuracy"], float)


def test_default_source_is_the_calling_module(registry, logreg, iris):
    ref = registry.register(logreg, iris[0], "iris-lr")
    source = registry.record(ref).provenance.source.to_json()
    here = Path(__file__).resolve()
    assert source["origin"] == "calling module"
    assert source["files"] == [{"file": f"source/{here.name}", "origin": str(here), "sha256": _sha(here)}]
    assert (registry.path(ref) / "source" / here.name).read_bytes() == here.read_bytes()


def test_environment_is_recorded(registry, logreg, iris):
    environment = registry.record(
        registry.register(logreg, iris[0], "iris-lr")
    ).provenance.environment.to_json()
    assert environment["python"] == ".".join(map(str, sys.version_info[:3]))
    assert environment["scikit-learn"] == sklearn.__version__
    assert environment["distributions"]["scikit-learn"] == sklearn.__version__
    assert "skops" in environment["distributions"]


def test_missing_snapshot_is_refused(registry, logreg, iris, tmp_path):
    with pytest.raises(InvalidInputError, match=r"training data snapshot .*gone\.csv does not exist"):
        registry.register(logreg, iris[0], "m", training_data_snapshot=tmp_path / "gone.csv")


def test_missing_source_file_is_refused(registry, logreg, iris, tmp_path):
    with pytest.raises(InvalidInputError, match=r"training source file .*gone\.py does not exist"):
        registry.register(logreg, iris[0], "m", source_files=[tmp_path / "gone.py"])


def test_two_source_files_with_one_name_are_refused(registry, logreg, iris, tmp_path):
    files = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        files.append(tmp_path / folder / "train.py")
        files[-1].write_text(f"# {folder}\n")
    with pytest.raises(InvalidInputError, match=r"two training source files are named train\.py"):
        registry.register(logreg, iris[0], "m", source_files=files)


def test_cv_scores_from_cross_val_score_array(registry, logreg, iris):
    ref = registry.register(logreg, iris[0], "m", cv_scores={"cv3": np.array([0.9, 0.95, 1.0])})
    assert registry.record(ref).provenance.cv_scores == {"cv3": [0.9, 0.95, 1.0]}


# -- names and references --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    ["", "_x", "a/b", "../x", ".hidden", "a b", "x" * 101],
    ids=["empty", "leading-underscore", "slash", "dotdot", "leading-dot", "space", "too-long"],
)
def test_bad_names_are_refused(registry, logreg, iris, name):
    with pytest.raises(InvalidInputError, match="is not allowed"):
        check_name(name)
    with pytest.raises(InvalidInputError, match="is not allowed"):
        registry.register(logreg, iris[0], name)
    assert not registry.root.exists() or list(registry.root.iterdir()) == []


def test_name_with_trailing_newline_is_refused():
    with pytest.raises(InvalidInputError, match="is not allowed"):
        check_name("model\n")


@pytest.mark.parametrize("name", ["a", "churn-classifier", "v1.2_final", "X" * 100], ids=str.__len__)
def test_good_names_pass(name):
    assert check_name(name) == name


@pytest.mark.parametrize(
    ("text", "expected"),
    [("m", ("m", None)), ("m:1", ("m", 1)), ("iris-lr:12", ("iris-lr", 12))],
    ids=["latest", "one", "twelve"],
)
def test_model_ref_parse(text, expected):
    assert ModelRef.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    ["m:0", "m:x", "m:-1", "m:1.5", "m:²", "m:١", "m:1²"],
    ids=["zero", "letter", "negative", "float", "superscript", "arabic-indic", "digit-and-superscript"],
)
def test_model_ref_parse_refuses_bad_versions(text):
    with pytest.raises(InvalidInputError, match="the version must be a positive integer"):
        ModelRef.parse(text)


def test_model_ref_parse_refuses_bad_names():
    with pytest.raises(InvalidInputError, match="is not allowed"):
        ModelRef.parse(":1")


def test_resolve_unknown_name_lists_known_ones(registry, logreg, iris):
    registry.register(logreg, iris[0], "iris-lr")
    registry.register(logreg, iris[0], "other")
    with pytest.raises(RegistryError, match=r"no model 'nope' in .*\(registered: iris-lr, other\)"):
        registry.resolve("nope")


def test_resolve_in_an_empty_registry_says_none(registry):
    with pytest.raises(RegistryError, match=r"registered: none"):
        registry.resolve("nope")
    assert registry.refs() == []


def test_resolve_missing_version_lists_versions(registry, logreg, iris):
    registry.register(logreg, iris[0], "iris-lr")
    registry.register(logreg, iris[0], "iris-lr")
    with pytest.raises(RegistryError, match=r"iris-lr has no version 7 in .*; it has 1, 2"):
        registry.resolve("iris-lr", 7)
    assert registry.resolve("iris-lr", 1) == ModelRef("iris-lr", 1)


def test_record_of_unregistered_version(registry):
    with pytest.raises(RegistryError, match=r"m:1: no registration\.json"):
        registry.record(ModelRef("m", 1))


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        (lambda X: X.to_numpy(), "must be a pandas DataFrame with named columns, got ndarray"),
        (lambda X: X.iloc[:0], "reference data has no rows"),
        (lambda X: X.drop(columns="petal width (cm)"), r"lacks column\(s\) petal width \(cm\)"),
        (lambda X: X.set_axis(range(4), axis=1), "columns must be unique strings"),
    ],
    ids=["ndarray", "zero-rows", "missing-column", "integer-columns"],
)
def test_bad_reference_is_refused(registry, logreg, iris, reference, message):
    with pytest.raises(InvalidInputError, match=message):
        registry.register(logreg, reference(iris[0]), "iris-lr")
    assert registry.refs() == []


def test_reference_columns_are_put_in_fitted_order(registry, logreg, iris):
    X, _ = iris
    shuffled = X[list(reversed(X.columns))].assign(extra=1.0)
    model = registry.open(registry.register(logreg, shuffled, "iris-lr"))
    assert list(model.reference.columns) == list(X.columns)
    pd.testing.assert_frame_equal(model.reference, X)


def test_reference_index_is_dropped(registry, logreg, iris):
    X, _ = iris
    model = registry.open(registry.register(logreg, X.iloc[10:20], "iris-lr"))
    assert list(model.reference.index) == list(range(10))


def test_failed_registration_leaves_nothing_behind(registry, logreg, iris):
    registry.register(logreg, iris[0], "iris-lr")
    before = sorted(p.relative_to(registry.root) for p in registry.root.rglob("*"))
    with pytest.raises(InvalidInputError, match="lacks column"):
        registry.register(logreg, iris[0].drop(columns="sepal length (cm)"), "iris-lr")
    with pytest.raises(InvalidInputError, match="lacks column"):
        registry.register(logreg, iris[0].drop(columns="sepal length (cm)"), "fresh")
    after = sorted(p.relative_to(registry.root) for p in registry.root.rglob("*"))
    assert after == before
    assert not [p for p in registry.root.iterdir() if p.name.startswith(".staging")]
    assert registry.refs() == [ModelRef("iris-lr", 1)]


# -- safe loading: skops ---------------------------------------------------------------------------------
def test_custom_type_is_untrusted_and_not_allowlisted(custom_skops):
    assert CUSTOM_TYPE in sio.get_untrusted_types(file=custom_skops)
    assert CUSTOM_TYPE not in ALLOWLIST
    assert untrusted_types(custom_skops) == [CUSTOM_TYPE]
    assert untrusted_types(custom_skops, [CUSTOM_TYPE]) == []


def test_skops_file_with_untrusted_type_is_refused(registry, custom_skops, iris):
    with pytest.raises(UntrustedModelError, match=rf"holds types not on the allowlist: {CUSTOM_TYPE}\. "):
        registry.register(None, iris[0], "custom", model_file=custom_skops)
    assert registry.refs() == []


def test_fitted_estimator_with_untrusted_type_is_refused(registry, custom_module, iris):
    model = make_pipeline(custom_module.Doubler(), LogisticRegression(max_iter=1000)).fit(*iris)
    with pytest.raises(UntrustedModelError, match=CUSTOM_TYPE):
        registry.register(model, iris[0], "custom")


def test_trusted_types_come_from_the_registration(registry, custom_skops, iris):
    X, _ = iris
    ref = registry.register(None, X, "custom", model_file=custom_skops, trusted_types=[CUSTOM_TYPE])
    record = registry.record(ref)
    assert record.trusted_types == [CUSTOM_TYPE]
    model = registry.open(ref)
    assert type(model.estimator.steps[0][1]).__name__ == "Doubler"
    np.testing.assert_array_equal(model.predictions["predict"], model.estimator.predict(X))
    # the trust lives in registration.json only: take it away there and the same file is refused
    (registry.path(ref) / RECORD_FILE).write_bytes(record.model_copy(update={"trusted_types": []}).to_bytes())
    with pytest.raises(UntrustedModelError, match=CUSTOM_TYPE):
        registry.open(ref)


@pytest.mark.parametrize(
    "name",
    ["builtins.eval", "builtins.exec", "os.system", "posix.system", "subprocess.Popen", "numpy.load",
     "operator.methodcaller", "importlib.import_module", "pickle.loads", "runpy.run_path", "ctypes.CDLL"],
)  # fmt: skip
def test_a_type_that_can_never_be_trusted_is_named_with_why(name):
    (refused,) = never_trusted([name])
    assert refused.startswith(f"{name} (") and refused.endswith(")")


@pytest.mark.parametrize("name", ["sklearn.tree._tree.Tree", "osmium.Thing", "numpy.loadtxtish", "systems.X"])
def test_model_parts_and_lookalikes_are_not_on_the_never_trusted_list(name):
    assert never_trusted([name]) == []


def test_trusting_eval_is_refused_at_registration_and_at_load(registry, iris, tmp_path):
    """A file that holds builtins.eval is refused even when the registrant lists it as trusted."""
    from sklearn.preprocessing import FunctionTransformer

    path = tmp_path / "evil.skops"
    sio.dump(make_pipeline(FunctionTransformer(eval), LogisticRegression()), path)
    assert "builtins.eval" in sio.get_untrusted_types(file=path)
    message = r"builtins\.eval \(evaluates Python source\) can never be trusted inside a model file"
    with pytest.raises(UntrustedModelError, match=message):
        registry.register(None, iris[0], "evil", model_file=path, trusted_types=["builtins.eval"])
    assert registry.refs() == [] and not list(registry.root.glob(".staging*"))
    with pytest.raises(UntrustedModelError, match=message):
        load_model(path, "skops", trusted_types=["builtins.eval"])


def test_a_skops_file_is_checked_and_loaded_from_the_same_bytes(custom_skops, tmp_path, logreg):
    """The trust list skops gets is the types of the bytes that were checked, not the file as it is now."""
    from parity.registry.loading import load_payload

    payload = custom_skops.read_bytes()
    sio.dump(logreg, custom_skops)  # the file on disk changes after it was read
    digest = hashlib.sha256(payload).hexdigest()
    loaded = load_payload(
        payload, "skops", str(custom_skops), trusted_types=[CUSTOM_TYPE], expected_sha256=digest
    )
    assert type(loaded.estimator.steps[0][1]).__name__ == "Doubler"
    with pytest.raises(UntrustedModelError, match=CUSTOM_TYPE):
        load_payload(payload, "skops", str(custom_skops))


def test_a_file_that_is_not_skops_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "model.skops"
    path.write_bytes(b"not a zip file")
    with pytest.raises(UntrustedModelError, match=r"not a readable skops file .*skops\.io\.dump"):
        load_model(path, "skops")


# -- safe loading: pickle and joblib ---------------------------------------------------------------------
def test_canary_pickle_really_writes_when_loaded(tmp_path):
    """The canary used below is live: unpickling it does write its file."""
    canary = tmp_path / "canary.txt"
    pickle.loads(pickle.dumps(_Canary(canary)))
    assert canary.read_text() == "pwned"


@pytest.mark.parametrize("trust", [False, True], ids=["no-trust", "trust-without-sha256"])
def test_pickle_without_trust_and_hash_is_refused(registry, logreg, iris, tmp_path, trust):
    path = _pickle_file(logreg, tmp_path / "model.pkl")
    with pytest.raises(UntrustedModelError, match=r"can run arbitrary code.*--trust-pickle --sha256"):
        registry.register(None, iris[0], "pickled", model_file=path, trust_pickle=trust)
    assert registry.refs() == []


def test_pickle_with_wrong_hash_is_refused(registry, logreg, iris, tmp_path):
    path = _pickle_file(logreg, tmp_path / "model.pkl")
    with pytest.raises(IntegrityError, match="it was not unpickled"):
        registry.register(None, iris[0], "pickled", model_file=path, trust_pickle=True, sha256="0" * 64)


def test_canary_pickle_with_wrong_hash_is_never_unpickled(registry, iris, tmp_path):
    canary = tmp_path / "canary.txt"
    path = _pickle_file(_Canary(canary), tmp_path / "evil.pkl")
    with pytest.raises(IntegrityError, match=rf"SHA-256 is {_sha(path)}, but {'ab' * 32} was recorded"):
        registry.register(None, iris[0], "evil", model_file=path, trust_pickle=True, sha256="ab" * 32)
    assert not canary.exists()
    assert registry.refs() == []


def test_swapped_pickle_is_refused_on_open(registry, logreg, iris, tmp_path):
    path = _pickle_file(logreg, tmp_path / "model.pkl")
    ref = registry.register(None, iris[0], "pickled", model_file=path, trust_pickle=True, sha256=_sha(path))
    model = registry.open(ref)
    assert model.record.model.to_json() == {
        "file": "model.pkl",
        "format": "pickle",
        "sha256": _sha(path),
        "trusted_pickle": True,
    }
    np.testing.assert_array_equal(model.estimator.predict(iris[0]), logreg.predict(iris[0]))
    canary = tmp_path / "canary.txt"
    _pickle_file(_Canary(canary), registry.path(ref) / "model.pkl")
    with pytest.raises(IntegrityError, match="The file changed since it was trusted"):
        registry.open(ref)
    assert not canary.exists()


def test_joblib_with_trust_and_hash_loads(registry, logreg, iris, tmp_path):
    path = tmp_path / "model.joblib"
    joblib.dump(logreg, path)
    ref = registry.register(
        None, iris[0], "joblib", model_file=path, trust_pickle=True, sha256=_sha(path).upper()
    )
    model = registry.open(ref)
    assert model.record.model.format == "joblib"
    assert model.model_file.name == "model.joblib"
    np.testing.assert_array_equal(model.predictions["predict_proba"], logreg.predict_proba(iris[0]))


def test_old_sklearn_pickle_is_recorded_not_warned(registry, logreg, iris, tmp_path):
    path = tmp_path / "old.pkl"
    path.write_bytes(_pickle_claiming_version(logreg, CLAIMED_SKLEARN))
    with pytest.warns(InconsistentVersionWarning, match=CLAIMED_SKLEARN):
        pickle.loads(path.read_bytes())  # the crafted pickle does claim the old version
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ref = registry.register(None, iris[0], "old", model_file=path, trust_pickle=True, sha256=_sha(path))
        model = registry.open(ref)
    assert [str(w.message) for w in caught] == []
    assert model.record.model.original_sklearn_version == CLAIMED_SKLEARN
    assert model.original_sklearn_version == CLAIMED_SKLEARN
    assert any(CLAIMED_SKLEARN in note and sklearn.__version__ in note for note in model.notes)
    np.testing.assert_array_equal(model.estimator.predict(iris[0]), logreg.predict(iris[0]))


# -- predictions -----------------------------------------------------------------------------------------
def test_string_labels_round_trip(registry, iris, tmp_path):
    X, y = iris
    labels = IRIS_NAMES[y]
    model = LogisticRegression(max_iter=1000).fit(X, labels)
    outputs = reference_predictions(model, X)
    assert sorted(outputs) == ["decision_function", "predict", "predict_proba"]
    frame = predictions_to_frame(outputs)
    assert list(frame.columns) == [
        "predict",
        "predict_proba[0]",
        "predict_proba[1]",
        "predict_proba[2]",
        "decision_function[0]",
        "decision_function[1]",
        "decision_function[2]",
    ]
    frame.to_parquet(tmp_path / "p.parquet", index=False)
    back = predictions_from_frame(pd.read_parquet(tmp_path / "p.parquet"))
    assert sorted(back) == sorted(outputs)
    for key, values in outputs.items():
        assert back[key].shape == values.shape
        np.testing.assert_array_equal(back[key], values)
    opened = registry.open(registry.register(model, X, "iris-names"))
    assert list(opened.predictions["predict"][:1]) == ["setosa"]
    np.testing.assert_array_equal(opened.predictions["predict"], model.predict(X))
    assert opened.record.predictions.classes == list(IRIS_NAMES)
    assert (opened.path / PREDICTIONS_FILE).is_file()


def test_predictions_without_output_methods_are_refused(iris):
    with pytest.raises(InvalidInputError, match="has none of predict, predict_proba"):
        reference_predictions(object(), iris[0])


def test_predictions_that_fail_on_the_reference_are_refused(logreg, iris):
    with pytest.raises(InvalidInputError, match=r"LogisticRegression\.predict failed on the reference data"):
        reference_predictions(logreg, iris[0].iloc[:, :2])


def test_a_skops_file_changed_after_registration_is_refused(tmp_path, iris):
    X, y = iris
    registry = FileRegistry(tmp_path / "registry")
    ref = registry.register(LogisticRegression(max_iter=500).fit(X, y), X, "swapped")
    other = tmp_path / "other.skops"
    sio.dump(LogisticRegression(max_iter=500, C=0.01).fit(X, y), other)
    (registry.path(ref) / "model.skops").write_bytes(other.read_bytes())
    with pytest.raises(IntegrityError, match=r"SHA-256 is \w+, but \w+ was recorded at registration"):
        registry.open(ref)


def test_a_stray_version_folder_is_never_reused(tmp_path, iris):
    X, y = iris
    registry = FileRegistry(tmp_path / "registry")
    estimator = LogisticRegression(max_iter=500).fit(X, y)
    registry.register(estimator, X, "stray")
    (registry.root / "stray" / "2").mkdir()  # e.g. left by hand, without a registration record
    (registry.root / "stray" / "2" / "notes.txt").write_text("not a registration")
    assert registry.register(estimator, X, "stray").version == 3
