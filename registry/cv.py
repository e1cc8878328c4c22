"""Register a model with how its cross-validation score was obtained, in one call from training code.

:func:`register_with_cv` runs ``cross_validate`` on a clone of the estimator over a training-data snapshot
(a parquet file of the feature columns and the target column), fits a clone on the whole snapshot, and
registers that fitted clone with a :class:`~parity.core.records.CrossValidation` record: the splitter as a
rebuildable spec, the scoring, the per-fold scores, the snapshot's URI, SHA-256 and columns, the scikit-learn
version and the number of samples. ``parity audit --cv`` (:mod:`parity.archive.cv`) later rebuilds the same
splitter and refits on the same snapshot to check that the score is "in the same range as before".

The splitter and the scoring must be recordable: a splitter object whose constructor parameters rebuild it
exactly (scikit-learn's splitters, or any class with ``get_params``), seeded when it shuffles; scorer names
(``sklearn.metrics.get_scorer_names()``), not callables.
"""

from __future__ import annotations

import importlib
import inspect
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from parity.core.errors import InvalidInputError, UntrustedModelError
from parity.core.records import CrossValidation, Snapshot, Splitter

from . import provenance
from .loading import never_trusted, sha256_of

__all__ = [
    "build_splitter",
    "read_snapshot",
    "record_splitter",
    "register_with_cv",
    "run_cv",
    "scoring_spec",
]

#: Register arguments :func:`register_with_cv` sets itself.
_OWN = ("cv_scores", "training_data_snapshot", "model_file", "cross_validation", "estimator")
#: Splitter classes the audit rebuilds without the registration trusting them by name.
_TRUSTED_MODULE = "sklearn."
_SCALARS = (bool, int, float, str, type(None))


def _class_path(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


#: Where a splitter the registration did not trust by name must be defined.
_SPLITTER_MODULE = "sklearn.model_selection"


def _splitter_bases() -> tuple[type, ...]:
    """scikit-learn's splitter base classes: every splitter of ``sklearn.model_selection`` derives from one."""
    from sklearn.model_selection import BaseCrossValidator, BaseShuffleSplit
    from sklearn.model_selection._split import _RepeatedSplits

    return BaseCrossValidator, BaseShuffleSplit, _RepeatedSplits


def _in_splitter_module(module: str) -> bool:
    """Whether ``module`` is ``sklearn.model_selection`` or one of its modules (not its test suite, whose
    import would run more than a definition)."""
    inside = module == _SPLITTER_MODULE or module.startswith(_SPLITTER_MODULE + ".")
    return inside and "tests" not in module.split(".")


def _import_class(path: str) -> type:
    """The class named exactly ``module.Name``: the module imported as written, one attribute taken, and the
    class's own ``__module__`` and ``__qualname__`` naming it so (no path through other modules' names)."""
    module_name, _, name = path.rpartition(".")
    if not module_name or not all(part.isidentifier() for part in path.split(".")):
        raise InvalidInputError(
            f"splitter class {path!r} is not a dotted name module.ClassName; record the splitter again."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise InvalidInputError(
            f"splitter class {path!r}: module {module_name} cannot be imported here ({err}); install the "
            "module that defines it."
        ) from err
    target = vars(module).get(name)
    if not isinstance(target, type):
        raise InvalidInputError(
            f"splitter class {path!r}: {module_name} has no class {name}; install the version of the module "
            "that defines it."
        )
    actual = f"{target.__module__}.{target.__qualname__}"
    if actual != path:
        raise UntrustedModelError(
            f"splitter class {path!r} names {actual}, a class defined elsewhere: a splitter is rebuilt only from "
            "the module that defines it. Record the splitter again (its class path is type(cv).__module__ + "
            "'.' + type(cv).__qualname__)."
        )
    return target


def _checked_class(path: str, trusted_types: Sequence[str]) -> type:
    """The splitter class at ``path``, imported only when it may be: a scikit-learn splitter (defined in
    ``sklearn.model_selection``, derived from one of its splitter bases), or a class the registration
    trusted by name that is not one of :data:`~parity.registry.loading.NEVER_TRUSTED`."""
    trusted = path in trusted_types
    if trusted:
        refused = never_trusted([path])
        if refused:
            raise UntrustedModelError(
                f"splitter {refused[0]} can never be trusted: it is not a splitter. Register with a "
                "scikit-learn splitter, e.g. KFold(n_splits=5, shuffle=True, random_state=0)."
            )
    elif not _in_splitter_module(path.rpartition(".")[0]):
        raise UntrustedModelError(
            f"splitter {path} is not a scikit-learn class (expected a splitter of {_SPLITTER_MODULE}) and "
            "the registration did not trust it; register with trusted_types=[...] naming it to have it rebuilt."
        )
    cls = _import_class(path)
    if not trusted and (not issubclass(cls, _splitter_bases()) or cls.__name__ == "_CVIterableWrapper"):
        raise UntrustedModelError(
            f"splitter {path} is not a scikit-learn splitter (expected a subclass of BaseCrossValidator, "
            "BaseShuffleSplit or _RepeatedSplits); register with trusted_types=[...] naming it to have it "
            "rebuilt."
        )
    return cls


def _json_value(name: str, value: object, shown: str) -> object:
    """A splitter parameter as JSON holds it, or a refusal naming it."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, _SCALARS) for v in value):
        return list(value)
    raise InvalidInputError(
        f"{shown}: parameter {name}={type(value).__name__} cannot be recorded (expected a number, string, bool, "
        "None or a list of them). Pass a splitter whose parameters are plain values, e.g. "
        "KFold(n_splits=5, shuffle=True, random_state=0)."
    )


def _constructor_params(splitter: object, shown: str) -> dict[str, object]:
    """A scikit-learn splitter's constructor parameters, read back from its attributes as its repr does."""
    get_params = getattr(splitter, "get_params", None)
    if callable(get_params):
        return dict(get_params(deep=False))
    if not _class_path(splitter).startswith(_TRUSTED_MODULE):
        raise InvalidInputError(
            f"{shown} has no get_params(): its parameters cannot be recorded, so the CV cannot be rebuilt. "
            "Pass a scikit-learn splitter (e.g. KFold(n_splits=5, shuffle=True, random_state=0)) or give the "
            "class get_params(deep=False) returning its constructor arguments."
        )
    params: dict[str, object] = {}
    for name, parameter in inspect.signature(type(splitter).__init__).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if hasattr(splitter, name):
            params[name] = getattr(splitter, name)
        elif name in getattr(splitter, "cvargs", {}):  # RepeatedKFold and friends keep them there
            params[name] = splitter.cvargs[name]  # type: ignore[attr-defined]
        else:
            raise InvalidInputError(
                f"{shown}: parameter {name!r} cannot be read back; pass another splitter."
            )
    return params


def _refuse_unseeded(params: dict[str, object], shown: str) -> None:
    seed = params.get("random_state", 0)
    shuffles = params.get("shuffle", True)  # splitters without `shuffle` (ShuffleSplit...) always draw
    if (
        shuffles
        and "random_state" in params
        and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral))
    ):
        raise InvalidInputError(
            f"{shown} draws its folds at random with random_state={seed!r}: they differ each run, so the CV "
            "cannot be re-checked. Pass an integer random_state, e.g. KFold(n_splits=5, shuffle=True, "
            "random_state=0)."
        )


def _state(obj: object) -> str:
    """An object's attributes as text: a rebuilt splitter must hold what the original holds."""
    return repr(sorted(getattr(obj, "__dict__", {}).items()))


def record_splitter(cv: object, y: object = None, estimator: object = None) -> tuple[object, Splitter]:
    """The splitter to run and its reproducible spec, or a refusal saying what to pass.

    Parameters
    ----------
    cv : splitter object, int or None
        As ``cross_validate`` takes it; an int or None becomes the splitter scikit-learn would use
        (``StratifiedKFold`` for a classifier, ``KFold`` otherwise), which is what is recorded.
    y, estimator : optional
        Needed to resolve an int or None as scikit-learn does.

    Returns
    -------
    (splitter, Splitter)

    Raises
    ------
    InvalidInputError
        An iterable of splits, a splitter that shuffles without an integer ``random_state``, one without
        recordable parameters, or one that ``cls(**params)`` does not rebuild identically.
    """
    from sklearn.base import is_classifier
    from sklearn.model_selection import check_cv

    if cv is None or isinstance(cv, numbers.Integral):
        cv = check_cv(cv, y, classifier=is_classifier(estimator))
    shown = repr(cv) if len(repr(cv)) < 120 else type(cv).__name__
    if not hasattr(cv, "split") or type(cv).__name__ == "_CVIterableWrapper" or "<locals>" in _class_path(cv):
        raise InvalidInputError(
            f"cv={shown}: only a splitter object whose class can be imported can be recorded; pass one such "
            "as KFold(n_splits=5, shuffle=True, random_state=0), not a list of splits or a local class."
        )
    if "Group" in type(cv).__name__:
        raise InvalidInputError(
            f"cv={shown} splits by groups, and the snapshot keeps no groups column, so the CV cannot be re-run "
            "as it was. Pass a splitter without groups (e.g. KFold(n_splits=5, shuffle=True, random_state=0))."
        )
    params = {k: _json_value(k, v, shown) for k, v in _constructor_params(cv, shown).items()}
    _refuse_unseeded(params, shown)
    spec = Splitter.model_validate({"class": _class_path(cv), "params": params})
    rebuilt = build_splitter(spec, trusted_types=[spec.cls])
    again = {k: _json_value(k, v, shown) for k, v in _constructor_params(rebuilt, shown).items()}
    if again != params or _state(rebuilt) != _state(cv):
        raise InvalidInputError(
            f"cv={shown}: {spec.cls}(**{params}) rebuilds a splitter with parameters {again}; it cannot be "
            "recorded reproducibly. Pass a scikit-learn splitter such as KFold(n_splits=5, shuffle=True, "
            "random_state=0)."
        )
    return cv, spec


def build_splitter(spec: Splitter, trusted_types: Sequence[str] = ()) -> object:
    """Rebuild a recorded splitter: ``cls(**params)``, with plain JSON parameters only.

    A recorded class path is read as the record may have been tampered with: the module named is imported
    as written, one attribute of it is taken, and that class's ``__module__.__qualname__`` must be the path
    (no reaching other modules through a module's names). A class the registration did not trust by name
    must be a scikit-learn splitter: defined in ``sklearn.model_selection`` and derived from
    ``BaseCrossValidator``, ``BaseShuffleSplit`` or ``_RepeatedSplits``; the module is not imported unless
    its name is there. A class trusted by name is never one of
    :data:`~parity.registry.loading.NEVER_TRUSTED`.

    Parameters
    ----------
    spec : Splitter
    trusted_types : sequence of str
        Classes outside scikit-learn the registration trusted; any other such class is refused, as
        importing it would run code nobody reviewed.

    Raises
    ------
    UntrustedModelError
        A class that is not a scikit-learn splitter and that the registration did not trust, a class path
        that does not name where its class is defined, or a trusted name that can never be trusted.
    InvalidInputError
        The class cannot be imported, a parameter is not a plain value, or the class refuses the parameters.
    """
    cls = _checked_class(spec.cls, trusted_types)
    params = {k: _json_value(k, v, f"splitter {spec.cls}") for k, v in spec.params.items()}
    try:
        return cls(**params)
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"splitter {spec.cls}(**{params}) refused: {err}") from err


def scoring_spec(scoring: object) -> str | list[str] | None:
    """The scoring as recorded: a scorer name, a list of names, or None for the estimator's ``score``.

    Raises
    ------
    InvalidInputError
        A callable, a dict, or a name scikit-learn does not know.
    """
    from sklearn.metrics import get_scorer_names

    if scoring is None:
        return None
    names = [scoring] if isinstance(scoring, str) else scoring
    if not isinstance(names, list | tuple) or not names or not all(isinstance(n, str) for n in names):
        raise InvalidInputError(
            f"scoring={scoring!r} cannot be recorded: pass a scorer name such as 'accuracy', or a list of "
            "names (sklearn.metrics.get_scorer_names()); callables cannot be rebuilt later."
        )
    unknown = sorted(set(names) - set(get_scorer_names()))
    if unknown:
        raise InvalidInputError(
            f"scoring: unknown scorer name(s) {', '.join(unknown)}; see sklearn.metrics.get_scorer_names()."
        )
    return scoring if isinstance(scoring, str) else list(names)


def run_cv(
    estimator: object, X: pd.DataFrame, y: pd.Series, splitter: object, scoring: str | list[str] | None
) -> dict[str, list[float]]:
    """Cross-validate a clone of ``estimator``: scorer name → one score per fold.

    A fold that fails raises (``error_score="raise"``): a score that is silently NaN cannot be compared.
    """
    from sklearn.base import clone
    from sklearn.model_selection import cross_validate

    result = cross_validate(clone(estimator), X, y, cv=splitter, scoring=scoring, error_score="raise")
    if scoring is None or isinstance(scoring, str):
        return {scoring or "score": [float(s) for s in result["test_score"]]}
    return {name: [float(s) for s in result[f"test_{name}"]] for name in scoring}


def _snapshot_frame(X: pd.DataFrame, y: object, target: str) -> pd.DataFrame:
    if not isinstance(X, pd.DataFrame) or not all(isinstance(c, str) for c in X.columns):
        raise InvalidInputError(
            f"X must be a pandas DataFrame with string column names to be kept as a snapshot, got "
            f"{type(X).__name__}; wrap it, e.g. pd.DataFrame(X, columns=[...])."
        )
    if target in X.columns:
        raise InvalidInputError(
            f"X already has a column {target!r}; pass target= another name for y's column."
        )
    values = np.asarray(y)
    if values.ndim != 1 or len(values) != len(X):
        raise InvalidInputError(
            f"y must be 1-D with one value per row of X ({len(X)}), got shape {values.shape}."
        )
    return X.reset_index(drop=True).assign(**{target: values})


def read_snapshot(
    path: str | os.PathLike[str], features: Sequence[str], target: str
) -> tuple[pd.DataFrame, pd.Series]:
    """The features and target of a snapshot file.

    Raises
    ------
    InvalidInputError
        The file is not parquet or lacks a column.
    """
    try:
        frame = pd.read_parquet(path)
    except Exception as err:
        raise InvalidInputError(
            f"training data snapshot {path}: not a readable parquet file ({err})."
        ) from err
    missing = [c for c in [*features, target] if c not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"training data snapshot {path} lacks column(s) {', '.join(missing)}; it has {', '.join(frame.columns)}."
        )
    return frame[list(features)], frame[target]


def _take_snapshot(
    X: pd.DataFrame | None, y: object, path: Path, target: str | None
) -> tuple[str, list[str]]:
    """Write X and y to ``path`` (never over an existing file), or use the file there; the target column's
    name and the feature columns."""
    if X is None and y is None:
        if target is None or not path.is_file():
            raise InvalidInputError(
                f"without X and y, snapshot must be an existing parquet file and target= its target column "
                f"(snapshot {path}, target {target!r})."
            )
        frame = pd.read_parquet(path)
        return target, [str(c) for c in frame.columns if c != target]
    if X is None or y is None:
        raise InvalidInputError(
            "give both X and y (written to the snapshot), or neither (the snapshot is read)."
        )
    target = target or (str(y.name) if isinstance(y, pd.Series) and y.name is not None else "target")
    if path.exists():
        raise InvalidInputError(
            f"training data snapshot {path} already exists; snapshots are never overwritten. Pass a new path, or "
            "X=None, y=None and target= to use that file."
        )
    frame = _snapshot_frame(X, y, target)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return target, [str(c) for c in X.columns]


def register_with_cv(
    registry: Any,
    estimator: object,
    X: pd.DataFrame | None,
    y: object,
    *,
    name: str,
    snapshot: str | os.PathLike[str],
    reference: pd.DataFrame | str | os.PathLike[str],
    cv: object = None,
    scoring: str | Sequence[str] | None = None,
    target: str | None = None,
    **register_kwargs: Any,
) -> Any:
    """Cross-validate, fit and register a model, recording how its CV score was obtained.

    The estimator given is a template: only its parameters are used. The CV runs on clones, and the model
    registered is a clone fitted on the whole snapshot, as read back from the file, so that the recorded
    scores, the snapshot and the registered model describe one and the same training (and the audit's refit,
    which clones the registered model, repeats exactly this).

    Parameters
    ----------
    registry : FileRegistry
        Where to register (anything whose ``register`` takes ``cross_validation=``).
    estimator : scikit-learn estimator, fitted or not
    X, y : pandas.DataFrame and 1-D array-like, or both None
        The training data, written to ``snapshot`` (which must not exist yet); None and None to use the
        existing ``snapshot`` file, whose ``target`` column is y and whose other columns are X.
    name : str
        The model name.
    snapshot : path-like
        The training-data snapshot (parquet: the feature columns and the target column); its SHA-256 is
        recorded and checked by ``parity audit --cv``. It is not copied: keep it where it is.
    reference : pandas.DataFrame or path-like
        The reference rows (see :meth:`FileRegistry.register`).
    cv : splitter, int or None
        The splitter; an int or None is resolved as scikit-learn does and recorded as that splitter.
    scoring : str, list of str or None
        Scorer name(s); None uses the estimator's ``score``.
    target : str, optional
        The target column's name in the snapshot (default ``y.name``, else ``"target"``).
    **register_kwargs
        Passed to ``registry.register`` (``tolerances``, ``source_files``, ``trusted_types``...).

    Returns
    -------
    ModelRef

    Raises
    ------
    InvalidInputError
        An unrecordable splitter or scoring, unusable data, an existing snapshot given X and y, or a
        ``register`` argument this function sets itself.
    """
    from sklearn.base import clone

    taken = sorted(set(register_kwargs) & set(_OWN))
    if taken:
        raise InvalidInputError(f"register_with_cv sets {', '.join(taken)} itself; do not pass it.")
    recorded_scoring = scoring_spec(scoring)
    path = Path(snapshot)
    target, features = _take_snapshot(X, y, path, target)
    X_snap, y_snap = read_snapshot(path, features, target)
    splitter, spec = record_splitter(cv, y_snap, estimator)
    scores = run_cv(estimator, X_snap, y_snap, splitter, recorded_scoring)
    fitted = clone(estimator).fit(X_snap, y_snap)
    snapshot_record = Snapshot(
        uri=str(path.resolve()), sha256=sha256_of(path), features=features, target=target
    )
    record = CrossValidation.model_validate(
        {
            "splitter": spec,
            "scoring": recorded_scoring,
            "scores": scores,
            "snapshot": snapshot_record,
            "scikit-learn": provenance.environment_sklearn(),
            "n_samples": len(X_snap),
        }
    )
    register_kwargs.setdefault("training_data_uri", record.snapshot.uri)
    return registry.register(
        fitted,
        reference,
        name,
        training_data_snapshot=path,
        cv_scores=scores,
        cross_validation=record,
        **register_kwargs,
    )
