"""Safe loading of model files: skops with an allowlist, pickle/joblib only with trust and a matching hash."""

from __future__ import annotations

import hashlib
import io
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import joblib
import skops.io as sio
from sklearn.exceptions import InconsistentVersionWarning

from parity.core.errors import IntegrityError, UntrustedModelError

#: Types Parity trusts inside a skops file beyond skops' own defaults: each is a plain data holder of
#: scikit-learn or numpy that skops does not trust by default. Anything else must be listed by whoever
#: registers the model (``trusted_types``), and that list lives in the registry, never in the model file.
ALLOWLIST: frozenset[str] = frozenset(
    {
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.MultinomialLogit",
    }
)

#: File formats the registry accepts, by suffix.
MODEL_FORMATS: dict[str, str] = {
    ".skops": "skops",
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".joblib": "joblib",
}


@dataclass(frozen=True)
class LoadedModel:
    """An estimator read from a file, with what loading it revealed."""

    estimator: object
    original_sklearn_version: str | None
    notes: tuple[str, ...]


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_format(path: Path) -> str:
    """The registry's name for a model file's format, from its suffix.

    Raises
    ------
    UntrustedModelError
        For a suffix that is not in :data:`MODEL_FORMATS`.
    """
    try:
        return MODEL_FORMATS[path.suffix.lower()]
    except KeyError:
        raise UntrustedModelError(
            f"{path}: unknown model file type {path.suffix!r}; expected one of "
            f"{', '.join(sorted(MODEL_FORMATS))}. Save the model with skops.io.dump(model, 'model.skops')."
        ) from None


def untrusted_types(path: Path, trusted_types: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Types in a skops file that neither skops, :data:`ALLOWLIST` nor ``trusted_types`` trust."""
    found = sio.get_untrusted_types(file=path)
    return sorted(set(found) - ALLOWLIST - set(trusted_types))


def load_model(
    path: Path,
    fmt: str,
    *,
    trusted_types: tuple[str, ...] | list[str] = (),
    trusted_pickle: bool = False,
    expected_sha256: str | None = None,
) -> LoadedModel:
    """Load a model file safely.

    Parameters
    ----------
    path : Path
        The model file.
    fmt : {"skops", "pickle", "joblib"}
    trusted_types : sequence of str
        Extra types the registration trusted (skops only).
    trusted_pickle : bool
        Whether the registration explicitly trusted this pickle/joblib file.
    expected_sha256 : str, optional
        The file's SHA-256 recorded at registration; required for pickle/joblib.

    Returns
    -------
    LoadedModel

    Raises
    ------
    UntrustedModelError
        A skops file holds types nobody trusted, or a pickle was not explicitly trusted.
    IntegrityError
        The file's SHA-256 differs from the recorded one (for pickle/joblib: checked before unpickling).
    """
    if fmt == "skops":
        if expected_sha256 and sha256_of(path) != expected_sha256.lower():
            raise IntegrityError(
                f"{path}: SHA-256 is {sha256_of(path)}, but {expected_sha256} was recorded at registration. "
                "The model file changed since; register the new file as a new version."
            )
        bad = untrusted_types(path, trusted_types)
        if bad:
            raise UntrustedModelError(
                f"{path}: holds types not on the allowlist: {', '.join(bad)}. Review them, then register "
                "the model again listing them as trusted (trusted_types=[...] or --trusted-type)."
            )
        return _with_version_check(lambda: sio.load(path, trusted=sio.get_untrusted_types(file=path)))
    if not trusted_pickle or not expected_sha256:
        raise UntrustedModelError(
            f"{path}: a {fmt} file can run arbitrary code when loaded; it is loaded only when registered "
            "with an explicit trust flag and its SHA-256 (--trust-pickle --sha256 HEX). "
            "Prefer skops: skops.io.dump(model, 'model.skops')."
        )
    payload = path.read_bytes()
    actual = hashlib.sha256(payload).hexdigest()
    if actual != expected_sha256.lower():
        raise IntegrityError(
            f"{path}: SHA-256 is {actual}, but {expected_sha256} was recorded. The file changed since it "
            "was trusted; it was not unpickled. Re-register it only if you trust the new file."
        )
    if fmt == "joblib":
        return _with_version_check(lambda: joblib.load(io.BytesIO(payload)))
    return _with_version_check(lambda: pickle.loads(payload))


def _with_version_check(load: object) -> LoadedModel:
    """Run ``load`` and turn scikit-learn's version warning into data instead of noise."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InconsistentVersionWarning)
        estimator = load()  # type: ignore[operator]
    original = None
    notes: list[str] = []
    for warning in caught:
        if isinstance(warning.message, InconsistentVersionWarning):
            original = warning.message.original_sklearn_version
            notes.append(
                f"{warning.message.estimator_name} was pickled with scikit-learn {original} and loaded "
                f"with {warning.message.current_sklearn_version}: its reference predictions may differ."
            )
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno, source=warning.source
            )
    return LoadedModel(estimator, original, tuple(dict.fromkeys(notes)))
