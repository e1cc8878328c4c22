"""The MLflow Model Registry as a Parity registry: read versions safely, write verdicts back.

``--registry mlflow+http://host:5000`` (or ``mlflow+https://…``; ``mlflow:`` alone takes
``$MLFLOW_TRACKING_URI``). Each version Parity validates is imported once into a local mirror, a file
registry under ``$PARITY_MLFLOW_CACHE`` (default ``~/.cache/parity/mlflow/<host>-<hash>``), so the rest of
the pipeline reads it as any registered version: the model file as MLflow stored it, the reference rows,
the reference predictions, and a registration record whose provenance comes from the MLflow run.

What Parity reads of an MLflow model version (MLflow 3.17.2's model format):

- ``MLmodel``: the ``sklearn`` flavor (``pickled_model``, ``serialization_format``: ``skops``, ``pickle``
  or ``cloudpickle``; ``sklearn_version``; ``skops_trusted_types``). A model without that flavor is refused.
- the environment files ``requirements.txt``, ``python_env.yaml``, ``conda.yaml``: the training
  environment (its scikit-learn version above all), kept with the registration.
- the run's ``parity/reference.parquet`` artifact: the reference rows (:data:`REFERENCE_ARTIFACT`); without
  it, the model's ``input_example`` (with a warning: a handful of rows proves little).
- the run: datasets logged with ``mlflow.log_input`` (name, digest, source, context), ``mlflow.source.*``
  tags (the training script, its git commit), and metrics named like CV scores (:data:`CV_METRIC`).

A skops model is loaded with Parity's allowlist plus the ``skops_trusted_types`` the training code logged.
A pickle/cloudpickle model is loaded only when the operator marked this registry as trusted
(``PARITY_MLFLOW_TRUST_PICKLE``, see :func:`trusts_pickle`) and its SHA-256 matches the one Parity recorded
the first time it saw the version (the ``parity.model_sha256`` tag).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from parity.core.errors import InvalidInputError, RegistryError, UntrustedModelError
from parity.core.records import RegistrationRecord

# what training code and operators read about the format lives with the import; named here too, as the
# registry's public vocabulary (parity.registry.mlflow.TAG_SHA256, ...)
from .mlflow_import import CV_METRIC as CV_METRIC
from .mlflow_import import REFERENCE_ARTIFACT as REFERENCE_ARTIFACT
from .mlflow_import import TAG_SHA256 as TAG_SHA256
from .mlflow_import import TAG_VERDICT as TAG_VERDICT
from .mlflow_import import TRUST_PICKLE_ENV as TRUST_PICKLE_ENV
from .mlflow_import import TRUSTED_TYPES_ENV as TRUSTED_TYPES_ENV
from .mlflow_import import first_line, import_version
from .mlflow_import import trusts_pickle as trusts_pickle
from .store import FileRegistry, ModelRef, RegisteredModel, Result, is_model_name, resolve_in

logger = logging.getLogger("parity.registry.mlflow")

TAG_BUNDLE = "parity.bundle"
TAG_REPORT = "parity.report"
TAG_FAILING = "parity.failing"
TAG_ANNOUNCED = "parity.announced"
#: The alias that points at the newest version that passed (``models:/NAME@parity-validated``).
VALIDATED_ALIAS = "parity-validated"
#: MLflow's limit on a tag value (5000 characters in MLflow 3.17).
TAG_VALUE_LIMIT = 5000
#: Attempts of one call to the MLflow server, and the pauses between them (a restart, a timeout).
ATTEMPTS = 4
PAUSES_S = (1.0, 3.0, 9.0)
CACHE_ENV = "PARITY_MLFLOW_CACHE"
#: The MLflow client's own HTTP retries, unless the environment sets them: by default it retries 7 times with
#: exponential backoff (minutes against a server that is down); Parity retries whole calls itself
#: (:func:`with_retries`), so the client's retries are kept short and a dead server is named quickly.
CLIENT_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}

T = TypeVar("T")


def tracking_uri_of(text: str) -> str:
    """The MLflow tracking URI a Parity registry URI names.

    Raises
    ------
    InvalidInputError
        ``mlflow:`` without ``MLFLOW_TRACKING_URI``, or no host.
    """
    head, _, rest = text.partition(":")
    if head.lower() == "mlflow":
        uri = os.environ.get("MLFLOW_TRACKING_URI", "")
        if rest.strip("/") or not uri.startswith(("http://", "https://")):
            raise InvalidInputError(
                f"registry {text!r}: `mlflow:` takes the server from MLFLOW_TRACKING_URI, which is "
                f"{uri or 'not set'}; set it to the server's http(s) URL, or pass mlflow+http://HOST:PORT."
            )
        return uri.rstrip("/")
    uri = text.split("+", 1)[1].rstrip("/")
    if not re.match(r"^https?://[^/\s]+", uri):
        raise InvalidInputError(f"registry {text!r}: expected mlflow+http://HOST:PORT (or mlflow+https://…).")
    return uri


def with_retries(call: Callable[[], T], what: str, uri: str, attempts: int = ATTEMPTS) -> T:
    """Call the MLflow server, retrying what a restart or an overloaded server causes.

    Raises
    ------
    RegistryError
        The server did not answer after ``attempts`` tries (naming the URI and the fix), or it refused the
        request (a missing model, a bad argument: not retried).
    """
    from mlflow.exceptions import MlflowException, RestException

    for attempt in range(attempts):
        try:
            return call()
        except RestException as err:  # the server answered: a missing model, a bad request
            if err.get_http_status_code() < 500 and err.get_http_status_code() != 429:
                raise RegistryError(f"{what}: the MLflow server at {uri} refused it: {err.message}") from None
            last: Exception = err
        except (MlflowException, OSError) as err:
            last = err
        if attempt < attempts - 1:
            time.sleep(PAUSES_S[min(attempt, len(PAUSES_S) - 1)])
    raise RegistryError(
        f"{what}: the MLflow server at {uri} did not answer after {attempts} tries ({first_line(last)}). "
        "Check that it is running and reachable from here (`curl URI/health`), or fix --registry."
    ) from None


class MlflowRegistry:
    """Models registered in an MLflow tracking server's Model Registry.

    Parameters
    ----------
    uri : str
        ``mlflow+http://HOST:PORT``, ``mlflow+https://…``, or ``mlflow:`` (``$MLFLOW_TRACKING_URI``).
    cache : path-like, optional
        The local mirror; default ``$PARITY_MLFLOW_CACHE``, else ``~/.cache/parity/mlflow/<host>-<hash>``.
    """

    writes_back = True

    def __init__(self, uri: str, cache: str | os.PathLike[str] | None = None) -> None:
        self.tracking_uri = tracking_uri_of(uri)
        self.location = f"mlflow+{self.tracking_uri}"
        self.mirror = FileRegistry(cache or _default_cache(self.tracking_uri))
        self._client: Any = None

    def __repr__(self) -> str:
        return f"MlflowRegistry({self.location!r})"

    @property
    def client(self) -> Any:
        """An ``mlflow.MlflowClient`` for this server (tracking and registry)."""
        if self._client is None:
            from mlflow import MlflowClient

            for key, value in CLIENT_HTTP.items():
                os.environ.setdefault(key, value)

            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    def call(self, what: str, call: Callable[[], T]) -> T:
        """One call to the server, with :func:`with_retries`."""
        return with_retries(call, what, self.tracking_uri)

    # -- listing ---------------------------------------------------------------------------------------
    def refs(self, name: str | None = None) -> list[ModelRef]:
        """Every READY version, sorted by name then version (optionally of one model).

        Versions of models whose names cannot be a Parity model name are left out with a warning.
        """
        query = f"name = '{_quoted(name)}'" if name else ""

        def search() -> list[Any]:
            return list(_all_pages(lambda token: self.client.search_model_versions(query, page_token=token)))

        found = []
        for version in self.call(f"listing the versions in {self.location}", search):
            if version.status != "READY":
                continue
            if not is_model_name(version.name):
                logger.warning(
                    "%s:%s in %s is left out: Parity model names use 1-100 letters, digits, '.', '_' or '-' "
                    "(rename the registered model, or register it again under such a name).",
                    version.name,
                    version.version,
                    self.location,
                )
                continue
            found.append(ModelRef(version.name, int(version.version)))
        return sorted(found)

    def resolve(self, name: str, version: int | None = None) -> ModelRef:
        """The given version, or the latest one when ``version`` is None.

        Raises
        ------
        RegistryError
            No such model or version in this registry.
        """
        return resolve_in(self, name, version)

    def version_tags(self, ref: ModelRef) -> dict[str, str]:
        """The tags of a model version."""
        version = self.call(
            f"reading {ref}", lambda: self.client.get_model_version(ref.name, str(ref.version))
        )
        return dict(version.tags or {})

    def set_tags(self, ref: ModelRef, tags: Mapping[str, str]) -> None:
        """Set tags on a model version (each call retried, see :func:`with_retries`)."""
        for key, value in tags.items():
            text = str(value)
            if len(text) > TAG_VALUE_LIMIT:
                text = text[: TAG_VALUE_LIMIT - 20] + " … (cut; see report)"
            self.call(
                f"tagging {ref} with {key}",
                partial(self.client.set_model_version_tag, ref.name, str(ref.version), key, text),
            )

    # -- reading ---------------------------------------------------------------------------------------
    def path(self, ref: ModelRef) -> Path:
        """The mirror's folder of a version (imported first if it is not there yet)."""
        self.ensure(ref)
        return self.mirror.path(ref)

    def record(self, ref: ModelRef) -> RegistrationRecord:
        """The registration record Parity made of the version when it first imported it."""
        self.ensure(ref)
        return self.mirror.record(ref)

    def listing(self, ref: ModelRef) -> dict[str, str]:
        """The mirror's record when the version was imported; else what MLflow says, without importing."""
        if ref in self.mirror.refs(ref.name):
            return self.mirror.listing(ref)
        version = self.call(
            f"reading {ref}", lambda: self.client.get_model_version(ref.name, str(ref.version))
        )
        made = datetime.fromtimestamp(version.creation_timestamp / 1000, UTC)
        return {"estimator": "(not imported yet)", "registered_at": made.isoformat(timespec="seconds")}

    def open(self, ref: ModelRef) -> RegisteredModel:
        """Load a version safely, with its reference rows and predictions (importing it first if needed).

        Raises
        ------
        UntrustedModelError
            A pickle, and the operator no longer marks this registry as trusted (trust is checked at every
            open, never taken from the mirror's record alone).
        """
        self.ensure(ref)
        record = self.mirror.record(ref)
        if record.model.format != "skops" and not trusts_pickle(self.tracking_uri):
            raise UntrustedModelError(
                f"{ref} in {self.location} is a {record.model.format} file and this registry is not marked as "
                f"trusted now ({TRUST_PICKLE_ENV}); it was not loaded. Mark it trusted, or log the model with "
                "serialization_format='skops'."
            )
        model = self.mirror.open(ref)
        origin = model.record.provenance.origin
        if origin is not None:
            model.notes[:0] = list(origin.notes)
        return model

    def ensure(self, ref: ModelRef) -> None:
        """Import the version into the mirror unless it is there; a mirrored copy of a version that MLflow
        has since recreated under the same number is refused, naming the folder to remove."""
        if ref not in self.mirror.refs(ref.name):
            import_version(self, ref)
            return
        origin = self.mirror.record(ref).provenance.origin
        version = self.call(
            f"reading {ref}", lambda: self.client.get_model_version(ref.name, str(ref.version))
        )
        if origin is None or (origin.version_source, origin.version_created) != (
            str(version.source),
            int(version.creation_timestamp or 0),
        ):
            raise RegistryError(
                f"{ref} in {self.location} is not the version Parity imported into {self.mirror.path(ref)} "
                f"(its source or creation time changed: the model was deleted and registered again?). Move that "
                "folder away to import the new version, after checking the archive's bundle of the old one."
            )

    def sweep_staging(self) -> list[Path]:
        return self.mirror.sweep_staging()

    # -- writing back ----------------------------------------------------------------------------------
    def record_result(self, ref: ModelRef, result: Result) -> list[str]:
        """Tag the version with the verdict, then point :data:`VALIDATED_ALIAS` at the newest version that
        passed (see :meth:`_align_alias`).

        Returns
        -------
        list of str
            What was written (``tag parity.verdict=passed``, ``alias parity-validated``).

        Raises
        ------
        RegistryError
            The server could not be written to after the retries; the verdict stays in the archive.
        """
        tags = {TAG_VERDICT: result.outcome, TAG_BUNDLE: result.filed, TAG_REPORT: result.report}
        tags[TAG_FAILING] = "; ".join(result.failing) if result.failing else "none"
        self.set_tags(ref, tags)
        written = [f"tag {k}={v if k == TAG_VERDICT else '…'}" for k, v in tags.items()]
        written += self._align_alias(ref.name)
        return written

    def _align_alias(self, name: str) -> list[str]:
        """Point :data:`VALIDATED_ALIAS` at the newest version whose verdict is ``passed`` (none: remove it).

        Computed from every version's tags after this one's were written, so two validations finishing at
        once both arrive at the same version, and a re-validation that failed takes the alias away.
        """
        query = f"name = '{_quoted(name)}'"
        versions = self.call(
            f"listing the versions of {name}",
            lambda: list(
                _all_pages(lambda token: self.client.search_model_versions(query, page_token=token))
            ),
        )
        passed = [int(v.version) for v in versions if (v.tags or {}).get(TAG_VERDICT) == "passed"]
        current = self._alias_target(name)
        newest = max(passed, default=0)
        if newest == current:
            return []
        if newest == 0:
            self.call(
                f"removing alias {VALIDATED_ALIAS} of {name}",
                lambda: self.client.delete_registered_model_alias(name, VALIDATED_ALIAS),
            )
            return [f"alias {VALIDATED_ALIAS} removed"]
        self.call(
            f"setting alias {VALIDATED_ALIAS} on {name}:{newest}",
            lambda: self.client.set_registered_model_alias(name, VALIDATED_ALIAS, str(newest)),
        )
        return [f"alias {VALIDATED_ALIAS} -> {newest}"]

    def _alias_target(self, name: str) -> int:
        model = self.call(f"reading {name}", lambda: self.client.get_registered_model(name))
        target = (getattr(model, "aliases", None) or {}).get(VALIDATED_ALIAS)
        return int(target) if target else 0


def _quoted(name: str) -> str:
    return name.replace("'", "\\'")


def _all_pages(page: Callable[[str | None], Any]) -> Any:
    token = None
    while True:
        result = page(token)
        yield from result
        token = getattr(result, "token", None)
        if not token:
            return


def _default_cache(tracking_uri: str) -> Path:
    host = re.sub(r"[^A-Za-z0-9.-]+", "-", tracking_uri.split("://", 1)[1]).strip("-")[:60]
    digest = hashlib.sha256(tracking_uri.encode()).hexdigest()[:12]
    base = os.environ.get(CACHE_ENV)
    if base:
        return Path(base) / f"{host}-{digest}"
    return Path.home() / ".cache" / "parity" / "mlflow" / f"{host}-{digest}"
