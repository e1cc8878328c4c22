"""The nightly sweep across a work pool: one ``convert-and-validate`` flow run per pending version.

The sweep submits each child with ``run_deployment(..., timeout=0, idempotency_key=...)``, waits for all of
them with one deadline, and gathers each child's report from the archive it filed it in (the same path
every worker sees; Prefect's result storage would need a block every machine can read). A child that
crashed (its worker was killed, its heartbeats stopped and Prefect's crash automation marked it Crashed) is
submitted once more under a new idempotency key; the archive files a version exactly once, so a retry of a
half-done child is harmless. Idempotency keys carry the sweep's flow run id: the next sweep retries a version
that crashed in this one instead of finding this sweep's crashed run again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from parity.archive import Archive, filed_since
from parity.core.records import Report

#: The one-model deployment the sweep fans out to (prefect.yaml; it runs on the parity-x86-64 pool).
CHILD_DEPLOYMENT = "convert-and-validate/on-registration"
#: How long a sweep waits for all its children, queueing behind the pool's concurrency limit included;
#: children still unfinished then are cancelled and reported as errors (the next sweep takes them).
SWEEP_DEADLINE_S = 6 * 3600
#: Seconds between two reads of the children's states.
POLL_S = 5.0
#: Times a crashed child is submitted again within one sweep.
CRASH_RETRIES = 1
#: Seconds a child may stay Pending (claimed by a worker, not started): a worker killed between claiming a
#: run and starting it leaves it Pending with no heartbeat for Prefect's crash automation to miss, so the
#: sweep marks it Crashed itself after this long.
PENDING_S = 600.0
#: Seconds a Running child may go without a heartbeat reaching the server before the sweep counts it
#: crashed. Prefect's crash automation (90 s) starts watching a run at its first heartbeat; a worker killed
#: before that first heartbeat reached the server leaves a Running run nothing else would ever end.
SILENT_S = 300.0
#: Slack on the child's start time when telling its report from older attempts (seconds in report.json).
_CLOCK_SLACK = timedelta(seconds=2)


@dataclass(frozen=True)
class Child:
    """One submitted flow run of the sweep."""

    name: str
    version: int
    attempt: int
    flow_run_id: uuid.UUID
    submitted_at: datetime


def idempotency_key(sweep_id: str, name: str, version: int, attempt: int) -> str:
    """The key of one child: the same sweep never submits a version twice, the next sweep can."""
    return f"parity-sweep/{sweep_id}/{name}/{version}/{attempt}"


def submit(
    deployment: str, sweep_id: str, name: str, version: int, parameters: dict[str, Any], attempt: int = 1
) -> Child:
    """Create one flow run of ``deployment`` for ``name:version`` and return without waiting for it."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    flow_run = cast(
        FlowRun,
        run_deployment(
            name=deployment,
            parameters={**parameters, "name": name, "version": version},
            timeout=0,
            idempotency_key=idempotency_key(sweep_id, name, version, attempt),
        ),
    )
    return Child(name, version, attempt, flow_run.id, datetime.now(UTC))


def read_states(ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """The current flow runs of ``ids``, by id."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=len(ids)
        )
    return {run.id: run for run in runs}


def cancel(ids: list[uuid.UUID]) -> None:
    """Ask Prefect to cancel these flow runs (the sweep gave up waiting for them)."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    with get_client(sync_client=True) as client:
        for flow_run_id in ids:
            client.set_flow_run_state(
                flow_run_id, Cancelling(message="the sweep's deadline passed"), force=True
            )


def _stuck_pending(state: Any, pending_s: float) -> bool:
    return bool(state.is_pending() and datetime.now(UTC) - state.timestamp > timedelta(seconds=pending_s))


def _silent(flow_run_id: uuid.UUID, state: Any, silent_s: float) -> bool:
    if not state.is_running() or datetime.now(UTC) - state.timestamp < timedelta(seconds=silent_s):
        return False
    beat = last_heartbeat(flow_run_id)
    return beat is None or datetime.now(UTC) - beat > timedelta(seconds=silent_s)


def last_heartbeat(flow_run_id: uuid.UUID) -> datetime | None:
    """When the server last heard a heartbeat of this flow run (within the last day); None if never."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    event_filter = EventFilter(
        event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
        resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
    )
    with get_client(sync_client=True) as client:
        page = client.read_events(filter=event_filter, limit=1)  # newest first
    return page.events[0].occurred if page.events else None


def crash(flow_run_id: uuid.UUID, message: str) -> None:
    """Mark a flow run Crashed (the sweep then submits its version again)."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)


def child_report(archive: str, child: Child, run: Any, since: datetime) -> Report:
    """What a finished child produced: its report as filed in the archive since the sweep began (by this
    child, or by an earlier attempt that crashed after filing: the retry then finds that bundle), or an
    error report saying why there is none."""
    report = filed_since(Archive(archive), child.name, child.version, since - _CLOCK_SLACK)
    if report is not None:
        return report
    state = run.state
    return Report.crashed(
        child.name,
        child.version,
        f"flow run {run.name} ({run.id}) ended {state.type.value} without filing a report: {state.message}",
    )


def fan_out(
    todo: list[tuple[str, int]],
    parameters: dict[str, Any],
    archive: str,
    *,
    deployment: str = CHILD_DEPLOYMENT,
    sweep_id: str | None = None,
    deadline_s: float | None = None,
    poll_s: float | None = None,
    pending_s: float | None = None,
    silent_s: float | None = None,
    on_done: Callable[[int], None] | None = None,
) -> list[Report]:
    """Validate ``todo`` as one flow run of ``deployment`` per version and gather their reports.

    Parameters
    ----------
    todo : list of (name, version)
    parameters : dict
        The child's other parameters (``registry``, ``archive``, ``targets``).
    archive : str
        Where the children file their reports.
    deployment : str
        ``flow/deployment`` of the one-model flow.
    sweep_id : str, optional
        Makes the idempotency keys of this sweep; default a fresh id.
    deadline_s, poll_s, pending_s, silent_s : float, optional
        How long to wait for every child, how often to look, how long a child may stay Pending, and how
        long Running with no heartbeat, before it counts as crashed; default :data:`SWEEP_DEADLINE_S`,
        :data:`POLL_S`, :data:`PENDING_S`, :data:`SILENT_S` (read at call time, so a load test can shorten
        them).
    on_done : callable, optional
        Called with the number of versions finished so far.

    Returns
    -------
    list of Report
        One per version of ``todo``, in that order; crashed, cancelled or unfinished children as
        ``error`` reports that say what happened.
    """
    sweep_id, began = sweep_id or uuid.uuid4().hex, datetime.now(UTC)
    deadline_s = SWEEP_DEADLINE_S if deadline_s is None else deadline_s
    poll_s = POLL_S if poll_s is None else poll_s
    pending_s = PENDING_S if pending_s is None else pending_s
    silent_s = SILENT_S if silent_s is None else silent_s
    submitted = [submit(deployment, sweep_id, name, version, parameters) for name, version in todo]
    pending = {child.flow_run_id: child for child in submitted}
    reports: dict[tuple[str, int], Report] = {}
    deadline = time.monotonic() + deadline_s
    while pending and time.monotonic() < deadline:
        for run_id, run in read_states(list(pending)).items():
            if run.state is not None and _stuck_pending(run.state, pending_s):
                crash(run_id, f"Pending for over {pending_s:.0f} s: the worker that took it stopped")
                continue
            if run.state is not None and _silent(run_id, run.state, silent_s):
                crash(run_id, f"Running with no heartbeat for over {silent_s:.0f} s: its worker stopped")
                continue
            if run.state is None or not run.state.is_final():
                continue
            child = pending.pop(run_id)
            if run.state.is_crashed() and child.attempt <= CRASH_RETRIES:
                again = submit(deployment, sweep_id, child.name, child.version, parameters, child.attempt + 1)
                pending[again.flow_run_id] = again
                continue
            reports[(child.name, child.version)] = child_report(archive, child, run, began)
            if on_done:
                on_done(len(reports))
        if pending:
            time.sleep(poll_s)
    reports.update(give_up(list(pending.values()), deadline_s))
    return [reports[item] for item in todo]


def give_up(children: list[Child], deadline_s: float) -> dict[tuple[str, int], Report]:
    """Cancel the children still unfinished at the sweep's deadline; an error report for each."""
    if children:
        cancel([child.flow_run_id for child in children])
    return {
        (child.name, child.version): Report.crashed(
            child.name,
            child.version,
            f"flow run {child.flow_run_id} did not finish within {deadline_s:.0f} s and was cancelled; "
            "is a worker running on the pool? The next sweep retries this version.",
        )
        for child in children
    }
