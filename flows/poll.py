"""Poll an MLflow Model Registry for versions nobody announced (a webhook that was lost or never set up).

Each version without a ``parity.verdict`` tag, without a recent ``parity.announced`` tag (one older than
:data:`~parity.registry.mlflow_announce.LOST_AFTER` counts as lost) and without an archive bundle is
announced as the webhook receiver announces it: the same event with the same id, so a version the webhook
already announced starts no second validation.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

import parity.archive as archive_stage
from parity.core.defaults import DEFAULT_ARCHIVE
from parity.registry import ModelRef
from parity.registry.mlflow_announce import announce, needs_announcing, require_mlflow


@task(retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def unannounced(registry: str, archive: str) -> list[ModelRef]:
    """The versions of the MLflow registry that wait for an announcement."""
    store = require_mlflow(registry)
    bundles = archive_stage.Archive(archive)
    return [
        ref
        for ref in store.refs()
        if not bundles.is_archived(ref.name, ref.version) and needs_announcing(store.version_tags(ref))
    ]


@task(retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def announce_version(registry: str, ref: ModelRef) -> str:
    """Announce one version (``parity.model.registered``, deterministic id) and tag it announced."""
    return announce(require_mlflow(registry), ref)


@flow(name="poll-mlflow")
def poll_mlflow(registry: str = "mlflow:", archive: str = DEFAULT_ARCHIVE) -> list[dict[str, str]]:
    """Announce every version of an MLflow registry that is neither validated, announced nor archived.

    Returns one ``{"model": "name:version", "event": "<event id>"}`` per version announced (an empty list
    when there was nothing to do). A registry that is not MLflow's fails the run, saying why.
    """
    require_mlflow(registry)  # refuse a folder before any task runs
    announced = [
        {"model": str(ref), "event": announce_version(registry, ref)}
        for ref in unannounced(registry, archive)
    ]
    get_run_logger().info("announced %d version(s): %s", len(announced), announced or "none")
    return announced
