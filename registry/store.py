"""The file registry: ``REGISTRY/<name>/<version>/``, written whole or not at all."""

from __future__ import annotations

import errno
import hashlib
import numbers
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import skops.io as sio

from parity.core.durable import fsync_dir, fsync_tree
from parity.core.errors import InvalidInputError, RegistryError
from parity.core.numbers import decimal_int
from parity.core.records import CrossValidation, ModelFile, Provenance, RegistrationRecord
from parity.core.records.base import now
from parity.core.staging import staging_folder, sweep_stale

from . import events, loading, predictions, provenance
from .reference import check_columns, read_reference, read_stored_parquet

RECORD_FILE = "registration.json"
REFERENCE_FILE = "reference.parquet"
PREDICTIONS_FILE = "predictions.parquet"
#: Registrations stage in ``REGISTRY/.staging-<name>-<random>/`` (see :mod:`parity.core.staging`).
STAGING_PREFIX = ".staging-"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True, order=True)
class ModelRef:
    """A model version in a registry."""

    name: str
    version: int

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"

    @classmethod
    def parse(cls, text: str) -> tuple[str, int | None]:
        """Split ``NAME[:VERSION]``; the version is None when absent."""
        name, _, version = text.partition(":")
        check_name(name)
        if not version:
            return name, None
        number = decimal_int(version)
        if number is None or number < 1:
            raise InvalidInputError(f"{text!r}: the version must be a positive integer, e.g. {name}:1.")
        return name, number


@dataclass
class RegisteredModel:
    """One registered model version, loaded: the estimator, its reference data and predictions."""

    ref: ModelRef
    path: Path
    record: RegistrationRecord
    estimator: object
    reference: pd.DataFrame
    predictions: dict[str, np.ndarray]
    original_sklearn_version: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def model_file(self) -> Path:
        return self.path / self.record.model.file


@dataclass(frozen=True)
class Result:
    """What a validation concluded about one version, as a registry records it where its users look."""

    outcome: str
    #: the bundle (passed) or the rejected attempt's folder
    filed: str
    #: the report file inside it
    report: str
    #: the cells that did not pass, ``format/runtime/target/output: verdict``
    failing: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


def resolve_in(registry: Any, name: str, version: int | None) -> ModelRef:
    """``version`` of ``name`` among ``registry.refs()``, or its latest when None (any registry kind).

    Raises
    ------
    RegistryError
        No such model or version, naming what the registry has.
    """
    versions = registry.refs(check_name(name))
    if not versions:
        known = ", ".join(sorted({ref.name for ref in registry.refs()})) or "none"
        raise RegistryError(f"no model {name!r} in {registry.location} (registered: {known}).")
    if version is None:
        return versions[-1]
    ref = ModelRef(name, version)
    if ref not in versions:
        have = ", ".join(str(r.version) for r in versions)
        raise RegistryError(f"{name} has no version {version} in {registry.location}; it has {have}.")
    return ref


def is_model_name(name: object) -> bool:
    """Whether ``name`` can be a model's name (see :func:`check_name`)."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def check_name(name: str) -> str:
    """Refuse model names that cannot be a folder name on every system."""
    if not is_model_name(name):
        raise InvalidInputError(
            f"model name {name!r} is not allowed: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (e.g. 'churn-classifier')."
        )
    return name


def _check_reference(reference: object, estimator: object, what: str) -> pd.DataFrame:
    """The reference rows, in the model's column order, refused with ``what`` named when unusable."""
    if not isinstance(reference, pd.DataFrame):
        raise InvalidInputError(
            f"{what} must be a pandas DataFrame with named columns, got {type(reference).__name__}."
        )
    if len(reference) == 0:
        raise InvalidInputError(f"{what} has no rows: give at least one row the model can predict on.")
    check_columns(list(reference.columns), what)
    _check_one_type_per_column(reference, what)
    expected = getattr(estimator, "feature_names_in_", None)
    if expected is not None:
        missing = [str(column) for column in expected if column not in reference.columns]
        if missing:
            raise InvalidInputError(
                f"{what} lacks column(s) {', '.join(missing)} that the model was fitted on; "
                f"it has {', '.join(reference.columns)}. Pass reference rows with every training column."
            )
        return reference[list(expected)].reset_index(drop=True)
    return reference.reset_index(drop=True)


def _kind(value: object) -> str:
    if isinstance(value, bool | np.bool_):
        return "bool"
    if isinstance(value, numbers.Number):
        return "number"
    return "text" if isinstance(value, str) else type(value).__name__


def _value_kinds(column: pd.Series) -> list[str]:
    """The kinds of the non-missing values of an object column: number, text, bool or a type's name."""
    return sorted(set(map(_kind, column.dropna())))


def _check_one_type_per_column(reference: pd.DataFrame, what: str) -> None:
    """Refuse object columns that mix kinds of values (text and numbers): no artifact input takes them."""
    for name in (c for c, dtype in reference.dtypes.items() if pd.api.types.is_object_dtype(dtype)):
        kinds = _value_kinds(reference[name])
        if len(kinds) > 1:
            raise InvalidInputError(
                f"{what}: column {name!r} mixes {' and '.join(kinds)} values; a column holds one type. "
                f"Convert it (e.g. `pd.to_numeric(df[{name!r}])`) or fix the values of the other type."
            )


def _text_columns(reference: pd.DataFrame) -> str:
    """A hint naming the columns that hold text, for a model that refused the rows."""
    text = [str(name) for name in reference.select_dtypes(include=["object", "string"]).columns]
    if not text:
        return ""
    return (
        f" Column(s) holding text: {', '.join(text)}; if the model was fitted on numbers there, convert "
        "them (`pd.to_numeric`) or fix the values that are not numbers."
    )


def _reference_outputs(estimator: object, reference: pd.DataFrame, what: str) -> dict[str, np.ndarray]:
    """The estimator's reference outputs; a refusal of the rows names the data and its text columns."""
    try:
        return predictions.reference_predictions(estimator, reference)
    except InvalidInputError as err:
        raise InvalidInputError(f"{what}: {err}{_text_columns(reference)}") from err


def _store_reference(reference: pd.DataFrame, path: Path, what: str) -> None:
    try:
        reference.to_parquet(path, index=False)
    except (pa.ArrowException, TypeError, ValueError) as err:
        raise InvalidInputError(
            f"{what} cannot be stored as parquet ({err}): give each column one type (numbers, text or bool)."
        ) from None


class FileRegistry:
    """A registry of models on a file system.

    Parameters
    ----------
    root : path-like
        The registry folder; created on first registration.
    """

    #: a file registry's users read the archive, where the verdict already is
    writes_back = False

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"FileRegistry({str(self.root)!r})"

    @property
    def location(self) -> str:
        """The registry as flows, events and deployments name it: its absolute folder."""
        return str(self.root.resolve())

    def listing(self, ref: ModelRef) -> dict[str, str]:
        """What ``parity models`` shows of a version: its estimator and when it was registered."""
        record = self.record(ref)
        return {"estimator": record.estimator_summary, "registered_at": record.registered_at}

    def record_result(self, ref: ModelRef, result: object) -> list[str]:
        """Nothing to write back: a file registry's users read the archive, where the verdict already is."""
        return []

    # -- reading ---------------------------------------------------------------------------------------
    def refs(self, name: str | None = None) -> list[ModelRef]:
        """Every registered version, sorted by name then version (optionally of one model)."""
        if not self.root.is_dir():
            return []
        # a folder that is no model name ('.staging-…', '²', one made by hand) holds no registration
        names = [name] if name else sorted(p.name for p in self.root.iterdir() if is_model_name(p.name))
        found = []
        for model in names:
            folder = self.root / model
            if not folder.is_dir():
                continue
            for version in folder.iterdir():
                number = decimal_int(version.name)
                if number is not None and (version / RECORD_FILE).is_file():
                    found.append(ModelRef(model, number))
        return sorted(found)

    def resolve(self, name: str, version: int | None = None) -> ModelRef:
        """The given version, or the latest one when ``version`` is None."""
        return resolve_in(self, name, version)

    def path(self, ref: ModelRef) -> Path:
        return self.root / ref.name / str(ref.version)

    def record(self, ref: ModelRef) -> RegistrationRecord:
        """The registration record of a version.

        Raises
        ------
        RegistryError
            The version is not registered.
        RecordError, RecordSchemaError
            Its ``registration.json`` is damaged or of a schema this version of Parity does not read.
        """
        path = self.path(ref) / RECORD_FILE
        try:
            return RegistrationRecord.read(path)
        except FileNotFoundError:
            raise RegistryError(f"{ref}: no {RECORD_FILE} in {path.parent}; is it registered?") from None

    def open(self, ref: ModelRef) -> RegisteredModel:
        """Load a version safely with its reference data and predictions.

        Raises
        ------
        RegistryError, UntrustedModelError, IntegrityError
        """
        record = self.record(ref)
        folder = self.path(ref)
        model = record.model
        loaded = loading.load_model(
            folder / model.file,
            model.format,
            trusted_types=record.trusted_types,
            trusted_pickle=model.trusted_pickle,
            expected_sha256=model.sha256,
        )
        notes = list(loaded.notes)
        trained_with = record.provenance.environment.scikit_learn
        here = provenance.environment_sklearn()
        original = loaded.original_sklearn_version
        if trained_with and trained_with != here:
            notes.append(f"registered under scikit-learn {trained_with}, validated under {here}")
            original = original or trained_with
        fix = f"Restore {folder} from a backup, or register the model again (a new version)."
        reference = read_stored_parquet(folder / record.reference.file, RegistryError, fix)
        stored = read_stored_parquet(folder / record.predictions.file, RegistryError, fix)
        preds = predictions.predictions_from_frame(stored)
        return RegisteredModel(ref, folder, record, loaded.estimator, reference, preds, original, notes)

    # -- writing ---------------------------------------------------------------------------------------
    def register(
        self,
        estimator: object,
        reference: pd.DataFrame | str | os.PathLike[str],
        name: str,
        *,
        version: int | None = None,
        tolerances: Mapping[str, Mapping[str, float]] | None = None,
        training_data_uri: str | None = None,
        training_data_snapshot: str | os.PathLike[str] | None = None,
        source_files: Sequence[str | os.PathLike[str]] | None = None,
        cv_scores: Mapping[str, float | Sequence[float]] | None = None,
        trusted_types: Iterable[str] = (),
        model_file: str | os.PathLike[str] | None = None,
        trust_pickle: bool = False,
        sha256: str | None = None,
        roles: Mapping[str, str] | None = None,
        predict_with: Callable[[object, pd.DataFrame], dict[str, np.ndarray]] | None = None,
        origin: Mapping[str, Any] | None = None,
        announce: bool = True,
        cross_validation: CrossValidation | None = None,
    ) -> ModelRef:
        """Register a fitted estimator (or a saved model file) with its reference data and provenance.

        Parameters
        ----------
        estimator : fitted estimator or None
            The model, stored with skops. None when ``model_file`` is given.
        reference : pandas.DataFrame or path-like
            Named columns, at least one row: the rows every converted artifact is checked on; or a
            ``.parquet``/``.csv`` file of them (read by :func:`parity.registry.reference.read_reference`, so
            that every error names that file).
        name : str
            Model name (letters, digits, '.', '_', '-').
        version : int, optional
            Defaults to the next integer for this name.
        tolerances : mapping, optional
            Overrides per output kind, e.g. ``{"probability": {"atol": 1e-3}}``.
        training_data_uri : str, optional
            Where the training data lives.
        training_data_snapshot : path-like, optional
            A snapshot file of the training data; its SHA-256 is recorded (the file is not copied).
        source_files : sequence of path-like, optional
            Training source code to keep; defaults to the calling module's source file.
        cv_scores : mapping, optional
            Cross-validation score(s) by metric name.
        roles : mapping, optional
            Runtime roles for this model, e.g. ``{"pypmml": "deploy"}`` to serve the PMML with pypmml too
            (each is ``deploy`` or ``witness``; the runtime names are checked when the model is validated).
        trusted_types : iterable of str
            Types inside a skops file the registrant reviewed and trusts.
        model_file : path-like, optional
            A saved model (``.skops``, or ``.pkl``/``.joblib`` with ``trust_pickle`` and ``sha256``).
        trust_pickle : bool
            Explicit trust for a pickle/joblib ``model_file``.
        sha256 : str, optional
            The expected SHA-256 of a pickle/joblib ``model_file``, checked before unpickling.
        predict_with : callable, optional
            ``(estimator, rows) -> outputs``: computes the reference predictions instead of this process
            (an import from MLflow computes them in the training run's environment when it differs).
        origin : mapping, optional
            Where a version imported from an external registry came from (an
            :class:`~parity.core.records.Origin`), kept in the provenance.
        announce : bool
            Emit ``parity.model.registered`` (False for a mirror of another registry, which announces itself).
        cross_validation : CrossValidation, optional
            How ``cv_scores`` were obtained, kept in the provenance for ``parity audit --cv``; made by
            :func:`parity.registry.cv.register_with_cv`, which is the way to pass it.

        Returns
        -------
        ModelRef

        Raises
        ------
        InvalidInputError, UntrustedModelError, IntegrityError, RegistryError

        Notes
        -----
        When a Prefect API is configured, the new version is announced as the ``parity.model.registered``
        event (see :mod:`parity.registry.events`); failing to send it only logs a warning.
        """
        check_name(name)
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise InvalidInputError(
                f"version {version!r}: the version must be a positive integer, e.g. {name}:1."
            )
        _check_tolerances(tolerances)
        trusted = sorted(set(trusted_types))
        loading.refuse_never_trusted(trusted, "trusted_types")
        if isinstance(reference, str | os.PathLike):
            what, reference = f"reference data file {reference}", read_reference(reference)
        else:
            what = "reference data"
        self.sweep_staging()
        with staging_folder(self._ensure_root(), f"{STAGING_PREFIX}{name}-") as staging:
            model_entry, estimator = _stage_model(
                staging, estimator, model_file, trusted, trust_pickle, sha256, reference
            )
            reference = _check_reference(reference, estimator, what)
            outputs = (
                predict_with(estimator, reference)
                if predict_with
                else _reference_outputs(estimator, reference, what)
            )
            _store_reference(reference, staging / REFERENCE_FILE, what)
            predictions.predictions_to_frame(outputs).to_parquet(staging / PREDICTIONS_FILE, index=False)
            record = RegistrationRecord.model_validate(
                {
                    "name": name,
                    "version": version or 1,  # the number actually taken is set when moved into place
                    "estimator_type": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
                    "estimator_summary": _summary(estimator),
                    "registered_at": now(),
                    "model": model_entry,
                    "trusted_types": trusted,
                    "reference": {
                        "file": REFERENCE_FILE,
                        "rows": len(reference),
                        "columns": [{"name": str(c), "dtype": str(t)} for c, t in reference.dtypes.items()],
                        "sha256": loading.sha256_of(staging / REFERENCE_FILE),
                    },
                    "predictions": {
                        "file": PREDICTIONS_FILE,
                        "outputs": {
                            k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in outputs.items()
                        },
                        "classes": _classes(estimator),
                    },
                    "tolerances": {k: dict(v) for k, v in (tolerances or {}).items()},
                    **({"roles": dict(roles)} if roles else {}),
                    "provenance": {
                        **_provenance(
                            staging, training_data_uri, training_data_snapshot, source_files, cv_scores
                        ).to_json(),
                        **({"origin": dict(origin)} if origin else {}),
                        **({"cross_validation": cross_validation.to_json()} if cross_validation else {}),
                    },
                }
            )
            ref = self._commit(staging, record, name, version)
        if announce:
            events.emit_registered(ref.name, ref.version, self.root)  # never raises: logs a warning instead
        return ref

    def sweep_staging(self) -> list[Path]:
        """Remove the staging folders of registrations whose process is gone (killed, crashed).

        Returns
        -------
        list of Path
            The folders removed; a live registration's folder is never among them.
        """
        return sweep_stale(self.root, STAGING_PREFIX)

    def _ensure_root(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root

    def _taken(self, name: str) -> int:
        """The highest version number with a folder, registered or not (a stray folder is never reused)."""
        folder = self.root / name
        numbers = (decimal_int(p.name) for p in folder.iterdir())
        return max((n for n in numbers if n is not None), default=0)

    def _commit(self, staging: Path, record: RegistrationRecord, name: str, version: int | None) -> ModelRef:
        """Move the staged folder into place, durably; a taken version is never overwritten."""
        (self.root / name).mkdir(exist_ok=True)
        for _attempt in range(100):
            number = version if version is not None else self._taken(name) + 1
            (staging / RECORD_FILE).write_bytes(record.model_copy(update={"version": number}).to_bytes())
            fsync_tree(staging)
            target = self.root / name / str(number)
            try:
                # rename() of a folder onto an existing non-empty folder fails: versions are never replaced
                os.rename(staging, target)
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise RegistryError(f"could not move {name}:{number} into {self.root}: {err}.") from err
                if version is not None:
                    raise RegistryError(
                        f"{name}:{version} is already registered in {self.root}; versions are immutable. "
                        "Register without a version to get the next one."
                    ) from None
                continue  # another registration took this number first: take the next one
            fsync_dir(target.parent)
            return ModelRef(name, number)
        raise RegistryError(f"could not find a free version for {name} in {self.root} after 100 tries.")


def _check_tolerances(tolerances: Mapping[str, Mapping[str, float]] | None) -> None:
    from parity.core.tolerances import check_overrides

    try:
        check_overrides(tolerances)
    except ValueError as err:
        raise InvalidInputError(str(err)) from err


def _stage_model(
    staging: Path,
    estimator: object,
    model_file: str | os.PathLike[str] | None,
    trusted: list[str],
    trust_pickle: bool,
    sha256: str | None,
    reference: object = None,
) -> tuple[ModelFile, object]:
    """Write or copy the model into ``staging`` and load it back the way the pipeline will (a skops file
    first in a child process, predicting on the reference rows: see :func:`loading.load_model`)."""
    if (estimator is None) == (model_file is None):
        raise InvalidInputError("give exactly one of a fitted estimator or model_file.")
    if model_file is None:
        target, payload, fmt = staging / "model.skops", sio.dumps(estimator), "skops"
        shown = f"the {type(estimator).__name__} given"
    else:
        source = Path(model_file)
        if not source.is_file():
            raise InvalidInputError(f"model file {source} does not exist.")
        fmt = loading.model_format(source)
        target = staging / f"model{source.suffix.lower()}"
        # read once: the bytes kept are the bytes hashed, checked and loaded (a file swapped meanwhile
        # changes nothing), and messages name the user's file, never the staging copy they never saw
        payload, shown = source.read_bytes(), str(source)
    target.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    loaded = loading.load_payload(
        payload,
        fmt,
        shown,
        trusted_types=trusted,
        trusted_pickle=trust_pickle,
        expected_sha256=sha256 or None,
        rows=reference if isinstance(reference, pd.DataFrame) else None,
        isolate=True,  # a hash the registrant gives vouches for nothing: these bytes are new to Parity
    )
    entry = ModelFile(
        file=target.name,
        format=fmt,
        sha256=digest,
        trusted_pickle=bool(trust_pickle),
        original_sklearn_version=loaded.original_sklearn_version or None,
    )
    return entry, loaded.estimator


def _scores(name: object, value: Any) -> float | list[float]:
    """One CV score or a list of them (a list, tuple or numpy array, as cross_val_score returns)."""
    try:
        return list(map(float, np.ravel(value))) if np.ndim(value) else float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"cv_scores[{name!r}] must be a number or numbers, got {value!r}.") from None


def _summary(estimator: object) -> str:
    steps = getattr(estimator, "steps", None)
    if steps:
        return " > ".join(_summary(step) for _, step in steps)
    transformers = getattr(estimator, "transformers", None)
    if transformers:
        return f"{type(estimator).__name__}({', '.join(_summary(t) for _, t, _ in transformers)})"
    return type(estimator).__name__


def _classes(estimator: object) -> list | None:
    classes = getattr(estimator, "classes_", None)
    return None if classes is None else np.asarray(classes).tolist()


def _provenance(
    staging: Path,
    training_data_uri: str | None,
    snapshot: str | os.PathLike[str] | None,
    source_files: Sequence[str | os.PathLike[str]] | None,
    cv_scores: Mapping[str, float | Sequence[float]] | None,
) -> Provenance:
    data: dict[str, object] = {"uri": training_data_uri}
    if snapshot is not None:
        snapshot_path = Path(snapshot)
        if not snapshot_path.is_file():
            raise InvalidInputError(f"training data snapshot {snapshot_path} does not exist.")
        data.update(snapshot=str(snapshot_path.resolve()), snapshot_sha256=loading.sha256_of(snapshot_path))
    if source_files is None:
        caller = provenance.calling_source_file()
        files = [caller] if caller else []
        origin = "calling module" if caller else "none: registered from an interactive session"
    else:
        files = [Path(f) for f in source_files]
        origin = "given"
    (staging / "source").mkdir()
    sources = []
    for path in files:
        if not path.is_file():
            raise InvalidInputError(f"training source file {path} does not exist.")
        kept = staging / "source" / path.name
        if kept.exists():
            raise InvalidInputError(f"two training source files are named {path.name}; rename one.")
        shutil.copyfile(path, kept)
        sources.append(
            {"file": f"source/{path.name}", "origin": str(path), "sha256": loading.sha256_of(kept)}
        )
    scores = {str(k): _scores(k, v) for k, v in (cv_scores or {}).items()}
    return Provenance.model_validate(
        {
            "training_data": data,
            "source": {"origin": origin, "files": sources},
            "cv_scores": scores,
            "environment": provenance.environment(),
        }
    )
