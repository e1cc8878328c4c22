"""Safe loading of model files: skops with an allowlist, pickle/joblib only with trust and a matching hash."""

from __future__ import annotations

import hashlib
import io
import pickle
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import joblib
import pandas as pd
import skops.io as sio
from sklearn.exceptions import InconsistentVersionWarning

from parity.core.errors import IntegrityError, UntrustedModelError

from .sandbox import try_in_child
from .structure import STRUCTURE_CHECKS, check_structure

#: Types Parity trusts inside a skops file beyond skops' own defaults: plain-Python data holders of
#: scikit-learn or numpy that skops does not trust by default, and the compiled holders that have a
#: structural check (:data:`parity.registry.structure.STRUCTURE_CHECKS`: trees and neighbour trees, whose
#: indices scikit-learn follows without bounds checks). Anything else must be listed by whoever registers
#: the model (``trusted_types``), and that list lives in the registry, never in the model file.
ALLOWLIST: frozenset[str] = frozenset(
    {
        "numpy.dtype",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.MultinomialLogit",
        *STRUCTURE_CHECKS,
    }
)

#: What can never be a model part, trusted or not: each runs code, reaches the system, or loads more pickled
#: data. A type is refused when its name is listed here or starts with a listed ``module.`` prefix.
NEVER_TRUSTED: dict[str, str] = {
    "builtins.eval": "evaluates Python source",
    "builtins.exec": "executes Python source",
    "builtins.compile": "compiles Python source",
    "builtins.__import__": "imports any module",
    "builtins.open": "opens any file",
    "builtins.getattr": "reaches any attribute of any object",
    "builtins.setattr": "changes any attribute of any object",
    "builtins.delattr": "deletes any attribute of any object",
    "builtins.globals": "reaches the interpreter's globals",
    "builtins.vars": "reaches any object's namespace",
    "builtins.breakpoint": "starts a debugger",
    "builtins.input": "reads the terminal",
    "os.": "reaches the operating system (files, processes, environment)",
    "posix.": "reaches the operating system",
    "nt.": "reaches the operating system",
    "subprocess.": "runs programs",
    "sys.": "reaches the interpreter",
    "importlib.": "imports any module",
    "runpy.": "runs any module",
    "ctypes.": "calls native code",
    "pickle.": "unpickles more data, which can run anything",
    "_pickle.": "unpickles more data, which can run anything",
    "joblib.": "unpickles more data, which can run anything",
    "dill.": "unpickles more data, which can run anything",
    "cloudpickle.": "unpickles more data, which can run anything",
    "marshal.": "loads code objects",
    "numpy.load": "unpickles .npy/.npz data with allow_pickle",
    "numpy.lib.npyio.": "unpickles .npy/.npz data with allow_pickle",
    "operator.methodcaller": "calls any method of any object",
    "operator.attrgetter": "reaches any attribute of any object",
    "shutil.": "copies and deletes files",
    "socket.": "opens network connections",
    "code.": "runs Python source",
    "codeop.": "compiles Python source",
    "pty.": "spawns processes",
    "types.CodeType": "builds code objects",
    "types.FunctionType": "builds functions from code objects",
}


def never_trusted(types: Iterable[str]) -> list[str]:
    """The types in ``types`` that can never be trusted, each with why (see :data:`NEVER_TRUSTED`)."""
    refused = []
    for name in types:
        why = NEVER_TRUSTED.get(name) or next(
            (
                reason
                for prefix, reason in NEVER_TRUSTED.items()
                if prefix.endswith(".") and name.startswith(prefix)
            ),
            None,
        )
        if why:
            refused.append(f"{name} ({why})")
    return refused


def refuse_never_trusted(types: Iterable[str], where: str) -> None:
    """Refuse trust in a type that can never be a model part, naming each and why.

    Raises
    ------
    UntrustedModelError
        When ``types`` names one of :data:`NEVER_TRUSTED`.
    """
    refused = never_trusted(types)
    if refused:
        raise UntrustedModelError(
            f"{where}: {', '.join(refused)} can never be trusted inside a model file: trusting it would let the "
            "file run code at load. A model needs none of these; re-save it from the estimator with "
            "skops.io.dump and register that file."
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
    return _not_trusted(sio.get_untrusted_types(data=path.read_bytes()), trusted_types)


def _not_trusted(found: Iterable[str], trusted_types: Iterable[str]) -> list[str]:
    """The types of ``found`` that neither :data:`ALLOWLIST` nor ``trusted_types`` trust."""
    return sorted(set(found) - ALLOWLIST - set(trusted_types))


def load_model(
    path: Path,
    fmt: str,
    *,
    trusted_types: tuple[str, ...] | list[str] = (),
    trusted_pickle: bool = False,
    expected_sha256: str | None = None,
    rows: pd.DataFrame | None = None,
    isolate: bool | None = None,
) -> LoadedModel:
    """Load a model file safely.

    A skops file is read once; its SHA-256, its types and the model are taken from those same bytes. Bytes
    not bound to a registration (no ``expected_sha256``) are first built and exercised in a memory-limited
    child process (:func:`parity.registry.sandbox.try_in_child`), so a file that crashes the loader is
    refused instead of taking Parity down. Every loaded model passes the structural checks of
    :mod:`parity.registry.structure` before it is returned.

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
    rows : pandas.DataFrame, optional
        Reference rows the child process predicts on when the bytes are tried there first.
    isolate : bool, optional
        Try the bytes in a child process first; default: when no ``expected_sha256`` binds them to a
        registration (True also for bytes whose hash only the artifact under check vouches for).

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
    return load_payload(
        path.read_bytes(),
        fmt,
        str(path),
        trusted_types=trusted_types,
        trusted_pickle=trusted_pickle,
        expected_sha256=expected_sha256,
        rows=rows,
        isolate=isolate,
    )


def load_payload(
    payload: bytes,
    fmt: str,
    where: str,
    *,
    trusted_types: tuple[str, ...] | list[str] = (),
    trusted_pickle: bool = False,
    expected_sha256: str | None = None,
    rows: pd.DataFrame | None = None,
    isolate: bool | None = None,
) -> LoadedModel:
    """Load a model from bytes already read: as :func:`load_model`, with ``where`` naming the user's file
    in every message (never a copy of it).

    Returns
    -------
    LoadedModel

    Raises
    ------
    UntrustedModelError, IntegrityError
        As :func:`load_model`.
    """
    if fmt == "skops":
        isolate = not expected_sha256 if isolate is None else isolate
        return _load_skops(where, payload, trusted_types, expected_sha256, rows, isolate)
    if not trusted_pickle or not expected_sha256:
        raise UntrustedModelError(
            f"{where}: a {fmt} file can run arbitrary code when loaded; it is loaded only when registered "
            "with an explicit trust flag and its SHA-256 (--trust-pickle --sha256 HEX). "
            "Prefer skops: skops.io.dump(model, 'model.skops')."
        )
    actual = hashlib.sha256(payload).hexdigest()
    if actual != expected_sha256.lower():
        raise IntegrityError(
            f"{where}: SHA-256 is {actual}, but {expected_sha256} was recorded. The file changed since it "
            "was trusted; it was not unpickled. Re-register it only if you trust the new file."
        )
    if fmt == "joblib":
        return _with_version_check(lambda: joblib.load(io.BytesIO(payload)))
    return _with_version_check(lambda: pickle.loads(payload))


def _load_skops(
    where: str,
    payload: bytes,
    trusted_types: tuple[str, ...] | list[str],
    expected_sha256: str | None,
    rows: pd.DataFrame | None = None,
    isolate: bool = True,
) -> LoadedModel:
    """Hash, check and load the same bytes, read once: a file swapped meanwhile changes nothing loaded.

    The trust list skops gets is explicit: the types these bytes hold, each one checked to be trusted.
    With ``isolate`` (bytes no registration vouches for) they are tried in a child process first.
    """
    refuse_never_trusted(trusted_types, where)
    actual = hashlib.sha256(payload).hexdigest()
    if expected_sha256 and actual != expected_sha256.lower():
        raise IntegrityError(
            f"{where}: SHA-256 is {actual}, but {expected_sha256} was recorded at registration. "
            "The model file changed since; register the new file as a new version."
        )
    try:
        found = sorted(set(sio.get_untrusted_types(data=payload)))
    except Exception as err:  # not a skops file, or a damaged one: refused, never half-loaded
        raise UntrustedModelError(
            f"{where}: not a readable skops file ({type(err).__name__}: {err}). Save the model with "
            "skops.io.dump(model, 'model.skops')."
        ) from err
    bad = _not_trusted(found, trusted_types)
    if bad:
        raise UntrustedModelError(
            f"{where}: holds types not on the allowlist: {', '.join(bad)}. Review them, then register "
            "the model again listing them as trusted (trusted_types=[...] or --trusted-type)."
        )
    if isolate:
        try_in_child(payload, found, where, rows)
    loaded = _with_version_check(lambda: sio.loads(payload, trusted=found))
    check_structure(loaded.estimator, where)
    return loaded


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
