"""``parity demo``: a registry of four models built from scikit-learn's bundled data sets."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from parity.registry import FileRegistry, ModelRef


def _logreg():
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return (
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        X,
        y,
        "sklearn.datasets.load_breast_cancer",
    )


def _forest():
    X, y = load_wine(return_X_y=True, as_frame=True)
    return (
        RandomForestClassifier(n_estimators=50, max_depth=6, random_state=0),
        X,
        y,
        "sklearn.datasets.load_wine",
    )


def _gbr():
    X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    return (
        GradientBoostingRegressor(n_estimators=100, random_state=0),
        X,
        y,
        "sklearn.datasets.load_diabetes(scaled=False)",
    )


def mixed_frame() -> tuple[pd.DataFrame, pd.Series]:
    """Wine with two string categories and missing values in two numeric columns."""
    X, y = load_wine(return_X_y=True, as_frame=True)
    X = X[["alcohol", "malic_acid", "ash", "magnesium", "color_intensity", "proline"]].copy()
    rng = np.random.default_rng(0)
    X["alcohol_band"] = (
        pd.cut(X["alcohol"], 3, labels=["light", "medium", "strong"]).astype(str).astype(object)
    )
    X["cellar"] = rng.choice(["north", "south", "east"], size=len(X)).astype(object)
    X.loc[rng.random(len(X)) < 0.1, "ash"] = np.nan
    X.loc[rng.random(len(X)) < 0.1, "magnesium"] = np.nan
    return X, y


def _mixed():
    X, y = mixed_frame()
    numeric = ["alcohol", "malic_acid", "ash", "magnesium", "color_intensity", "proline"]
    prepare = ColumnTransformer(
        [
            ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            ("categories", OneHotEncoder(handle_unknown="ignore"), ["alcohol_band", "cellar"]),
        ]
    )
    model = Pipeline([("prepare", prepare), ("classify", LogisticRegression(max_iter=1000))])
    return model, X, y, "sklearn.datasets.load_wine + derived string categories and 10% missing values"


#: The demo models: name → builder returning (unfitted model, X, y, training data reference).
DEMO_MODELS: dict[str, Callable[[], tuple]] = {
    "breast-cancer-logreg": _logreg,
    "wine-forest": _forest,
    "diabetes-gbr": _gbr,
    "wine-mixed-types": _mixed,
}


def build_demo_registry(root: Path, log: Callable[[str], object] = print) -> list[ModelRef]:
    """Fit and register each demo model not registered yet in ``root``; returns the new versions."""
    registry = FileRegistry(root)
    made = []
    for name, build in DEMO_MODELS.items():
        if registry.refs(name):
            continue
        model, X, y, source = build()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            scores = cross_val_score(model, X, y, cv=5)
            model.fit(X, y)
        ref = registry.register(
            model,
            X,
            name,
            training_data_uri=source,
            source_files=[Path(__file__)],
            cv_scores={"cv5": scores.tolist()},
        )
        log(f"registered {ref} ({type(model).__name__}, cv5 mean {scores.mean():.3f})")
        made.append(ref)
    return made
