"""Deployments the way teams run them: a real server, `parity deploy`, a process worker, events from
other processes, runs created by the schedules, and what the UI reads back through the client."""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import skops.io as sio
from prefect_processes import PrefectServer, announce_until_triggered, client_call, deployment_runs, wait_for
from sklearn.linear_model import LogisticRegression

from parity.archive import CONTENT, MANIFEST, REJECTED, STAGING
from parity.flows.summary import artifact_key
from parity.registry.events import emit_registered
from tests.prefect_events import read_events
from tests.waiting import SERVER_SIDE_DEADLINE_S

pytestmark = [pytest.mark.prefect_server, pytest.mark.slow]

MODEL = "iris-logreg"
TRIGGERED = "convert-and-validate/on-registration"
SWEEP = "validate-registry/nightly-sweep"
AUDIT = "audit-archive/weekly-audit"
#: Each deadline bounds a hang; each wait ends as soon as its condition holds. A run on the process worker is
#: 30-60 s on a quiet 2-core machine (a fresh interpreter, conversions, four runtimes, the archive), several
#: times that at load 10 (issue 9).
RUN_TIMEOUT = 600
#: The scheduler creates a deployment's upcoming runs in its loop (every few seconds quiet).
SCHEDULER_DEADLINE_S = 300


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("deployed")
    return {"registry": root / "registry", "archive": root / "archive", "inputs": root / "inputs"}


@pytest.fixture(scope="module")
def deployed(prefect_api: PrefectServer, places) -> PrefectServer:
    """`parity deploy` (work pools + prefect.yaml), then one process worker on parity-x86-64."""
    from parity.cli import main

    assert main(["deploy", "--registry", str(places["registry"]), "--archive", str(places["archive"])]) == 0
    prefect_api.spawn(
        "worker",
        *(sys.executable, "-m", "prefect", "worker", "start", "--pool", "parity-x86-64", "--type", "process"),
    )
    return prefect_api


async def _deployment(client, name: str):
    return await client.read_deployment_by_name(name)


def _finished(runs: list, count: int) -> list | None:
    """``runs`` once at least ``count`` exist and every one has finished (a run still going is not done)."""
    done = [r for r in runs if r.state is not None and r.state.is_final()]
    return done if len(done) >= count and len(done) == len(runs) else None


async def _artifacts(client, key: str):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    return await client.read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), sort=ArtifactSort.CREATED_DESC
    )


def test_deploy_creates_pools_and_deployments(deployed):
    from parity.deployments.deploy import WORK_POOLS

    async def pools(client):
        return [await client.read_work_pool(name) for name in WORK_POOLS]

    assert {p.type for p in client_call(pools)} == {"process"}
    for name in (TRIGGERED, SWEEP, AUDIT):
        deployment = client_call(_deployment, name)
        assert deployment.work_pool_name == "parity-x86-64"
        # runs import the module entrypoint and start in a folder every worker has, not in this checkout
        assert deployment.entrypoint.startswith("parity.flows."), deployment.entrypoint
        assert deployment.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": tempfile.gettempdir()}}
        ]


def test_scheduled_deployments_carry_their_parameters(deployed, places):
    sweep, audit = client_call(_deployment, SWEEP), client_call(_deployment, AUDIT)
    assert [s.parameters for s in sweep.schedules] == [
        {
            "registry": str(places["registry"].resolve()),
            "archive": str(places["archive"].resolve()),
            "fan_out": True,
        }
    ]
    assert [s.parameters for s in audit.schedules] == [
        {
            "archive": str(places["archive"].resolve()),
            "registry": str(places["registry"].resolve()),
            "replay": True,
            "cv": True,
        }
    ]


@dataclass(frozen=True)
class Triggered:
    """The finished triggered runs, when the events were first sent, and how many were sent in all."""

    runs: list
    since: datetime
    announced: int


@pytest.fixture(scope="module")
def triggered(deployed, places, iris):
    """Register a model with `parity register` in another process (it emits the event), then emit the
    same event again from a third process, as training code would; wait for both triggered runs (and for any
    a repeated announcement started: each event the server matched makes one run)."""
    X, y = iris
    inputs = places["inputs"]
    inputs.mkdir()
    sio.dump(LogisticRegression(max_iter=500).fit(X, y), inputs / "model.skops")
    X.to_parquet(inputs / "reference.parquet")
    since = datetime.now(UTC) - timedelta(seconds=5)
    register = [sys.executable, "-m", "parity", "register", str(inputs / "model.skops")]
    register += ["--reference", str(inputs / "reference.parquet"), "--name", MODEL]
    deployed.run(*register, "--registry", str(places["registry"]))
    # The automation `parity deploy` just created may not be taken up yet: announce until one run exists.
    _, repeated = announce_until_triggered(
        TRIGGERED,
        lambda: emit_registered(MODEL, 1, places["registry"]),
        RUN_TIMEOUT,
        lambda: f"a triggered run of {TRIGGERED}; worker log:\n{deployed.log('worker')[-3000:]}",
    )
    again = (
        "import sys; from registry.events import emit_registered; "
        f"sys.exit(0 if emit_registered({MODEL!r}, 1, {str(places['registry'])!r}) else 1)"
    )
    deployed.run(sys.executable, "-c", again)
    announced = 2 + len(repeated)
    runs = wait_for(
        lambda: _finished(deployment_runs(TRIGGERED), 2),
        RUN_TIMEOUT,
        lambda: f"two triggered runs of {TRIGGERED}; worker log:\n{deployed.log('worker')[-3000:]}",
        every=3,
    )
    return Triggered(runs, since, announced)


def test_registration_events_trigger_runs_with_the_event_parameters(triggered, places):
    runs = triggered.runs
    assert all(r.state.is_completed() for r in runs), [(r.name, r.state.message) for r in runs]
    for run in runs:
        assert run.parameters["name"] == MODEL and run.parameters["version"] == 1
        assert run.parameters["registry"] == str(places["registry"].resolve())
        assert run.parameters["archive"] == str(places["archive"].resolve())
        assert run.name == f"{MODEL}-v1"


def test_two_events_for_one_version_make_one_bundle(triggered, places):
    archive = places["archive"]
    assert [p.name for p in (archive / MODEL).iterdir()] == ["1"]
    assert (archive / MODEL / "1" / CONTENT / MANIFEST).is_file()
    assert not (archive / REJECTED).exists()
    assert list((archive / STAGING).iterdir()) == []


def test_ui_artifacts_of_the_model_are_readable(triggered, places):
    table = client_call(_artifacts, artifact_key(MODEL))
    assert table and table[0].type == "table"
    rows = json.loads(table[0].data) if isinstance(table[0].data, str) else table[0].data
    assert {row["verdict"] for row in rows} == {"pass", "not covered"}
    assert {row["output"] for row in rows if row["verdict"] == "not covered"} == {"decision_function"}
    assert {"format", "runtime", "target", "output", "max_abs", "verdict"} <= set(rows[0])
    report = client_call(_artifacts, artifact_key(MODEL, "report"))
    assert report and "## Worst rows" in report[0].data and "## Provenance" in report[0].data
    link = client_call(_artifacts, artifact_key(MODEL, "bundle"))
    assert link and link[0].type == "markdown"  # Prefect stores links as markdown
    assert (places["archive"] / MODEL / "1").resolve().as_uri() in link[0].data


def test_outgoing_validated_events_name_the_model(triggered):
    runs, since = triggered.runs, triggered.since
    # one event per triggered run: wait for all of them, not for the first to arrive
    events = wait_for(
        lambda: (
            (found := client_call(read_events, "parity.model.validated", since))
            and len(found) >= len(runs)
            and found
        ),
        SERVER_SIDE_DEADLINE_S,
        f"{len(runs)} parity.model.validated events",
    )
    assert {e.resource.id for e in events} == {f"parity.model.{MODEL}.1"}
    assert {e.payload["outcome"] for e in events} == {"passed"}
    # exactly one run wrote the bundle; every other one (the second event's, a repeat's) found it and wrote none
    assert sorted(e.payload["written"] for e in events) == [False] * (len(events) - 1) + [True]
    registered = client_call(read_events, "parity.model.registered", since)
    assert 2 <= len(registered) <= triggered.announced  # a repeat not taken in time may have been lost
    assert registered[0].payload["registry"].endswith("registry")


def _start_scheduled_run(deployment: str):
    """Take a run the scheduler created for ``deployment`` and move its start time to now."""
    from prefect.states import Scheduled

    scheduled = wait_for(
        lambda: [r for r in deployment_runs(deployment) if r.state and r.state.is_scheduled()],
        SCHEDULER_DEADLINE_S,
        f"the scheduler to create runs of {deployment}",
    )
    run = scheduled[0]

    async def now(client):
        await client.set_flow_run_state(run.id, Scheduled(scheduled_time=datetime.now(UTC)), force=True)

    client_call(now)
    return run


def test_runs_created_by_the_schedules_succeed(triggered, places):
    runs = {name: _start_scheduled_run(name) for name in (SWEEP, AUDIT)}
    assert runs[SWEEP].parameters == {
        "registry": str(places["registry"].resolve()),
        "archive": str(places["archive"].resolve()),
        "fan_out": True,
    }

    async def read(client, run_id):
        return await client.read_flow_run(run_id)

    for name, run in runs.items():
        done = wait_for(
            lambda run=run: (r := client_call(read, run.id)).state.is_final() and r,
            RUN_TIMEOUT,
            f"the scheduled run of {name}",
            every=3,
        )
        assert done.state.is_completed(), (name, done.state.message)
    (audited,) = client_call(_artifacts, "parity-archive-audit")
    rows = json.loads(audited.data) if isinstance(audited.data, str) else audited.data
    assert [(row["model"], row["status"]) for row in rows] == [(f"{MODEL}:1", "ok")]


def test_parity_serve_refuses_deployments_bound_to_a_work_pool(deployed, places, tmp_path):
    """Served copies of work-pool deployments would lose their code location: refuse, and say what to do."""
    done = deployed.run(
        *(sys.executable, "-m", "parity", "serve", "--registry", str(places["registry"])),
        *("--archive", str(tmp_path / "archive")),
        expect_failure=True,
    )
    assert done.returncode == 2
    assert "convert-and-validate/on-registration (parity-x86-64)" in done.stderr
    assert "prefect deployment delete" in done.stderr
    assert client_call(_deployment, TRIGGERED).work_pool_name == "parity-x86-64"  # left as it was
