"""Importing one MLflow model version into the local mirror: what :class:`~parity.registry.mlflow.MlflowRegistry`
does the first time a version is opened (see that module for what of MLflow's model format is read)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from parity.core.errors import IntegrityError, InvalidInputError, RegistryError, UntrustedModelError

from . import provenance
from .loading import refuse_never_trusted
from .reference import read_reference
from .store import ModelRef

logger = logging.getLogger("parity.registry.mlflow")

#: The run artifact training code logs its reference rows as (``mlflow.log_artifact(path, "parity")``).
REFERENCE_ARTIFACT = "parity/reference.parquet"
#: Metrics whose names say they are cross-validation scores (``cv_roc_auc``, ``accuracy.cv``, ``cross_val_f1``).
CV_METRIC = re.compile(r"(^|[._\-/])cv([._\-/]|$)|cross[._\-]?val", re.IGNORECASE)
#: The tags Parity writes on a model version (and reads back: ``parity.model_sha256`` above all).
TAG_SHA256 = "parity.model_sha256"
TAG_VERDICT = "parity.verdict"
#: The variable that marks MLflow registries whose pickles Parity may load (tracking URIs, comma-separated,
#: or ``*`` for every one): the operator's decision, never the model's.
TRUST_PICKLE_ENV = "PARITY_MLFLOW_TRUST_PICKLE"

#: Types inside skops files the operator trusts for this machine's MLflow registries (comma-separated), beyond
#: Parity's allowlist. The ``skops_trusted_types`` an MLmodel lists are the model author's word, so they are
#: taken only from registries the operator marked trusted (:func:`trusts_pickle`).
TRUSTED_TYPES_ENV = "PARITY_MLFLOW_TRUSTED_TYPES"

#: The environment files of an MLflow model, kept with the registration (as its training source).
ENVIRONMENT_FILES = ("MLmodel", "requirements.txt", "python_env.yaml", "conda.yaml")
#: Rows of an input example below which a warning says they prove little.
FEW_ROWS = 20
#: sklearn flavor serialization formats, as Parity's registry names their files' formats.
FORMATS: Mapping[str, str] = {"skops": "skops", "pickle": "pickle", "cloudpickle": "pickle"}
_PIN = re.compile(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*==\s*([^\s;#]+)")


def trusts_pickle(tracking_uri: str) -> bool:
    """Whether the operator marked this MLflow server as one whose pickles Parity may load."""
    marked = [u.strip().rstrip("/") for u in os.environ.get(TRUST_PICKLE_ENV, "").split(",") if u.strip()]
    return "*" in marked or tracking_uri in marked or f"mlflow+{tracking_uri}" in marked


@dataclass
class Fetched:
    """A version's files, downloaded, and what its MLmodel says."""

    folder: Path
    flavor: dict[str, Any]
    mlmodel: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def import_version(registry: Any, ref: ModelRef) -> None:
    """Download, check and register one MLflow model version in ``registry.mirror``.

    Raises
    ------
    RegistryError
        The server is unreachable, the version or its artifacts are missing, or it has no sklearn flavor.
    UntrustedModelError, IntegrityError
        A pickle from a registry nobody marked as trusted, or one whose bytes changed since first seen.
    InvalidInputError
        No usable reference rows.
    """
    client = registry.client
    version = registry.call(f"reading {ref}", lambda: client.get_model_version(ref.name, str(ref.version)))
    run = (
        registry.call(f"reading the run of {ref}", lambda: client.get_run(version.run_id))
        if version.run_id
        else None
    )
    with tempfile.TemporaryDirectory(prefix=f"parity-mlflow-{ref.name}-") as scratch:
        fetched = _download(registry, ref, Path(scratch) / "model")
        model_file, fmt, trusted, sha256 = _model_file(registry, ref, fetched, dict(version.tags or {}))
        reference, reference_from = _reference(registry, ref, version, fetched, Path(scratch))
        requirements = _requirements(fetched.folder)
        trained = fetched.flavor.get("sklearn_version") or _pinned(requirements).get("scikit-learn")
        predict_with, predictions_from = _predictor(
            model_file, fmt, trusted, requirements, trained, fetched, trusts_pickle(registry.tracking_uri)
        )
        notes = fetched.notes
        if trained and trained != provenance.environment_sklearn():
            notes.append(
                f"trained under scikit-learn {trained} (its MLmodel), validated under "
                f"{provenance.environment_sklearn()}; {predictions_from}"
            )
        origin = _origin(
            registry, version, run, fetched, requirements, trained, reference_from, predictions_from
        )
        try:
            registry.mirror.register(
                None,
                reference,
                ref.name,
                version=ref.version,
                model_file=model_file,
                trusted_types=trusted,
                trust_pickle=fmt != "skops",
                sha256=sha256,
                training_data_uri=_training_uri(origin["datasets"]),
                source_files=[
                    fetched.folder / f for f in ENVIRONMENT_FILES if (fetched.folder / f).is_file()
                ],
                cv_scores=_cv_scores(registry, run),
                predict_with=predict_with,
                origin=origin,
                announce=False,
            )
        except RegistryError:
            if ref not in registry.mirror.refs(ref.name):  # another worker imported it first: keep theirs
                raise


def _download(registry: Any, ref: ModelRef, into: Path) -> Fetched:
    """The version's model folder, and its MLmodel's sklearn flavor."""
    import mlflow.artifacts
    import yaml

    client = registry.client
    uri = registry.call(
        f"finding the artifacts of {ref}",
        lambda: client.get_model_version_download_uri(ref.name, str(ref.version)),
    )
    try:
        folder = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=str(into), tracking_uri=registry.tracking_uri
            )
        )
    except Exception as err:
        raise RegistryError(
            f"{ref} in {registry.location}: its artifacts at {uri} could not be downloaded ({first_line(err)}). "
            "They may have been deleted: log and register the model again (a new version)."
        ) from None
    mlmodel_file = folder / "MLmodel"
    if not mlmodel_file.is_file():
        raise RegistryError(
            f"{ref} in {registry.location}: {uri} holds no MLmodel file (found: "
            f"{', '.join(sorted(p.name for p in folder.iterdir())) or 'nothing'}). Log the model with "
            "mlflow.sklearn.log_model and register that."
        )
    try:
        mlmodel = yaml.safe_load(mlmodel_file.read_text())
        flavors = mlmodel.get("flavors") or {}
        flavors["sklearn"] = dict(flavors["sklearn"]) if "sklearn" in flavors else None
    except (yaml.YAMLError, UnicodeDecodeError, AttributeError, TypeError, ValueError) as err:
        raise RegistryError(
            f"{ref} in {registry.location}: its MLmodel is not a readable MLmodel file ({first_line(err)}). Log the "
            "model again with mlflow.sklearn.log_model."
        ) from None
    if flavors.get("sklearn") is None:
        flavors.pop("sklearn", None)
    if "sklearn" not in flavors:
        raise RegistryError(
            f"{ref} in {registry.location} is not a scikit-learn model: its MLmodel has the flavor(s) "
            f"{', '.join(sorted(flavors)) or 'none'}, not sklearn. Parity validates scikit-learn models; log "
            "it with mlflow.sklearn.log_model."
        )
    return Fetched(folder, dict(flavors["sklearn"]), mlmodel)


def _inside(folder: Path, name: object, ref: ModelRef, what: str) -> Path:
    """``folder / name``, refused unless it is a plain file inside ``folder`` (no ``..``, no absolute path,
    no symbolic link): the MLmodel is the model author's text."""
    path = folder / str(name)
    try:
        inside = path.resolve().is_relative_to(folder.resolve()) and not path.is_symlink()
    except (OSError, ValueError):
        inside = False
    if not inside:
        raise RegistryError(
            f"{ref}: its MLmodel names {what} {name!r}, which is not a file inside the model's folder; refused. "
            "Log the model again with mlflow.sklearn.log_model."
        )
    return path


def _model_file(
    registry: Any, ref: ModelRef, fetched: Fetched, tags: dict[str, str]
) -> tuple[Path, str, list[str], str]:
    """The model file, its registry format, the types trusted in it, and its SHA-256 as first seen."""
    serialization = str(fetched.flavor.get("serialization_format") or "pickle")
    fmt = FORMATS.get(serialization)
    name = fetched.flavor.get("pickled_model")
    path = _inside(fetched.folder, name, ref, "the model file") if name else fetched.folder / "?"
    if fmt is None or not name or not path.is_file():
        raise RegistryError(
            f"{ref} in {registry.location}: its sklearn flavor names model file {name!r} in format "
            f"{serialization!r}, {'a format Parity does not read' if fmt is None else 'which is missing'}. "
            "Log the model again with mlflow.sklearn.log_model(..., serialization_format='skops')."
        )
    payload = path.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    first_seen = tags.get(TAG_SHA256)
    if first_seen and first_seen != digest:
        raise IntegrityError(
            f"{ref} in {registry.location}: {name} has SHA-256 {digest}, but Parity recorded {first_seen} "
            f"(tag {TAG_SHA256}) when it first saw this version. The artifact changed since; it was not "
            "loaded. Register the new model as a new version."
        )
    if fmt != "skops" and not trusts_pickle(registry.tracking_uri):
        raise UntrustedModelError(
            f"{ref} in {registry.location} is stored as {serialization}, which runs arbitrary code when loaded, "
            f"and this registry is not marked as trusted. Log it with serialization_format='skops', or mark "
            f"the registry trusted: {TRUST_PICKLE_ENV}={registry.tracking_uri} (its pickles are then loaded "
            "only while their SHA-256 matches the one recorded at first sight)."
        )
    if not first_seen and TAG_VERDICT in tags:
        raise IntegrityError(
            f"{ref} in {registry.location} carries a Parity verdict but no {TAG_SHA256} tag: the record of the "
            "bytes Parity validated was removed. It was not loaded; register the model again (a new version)."
        )
    trusted = _trusted_types(registry, fetched)
    if not first_seen:
        registry.set_tags(ref, {TAG_SHA256: digest})  # first sight: later reads must match these bytes
    suffix = ".skops" if fmt == "skops" else ".pkl"
    copy = fetched.folder.parent / f"model-file{suffix}"
    copy.write_bytes(payload)  # the bytes hashed are the bytes registered
    return copy, fmt, trusted, digest


def _trusted_types(registry: Any, fetched: Fetched) -> list[str]:
    """The operator's trusted types, and the MLmodel's ``skops_trusted_types`` only from a trusted registry."""
    own = [t.strip() for t in os.environ.get(TRUSTED_TYPES_ENV, "").split(",") if t.strip()]
    listed = [str(t) for t in fetched.flavor.get("skops_trusted_types") or []]
    trusted = sorted(set(own) | (set(listed) if trusts_pickle(registry.tracking_uri) else set()))
    refuse_never_trusted(trusted, f"trusted types for {registry.location}")
    return trusted


def _reference(
    registry: Any, ref: ModelRef, version: Any, fetched: Fetched, scratch: Path
) -> tuple[pd.DataFrame, str]:
    """The reference rows: the run's ``parity/reference.parquet``, else the model's input example."""
    import mlflow.artifacts

    folder = REFERENCE_ARTIFACT.rsplit("/", 1)[0]
    listed = (
        registry.call(
            f"listing the artifacts of run {version.run_id}",
            partial(registry.client.list_artifacts, version.run_id, folder),
        )
        if version.run_id
        else []
    )
    if any(item.path == REFERENCE_ARTIFACT for item in listed):
        try:
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=f"runs:/{version.run_id}/{REFERENCE_ARTIFACT}",
                dst_path=str(scratch / "reference"),
                tracking_uri=registry.tracking_uri,
            )
        except Exception as err:  # listed but unreadable: never silently replaced by fewer rows
            raise RegistryError(
                f"{ref}: the run's {REFERENCE_ARTIFACT} could not be downloaded from {registry.location} "
                f"({first_line(err)}). Check the artifact store, then run again."
            ) from None
        else:
            return read_reference(path), f"run artifact {REFERENCE_ARTIFACT} (run {version.run_id})"
    example = _input_example(fetched)
    if example is None:
        raise InvalidInputError(
            f"{ref} in {registry.location} has no reference rows: its run has no {REFERENCE_ARTIFACT} "
            "artifact and the model no input_example. Log rows the model should be checked on with "
            f"`df.to_parquet('reference.parquet'); mlflow.log_artifact('reference.parquet', 'parity')` in the "
            "training run (or pass input_example= to log_model), then register a new version."
        )
    fetched.notes.append(
        f"reference rows: only the model's input_example ({len(example)} row(s)); "
        + (f"fewer than {FEW_ROWS} rows prove little. " if len(example) < FEW_ROWS else "")
        + f"Log {REFERENCE_ARTIFACT} with the run for a real check."
    )
    return example, "the model's input_example"


def _input_example(fetched: Fetched) -> pd.DataFrame | None:
    info = fetched.mlmodel.get("saved_input_example_info") or {}
    path = fetched.folder / str(info.get("artifact_path") or "input_example.json")
    if not path.is_file() or not path.resolve().is_relative_to(fetched.folder.resolve()):
        return None
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return None
    if info.get("pandas_orient", "split") == "split" and isinstance(data, dict) and "columns" in data:
        return pd.DataFrame(data["data"], columns=data["columns"])
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return pd.DataFrame(data)
    return None


def _requirements(folder: Path) -> list[str]:
    path = folder / "requirements.txt"
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith(("#", "-"))]


def _pinned(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for line in requirements:
        match = _PIN.match(line)
        if match:
            pins[match[1].lower().replace("_", "-")] = match[2]
    return pins


def _predictor(
    model_file: Path,
    fmt: str,
    trusted: list[str],
    requirements: list[str],
    trained: str | None,
    fetched: Fetched,
    may_run_code: bool,
):
    """How the reference predictions are computed: here when the run's environment is Parity's, else in a
    virtual environment built from the run's requirements (:mod:`parity.registry.environments`)."""
    here = provenance.environment_sklearn()
    if not trained or trained == here:
        where = f"here, in Parity's environment: it matches the run's (scikit-learn {here})"
        return (
            None,
            where if trained else f"here (the run recorded no scikit-learn version; Parity has {here})",
        )
    if not may_run_code:  # installing the run's requirements runs their code (setup hooks, .pth files)
        return None, (
            f"computed here under scikit-learn {here}, not in the run's environment (scikit-learn {trained}): "
            f"Parity builds a run's environment only for registries marked trusted ({TRUST_PICKLE_ENV}), "
            "because installing its requirements runs their code"
        )
    import skops.io as sio

    from . import environments

    python = _python(fetched.folder)
    copy = model_file.parent / f"run-env{model_file.suffix}"
    copy.write_bytes(model_file.read_bytes())
    # the types the parent checked (its allowlist included) before this runs: register() loads first
    types = sorted(set(sio.get_untrusted_types(data=copy.read_bytes()))) if fmt == "skops" else trusted

    def in_run_environment(estimator: object, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        return environments.predictions_in_environment(
            copy, fmt, rows, requirements, trusted_types=types, python=python
        )

    return (
        in_run_environment,
        f"reference predictions computed in the run's environment (scikit-learn {trained})",
    )


def _python(folder: Path) -> str | None:
    import yaml

    path = folder / "python_env.yaml"
    if not path.is_file():
        return None
    try:
        value = (yaml.safe_load(path.read_text()) or {}).get("python")
    except (yaml.YAMLError, UnicodeDecodeError, AttributeError):
        return None
    return str(value) if value else None


def _origin(
    registry: Any,
    version: Any,
    run: Any,
    fetched: Fetched,
    requirements: list[str],
    trained: str | None,
    reference_from: str,
    predictions_from: str,
) -> dict[str, Any]:
    tags = dict(run.data.tags) if run is not None else {}
    source = {k.removeprefix("mlflow."): v for k, v in tags.items() if k.startswith("mlflow.source.")}
    datasets = []
    for item in run.inputs.dataset_inputs if run is not None and run.inputs else []:
        context = next((t.value for t in item.tags if t.key == "mlflow.data.context"), None)
        datasets.append(
            {
                "name": item.dataset.name,
                "digest": item.dataset.digest,
                "source_type": item.dataset.source_type,
                "source": item.dataset.source,
                **({"context": context} if context else {}),
            }
        )
    return {
        "registry": registry.location,
        "model_uri": f"models:/{version.name}/{version.version}",
        "version_source": str(version.source),
        "version_created": int(version.creation_timestamp or 0),
        **({"run_id": version.run_id} if version.run_id else {}),
        **({"experiment_id": run.info.experiment_id} if run is not None else {}),
        "source": source,
        "datasets": datasets,
        "serialization_format": str(fetched.flavor.get("serialization_format") or "pickle"),
        **({"trained_scikit_learn": trained} if trained else {}),
        **({"trained_python": p} if (p := _python(fetched.folder)) else {}),
        "requirements": requirements,
        "reference_from": reference_from,
        "predictions_from": predictions_from,
        "notes": list(fetched.notes),
    }


def _training_uri(datasets: list[dict[str, Any]]) -> str | None:
    """The training dataset's URI (``mlflow.log_input(..., context="training")``), else the first one's."""
    chosen = next((d for d in datasets if d.get("context") == "training"), datasets[0] if datasets else None)
    if chosen is None:
        return None
    try:
        source = json.loads(chosen["source"])
    except (TypeError, ValueError):
        return str(chosen["source"])
    if isinstance(source, dict):
        return str(source.get("uri") or source.get("url") or source.get("path") or chosen["source"])
    return str(chosen["source"])


def _cv_scores(registry: Any, run: Any) -> dict[str, float | list[float]]:
    """The run's metrics named like CV scores; a metric logged once per fold gives the folds' list."""
    if run is None:
        return {}
    scores: dict[str, float | list[float]] = {}
    for name in sorted(run.data.metrics):
        if not CV_METRIC.search(name):
            continue
        history = registry.call(
            f"reading metric {name}", partial(registry.client.get_metric_history, run.info.run_id, name)
        )
        values = [m.value for m in sorted(history, key=lambda m: (m.step, m.timestamp))]
        scores[name] = values if len(values) > 1 else float(run.data.metrics[name])
    return scores


def first_line(err: Exception) -> str:
    """``Type: first line of the message`` (at most 300 characters), for an error quoted in another."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300]}" if text else type(err).__name__
