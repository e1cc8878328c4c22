"""Prefect flow: audit the archive (checksums, then a replay in today's runtimes), report and announce.

Ends Completed when every bundle is intact and unchanged; Failed otherwise, the message naming each
corrupt, drifted or unreadable bundle. Emits ``parity.archive.corrupt`` / ``parity.archive.drift`` per bad
bundle on the model version's resource (``parity.model.<name>.<version>``), and ``parity.archive.cv-drift``
per bundle whose CV re-check (``cv``) drifted.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.states import Completed, Failed

from parity.archive import Archive
from parity.archive.audit import archived_versions, audit_bundle
from parity.archive.cv import cv_drift_payload
from parity.core.defaults import DEFAULT_ARCHIVE, DEFAULT_REGISTRY
from parity.core.errors import ArchiveAuditFailed
from parity.core.records import AuditPayload, AuditStatus, BundleAudit
from parity.registry import open_registry
from parity.registry.events import model_resource

CORRUPT = "parity.archive.corrupt"
DRIFT = "parity.archive.drift"
CV_DRIFT = "parity.archive.cv-drift"
AUDIT_KEY = "parity-archive-audit"
AUDIT_COLUMNS = ("model", "status", "replayed", "cv", "findings", "bundle")


@task(retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)
def list_bundles(archive: str) -> list[tuple[str, int]]:
    """Every archived model version."""
    return archived_versions(Archive(archive))


@task(cache_policy=NO_CACHE)
def audit_one(
    archive: str, name: str, version: int, replay: bool, registry: str | None = None, cv: bool = False
) -> BundleAudit:
    """Check one bundle's checksums and its binding to the registration, then replay its reference rows in
    today's runtimes (trusting only what the registration trusted) and (``cv``) re-check its CV score."""
    store = open_registry(registry) if registry else None
    return audit_bundle(Archive(archive), name, version, replay_outputs=replay, registry=store, cv=cv)


#: The event announcing each kind of bad bundle.
EVENTS = {AuditStatus.CORRUPT: CORRUPT, AuditStatus.DRIFT: DRIFT}


def audit_event(audit: BundleAudit) -> tuple[str, AuditPayload] | None:
    """The event announcing a bad bundle (corruption wins over drift), or None for a sound one."""
    event = EVENTS.get(audit.status)
    if event is None or (event == DRIFT and not audit.drift):  # a CV drift alone is announced as cv-drift
        return None
    payload = AuditPayload(
        name=audit.name, version=audit.version, bundle=audit.path, findings=audit.corrupt or audit.drift
    )
    return event, payload


def audits_of(state) -> list[BundleAudit]:
    """The per-bundle audits of a finished ``audit_archive`` state, whether it Completed or Failed."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, ArchiveAuditFailed):
        return result.audits
    if isinstance(result, BaseException):
        raise result
    return result


def audit_rows(audits: list[BundleAudit]) -> list[dict]:
    """One table row per bundle."""
    return [
        {
            "model": f"{a.name}:{a.version}",
            "status": str(a.status),
            "replayed": a.replayed,
            "cv": str(a.cv.status) if a.cv is not None else "",
            "findings": "; ".join(a.findings),
            "bundle": a.path,
        }
        for a in audits
    ]


@task(cache_policy=NO_CACHE)
def publish_audit(audits: list[BundleAudit]) -> None:
    """Show the audit in the Prefect UI and emit one event per corrupt or drifted bundle."""
    rows = audit_rows(audits)
    bad = [row for row in rows if row["status"] != "ok"]
    create_table_artifact(
        key=AUDIT_KEY, table=rows, description=f"{len(bad)} of {len(rows)} bundles need action"
    )
    lines = [f"# Archive audit: {len(bad)} of {len(rows)} bundles need action", ""]
    lines += [f"- **{row['model']}** {row['status']}: {row['findings']} (`{row['bundle']}`)" for row in bad]
    create_markdown_artifact(key=f"{AUDIT_KEY}-report", markdown="\n".join(lines))
    for audit in audits:
        announced = audit_event(audit)
        if announced:
            event, payload = announced
            emit_event(
                event=event, resource=model_resource(audit.name, audit.version), payload=payload.to_json()
            )
        cv_drift = cv_drift_payload(audit)
        if cv_drift:
            resource = model_resource(audit.name, audit.version)
            emit_event(event=CV_DRIFT, resource=resource, payload=cv_drift.to_json())


@flow(name="audit-archive")
def audit_archive(
    archive: str = DEFAULT_ARCHIVE,
    replay: bool = True,
    registry: str | None = DEFAULT_REGISTRY,
    cv: bool = False,
):
    """Audit every bundle of the archive: checksums, then (``replay``) today's runtimes against the report.

    What a bundle's model may trust when it is replayed comes from ``registry``'s record of its registration
    (never from the bundle); a bundle whose version the registry does not hold is replayed with the
    allowlist alone. ``cv`` also re-checks each bundle's CV score (:mod:`parity.archive.cv`): the skops model
    reloaded, its reference predictions checked, a clone refitted on the recorded snapshot and splitter.

    Returns the list of per-bundle audits (:class:`~parity.core.records.BundleAudit`); ends Failed, naming the bad bundles, when any bundle is
    corrupt, drifted or could not be replayed (the state's data is then an :class:`ArchiveAuditFailed`
    holding the same list).
    """
    bundles = list_bundles(archive)
    audits = [audit_one(archive, name, version, replay, registry, cv) for name, version in bundles]
    publish_audit(audits)
    shown = (AuditStatus.OK, AuditStatus.DRIFT, AuditStatus.CORRUPT, AuditStatus.ERROR)
    counts = {s: sum(a.status is s for a in audits) for s in shown}
    message = f"{len(audits)} bundles: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    get_run_logger().info("audit: %s", message)
    bad = [f"{a.name}:{a.version} {a.status}" for a in audits if a.status is not AuditStatus.OK]
    if bad:
        text = f"{message} ({', '.join(bad)})"
        return Failed(message=text, data=ArchiveAuditFailed(text, audits))
    return Completed(message=message, data=audits)
