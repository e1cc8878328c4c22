"""The weekly audit with ``cv``: the ``parity.archive.cv-drift`` event, and ``parity audit --cv``'s exit codes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from parity.core.records import AuditStatus, CvStatus
from tests.archive.test_cv_recheck import HONEST, PLAIN, PLANTED, make_shelf
from tests.prefect_events import read_events
from tests.waiting import SERVER_SIDE_DEADLINE_S, wait_for


@pytest.fixture(scope="module")
def shelf(iris, tmp_path_factory):
    X, y = iris
    return make_shelf(tmp_path_factory.mktemp("cv-flow"), X, y)


async def _events(name: str, since: datetime):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await read_events(client, name, since)


@pytest.mark.slow
@pytest.mark.prefect_server
def test_a_cv_drift_fails_the_audit_and_emits_the_cv_drift_event(prefect_server, shelf):
    from parity.flows.audit import audit_archive, audit_event, audits_of

    registry, _, drifted = shelf
    since = datetime.now(UTC) - timedelta(seconds=5)
    state = audit_archive(
        str(drifted.root), replay=False, registry=str(registry.root), cv=True, return_state=True
    )
    assert state.is_failed() and f"{PLANTED}:1 drift" in state.message
    (audit,) = audits_of(state)
    assert audit.cv.status is CvStatus.DRIFT
    assert audit_event(audit) is None  # not announced as a runtime drift: nothing in the report moved
    events = wait_for(
        lambda: asyncio.run(_events("parity.archive.cv-drift", since)),
        SERVER_SIDE_DEADLINE_S,
        "the parity.archive.cv-drift event",
    )
    assert [e.resource.id for e in events] == [f"parity.model.{PLANTED}.1"]
    assert events[0].payload["findings"] == audit.cv.findings
    assert events[0].payload["bundle"] == str(drifted.bundle_path(PLANTED, 1))


@pytest.mark.slow
@pytest.mark.prefect_server
def test_the_audit_without_cv_does_not_refit(prefect_server, shelf):
    from parity.flows.audit import audit_archive, audits_of

    registry, _, drifted = shelf
    state = audit_archive(str(drifted.root), replay=False, registry=str(registry.root), return_state=True)
    assert state.is_completed()
    assert [a.cv for a in audits_of(state)] == [None]


@pytest.mark.slow
@pytest.mark.prefect_server
def test_parity_audit_cv_exits_0_when_sound_and_1_on_drift(prefect_server, shelf, capsys):
    from parity.cli import main

    registry, sound, drifted = shelf
    common = ["audit", "--registry", str(registry.root), "--no-replay", "--cv"]
    assert main([*common, "--archive", str(sound.root)]) == 0
    out = capsys.readouterr().out
    assert f"{HONEST}:1" in out and f"{PLAIN}:1" in out and "no CV record" in out
    assert main([*common, "--archive", str(drifted.root)]) == 1
    out = capsys.readouterr().out
    assert str(AuditStatus.DRIFT) in out and "cv accuracy: mean" in out
