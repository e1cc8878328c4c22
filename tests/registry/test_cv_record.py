"""Registering with a CV record: what is recorded, and the splitters and scorings that cannot be."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    LeaveOneOut,
    LeavePOut,
    PredefinedSplit,
    RepeatedKFold,
    RepeatedStratifiedKFold,
    ShuffleSplit,
    StratifiedKFold,
    StratifiedShuffleSplit,
    TimeSeriesSplit,
)

from parity.core.errors import InvalidInputError, UntrustedModelError
from parity.core.records import RegistrationRecord, Splitter
from parity.registry import FileRegistry, sha256_of
from parity.registry.cv import build_splitter, record_splitter, register_with_cv, scoring_spec


class EveryOther:
    """A custom splitter that can be recorded: importable, with get_params, rebuilt by its parameters."""

    def __init__(self, n_splits: int = 2) -> None:
        self.n_splits = n_splits

    def get_params(self, deep: bool = False) -> dict:
        return {"n_splits": self.n_splits}

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return self.n_splits

    def split(self, X, y=None, groups=None):
        index = np.arange(len(X))
        for fold in range(self.n_splits):
            yield index[index % self.n_splits != fold], index[index % self.n_splits == fold]


class NoParams(EveryOther):
    get_params = None  # type: ignore[assignment]


class Forgetful(EveryOther):
    """Its get_params does not rebuild it: n_splits is lost."""

    def get_params(self, deep: bool = False) -> dict:
        return {}


def _register(tmp_path, iris, **kwargs):
    X, y = iris
    registry = FileRegistry(tmp_path / "registry")
    options = {"cv": KFold(5, shuffle=True, random_state=0), "scoring": "accuracy", **kwargs}
    ref = register_with_cv(
        registry,
        LogisticRegression(max_iter=500),
        X,
        y,
        name="iris-cv",
        snapshot=tmp_path / "train.parquet",
        reference=X.head(20),
        **options,
    )
    return registry, ref


def test_everything_about_the_cv_is_recorded(tmp_path, iris):
    X, y = iris
    registry, ref = _register(tmp_path, iris, scoring=["accuracy", "neg_log_loss"])
    record = registry.record(ref)
    cv = record.provenance.cross_validation
    assert cv is not None
    assert cv.splitter.cls == "sklearn.model_selection._split.KFold"
    assert cv.splitter.params == {"n_splits": 5, "shuffle": True, "random_state": 0}
    assert cv.scoring == ["accuracy", "neg_log_loss"]
    assert [len(v) for v in cv.scores.values()] == [5, 5]
    assert 0.85 < np.mean(cv.scores["accuracy"]) <= 1.0
    assert cv.snapshot.uri == str((tmp_path / "train.parquet").resolve())
    assert cv.snapshot.sha256 == sha256_of(tmp_path / "train.parquet")
    assert cv.snapshot.features == list(X.columns) and cv.snapshot.target == "target"
    assert cv.n_samples == len(X)
    assert record.provenance.cv_scores["accuracy"] == cv.scores["accuracy"]
    assert record.provenance.training_data.snapshot_sha256 == cv.snapshot.sha256
    snapshot = pd.read_parquet(tmp_path / "train.parquet")
    assert list(snapshot.columns) == [*X.columns, "target"] and (snapshot["target"] == y).all()


def test_the_registered_model_is_a_clone_fitted_on_the_snapshot(tmp_path, iris):
    X, y = iris
    registry, ref = _register(tmp_path, iris)
    model = registry.open(ref)
    expected = LogisticRegression(max_iter=500).fit(X, y)
    np.testing.assert_array_equal(model.estimator.coef_, expected.coef_)


def test_an_existing_snapshot_is_used_when_no_data_is_given(tmp_path, iris):
    X, y = iris
    X.assign(species=y).to_parquet(tmp_path / "given.parquet", index=False)
    registry = FileRegistry(tmp_path / "registry")
    ref = register_with_cv(
        registry,
        LogisticRegression(max_iter=500),
        None,
        None,
        name="given",
        snapshot=tmp_path / "given.parquet",
        target="species",
        reference=X.head(5),
        cv=3,
        scoring="accuracy",
    )
    cv = registry.record(ref).provenance.cross_validation
    assert cv.snapshot.target == "species" and cv.snapshot.features == list(X.columns)
    # an int is recorded as the splitter scikit-learn picks for a classifier
    assert cv.splitter.cls.endswith("StratifiedKFold") and cv.splitter.params["n_splits"] == 3


def test_a_record_without_cv_reads_and_writes_without_the_key(tmp_path, iris):
    X, y = iris
    registry = FileRegistry(tmp_path / "registry")
    ref = registry.register(LogisticRegression(max_iter=500).fit(X, y), X.head(5), "plain")
    data = json.loads((registry.path(ref) / "registration.json").read_text())
    assert "cross_validation" not in data["provenance"]
    assert RegistrationRecord.from_data(data).provenance.cross_validation is None


@pytest.mark.parametrize(
    "splitter",
    [RepeatedKFold(n_splits=3, n_repeats=2, random_state=4), StratifiedKFold(4), EveryOther(3)],
    ids=["RepeatedKFold", "StratifiedKFold", "custom-with-get_params"],
)
def test_a_recordable_splitter_is_rebuilt_identically(splitter):
    _, spec = record_splitter(splitter)
    rebuilt = build_splitter(spec, trusted_types=[spec.cls])
    X = np.zeros((24, 1))
    y = np.arange(24) % 2
    for (a_train, a_test), (b_train, b_test) in zip(splitter.split(X, y), rebuilt.split(X, y), strict=True):
        np.testing.assert_array_equal(a_test, b_test)
        np.testing.assert_array_equal(a_train, b_train)


REFUSED = {
    "shuffle-without-seed": (KFold(5, shuffle=True), "random_state=None"),
    "shufflesplit-without-seed": (ShuffleSplit(3), "Pass an integer random_state"),
    "random-state-object": (KFold(5, shuffle=True, random_state=np.random.RandomState(0)), "RandomState"),
    "list-of-splits": ([(np.arange(3), np.arange(3, 6))], "not a list of splits"),
    "no-get_params": (NoParams(), "has no get_params"),
    "groups": (GroupKFold(3), "splits by groups"),
    "not-rebuilt": (Forgetful(3), "cannot be recorded reproducibly"),
}


@pytest.mark.parametrize("splitter,match", REFUSED.values(), ids=REFUSED.keys())
def test_an_unrecordable_splitter_is_refused_saying_what_to_pass(splitter, match):
    with pytest.raises(InvalidInputError, match=match):
        record_splitter(splitter)


def test_a_splitter_outside_scikit_learn_is_rebuilt_only_when_trusted():
    _, spec = record_splitter(EveryOther(2))
    with pytest.raises(UntrustedModelError, match="register with trusted_types"):
        build_splitter(spec)


@pytest.mark.parametrize(
    "scoring,match",
    [
        (len, "callables cannot be rebuilt"),
        ("accuracyy", "unknown scorer"),
        ({"a": "accuracy"}, "scorer name"),
    ],
    ids=["callable", "unknown-name", "dict"],
)
def test_an_unrecordable_scoring_is_refused(scoring, match):
    with pytest.raises(InvalidInputError, match=match):
        scoring_spec(scoring)


def test_an_existing_snapshot_is_never_overwritten(tmp_path, iris):
    (tmp_path / "train.parquet").write_bytes(b"kept")
    with pytest.raises(InvalidInputError, match="never overwritten"):
        _register(tmp_path, iris)
    assert (tmp_path / "train.parquet").read_bytes() == b"kept"


def test_arguments_the_helper_sets_itself_are_refused(tmp_path, iris):
    with pytest.raises(InvalidInputError, match="sets cv_scores itself"):
        _register(tmp_path, iris, cv_scores={"accuracy": 1.0})


# -- a tampered record: build_splitter imports exactly the class named, and only a splitter -------------------
EXPLOITS = {
    # the review's: any attribute chain under a "sklearn." prefix reached subprocess, ctypes and io
    "popen-through-numpy": (
        "sklearn.datasets._rcv1.np.f2py.subprocess.Popen",
        {"args": ["touch", "{canary}"]},
    ),
    "cdll-through-numpy": ("sklearn.utils.validation.np.ctypeslib.ctypes.CDLL", {"name": "libc.so.6"}),
    "fileio-through-a-helper": (
        "sklearn.externals.array_api_extra._lib._utils._helpers.io.FileIO",
        {"file": "{canary}", "mode": "w"},
    ),
    "a-module-named-directly": ("subprocess.Popen", {"args": ["touch", "{canary}"]}),
    "a-sklearn-class-that-is-no-splitter": ("sklearn.model_selection._search.GridSearchCV", {}),
    "a-splitter-reexported-elsewhere": ("sklearn.model_selection.KFold", {"n_splits": 3}),
    "a-test-module-of-scikit-learn": ("sklearn.model_selection.tests.test_split.KFold", {"n_splits": 3}),
}


def _spec(cls: str, params: dict, canary) -> Splitter:
    filled = {k: [str(canary) if a == "{canary}" else a for a in v] if isinstance(v, list) else
              (str(canary) if v == "{canary}" else v) for k, v in params.items()}  # fmt: skip
    return Splitter.model_validate({"class": cls, "params": filled})


@pytest.mark.parametrize("cls,params", EXPLOITS.values(), ids=EXPLOITS.keys())
def test_a_tampered_splitter_class_is_refused_and_nothing_runs(cls, params, tmp_path):
    canary = tmp_path / "CANARY"
    with pytest.raises(UntrustedModelError, match=r"is not a scikit-learn|defined elsewhere") as refused:
        build_splitter(_spec(cls, params, canary))
    assert cls in str(refused.value)
    assert not canary.exists()


@pytest.mark.parametrize(
    "cls,error,match",
    [
        ("subprocess.Popen", UntrustedModelError, "can never be trusted"),
        ("os.system", UntrustedModelError, "can never be trusted"),
        ("sklearn.datasets._rcv1.np.f2py.subprocess.Popen", InvalidInputError, "cannot be imported"),
        ("io.FileIO", UntrustedModelError, "names _io.FileIO, a class defined elsewhere"),
    ],
    ids=["never-trusted-popen", "never-trusted-os", "an-attribute-chain", "an-alias"],
)
def test_a_trusted_name_must_still_be_exact_and_never_a_never_trusted_one(cls, error, match, tmp_path):
    canary = tmp_path / "CANARY"
    with pytest.raises(error, match=match):
        build_splitter(_spec(cls, {"args": ["touch", "{canary}"]}, canary), trusted_types=[cls])
    assert not canary.exists()


def test_a_splitter_parameter_must_be_a_plain_value():
    spec = Splitter.model_validate({"class": "sklearn.model_selection._split.KFold"})
    spec = spec.model_copy(update={"params": {"n_splits": object()}})  # as no JSON file could hold it
    with pytest.raises(InvalidInputError, match="n_splits=object cannot be recorded"):
        build_splitter(spec)


SKLEARN_SPLITTERS = [
    KFold(3, shuffle=True, random_state=1),
    StratifiedKFold(3),
    RepeatedKFold(n_splits=2, n_repeats=2, random_state=0),
    RepeatedStratifiedKFold(n_splits=2, n_repeats=2, random_state=0),
    ShuffleSplit(3, test_size=0.25, random_state=0),
    StratifiedShuffleSplit(3, test_size=0.25, random_state=0),
    TimeSeriesSplit(3),
    LeaveOneOut(),
    LeavePOut(2),
]


@pytest.mark.parametrize("splitter", SKLEARN_SPLITTERS, ids=lambda s: type(s).__name__)
def test_every_scikit_learn_splitter_is_rebuilt_without_trust(splitter):
    _, spec = record_splitter(splitter)
    rebuilt = build_splitter(spec)
    assert type(rebuilt) is type(splitter) and repr(rebuilt) == repr(splitter)


def test_a_predefined_split_is_rebuilt_from_its_spec():
    spec = Splitter.model_validate(
        {"class": "sklearn.model_selection._split.PredefinedSplit", "params": {"test_fold": [0, 1, 0, 1]}}
    )
    rebuilt = build_splitter(spec)
    assert isinstance(rebuilt, PredefinedSplit) and rebuilt.get_n_splits() == 2


def test_a_trusted_custom_splitter_is_rebuilt_by_its_exact_name():
    _, spec = record_splitter(EveryOther(4))
    assert build_splitter(spec, trusted_types=[spec.cls]).n_splits == 4
