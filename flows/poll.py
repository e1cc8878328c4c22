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
from parity.core.errors import RecordError
from parity.core.records import Report
from parity.registry import ModelRef, Result
from parity.registry.mlflow import TAG_VERDICT
from parity.registry.mlflow_announce import announce, needs_announcing, require_mlflow

from .summary import failing_cells


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


@task(retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def written_back(registry: str, archive: str) -> list[str]:
    """Write the verdict on every archived version whose tags lack it (a write-back that failed after its
    retries): the archive is the record, the tags are where users look."""
    store = require_mlflow(registry)
    bundles = archive_stage.Archive(archive)
    done = []
    for ref in store.refs():
        if bundles.is_archived(ref.name, ref.version) and TAG_VERDICT not in store.version_tags(ref):
            bundle = bundles.content_url(ref.name, ref.version)
            try:
                report = bundles.record_at(bundles.key(ref.name, ref.version), "report.json", Report)
            except (OSError, RecordError) as err:  # the audit's business; the poll goes on
                get_run_logger().warning("%s: archived, but its report is unreadable (%s)", ref, err)
                continue
            store.record_result(
                ref,
                Result(
                    str(report.outcome),
                    bundles.object_url(ref.name, ref.version),
                    f"{bundle}/report.json",
                    tuple(failing_cells(report)),
                ),
            )
            done.append(str(ref))
    return done


@flow(name="poll-mlflow")
def poll_mlflow(registry: str = "mlflow:", archive: str = DEFAULT_ARCHIVE) -> list[dict[str, str]]:
    """Announce every version of an MLflow registry that is neither validated, announced nor archived.

    Returns one ``{"model": "name:version", "event": "<event id>"}`` per version announced (an empty list
    when there was nothing to do). A registry that is not MLflow's fails the run, saying why.
    """
    require_mlflow(registry)  # refuse a folder before any task runs
    repaired = written_back(registry, archive)
    if repaired:
        get_run_logger().info("wrote the archived verdicts back on %s", ", ".join(repaired))
    announced = [
        {"model": str(ref), "event": announce_version(registry, ref)}
        for ref in unannounced(registry, archive)
    ]
    get_run_logger().info("announced %d version(s): %s", len(announced), announced or "none")
    return announced
