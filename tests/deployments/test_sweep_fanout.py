"""The nightly sweep fanned out on Prefect's own machinery: a real server, `parity deploy`, two process
workers on one pool, the nightly-sweep deployment submitting one convert-and-validate run per version."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from prefect_processes import PrefectServer, client_call
from sklearn.linear_model import LogisticRegression
from sklearn.semi_supervised import LabelSpreading

from benchmarks._common import targets_file
from parity.archive import Archive

pytestmark = [pytest.mark.prefect_server, pytest.mark.slow]

SWEEP = "validate-registry/nightly-sweep"
#: The pool's limit here: the sweep's own run plus two children at once.
POOL_LIMIT = 3
MODELS = ["fan-logreg-1", "fan-logreg-2", "fan-logreg-3", "fan-spreading"]
#: A fanned-out sweep of four small models, on a loaded 2-core machine: 2-6 min; 15 is a hang.
SWEEP_TIMEOUT = 900


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    root = tmp_path_factory.mktemp("fanout")
    return {"registry": root / "registry", "archive": root / "archive", "root": root}


@pytest.fixture(scope="module")
def deployed(prefect_api: PrefectServer, places, iris):
    """Models registered with no API (no event), then `parity deploy`, a pool limit, two workers."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from parity.cli import main
    from parity.registry import FileRegistry

    X, y = iris
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        store = FileRegistry(places["registry"])
        for i, name in enumerate(MODELS[:-1]):
            store.register(LogisticRegression(max_iter=500, C=1.0 + i).fit(X, y), X, name)
        store.register(LabelSpreading().fit(X, y), X, MODELS[-1])
    assert main(["deploy", "--registry", str(places["registry"]), "--archive", str(places["archive"])]) == 0

    async def limit(client):
        from prefect.client.schemas.actions import WorkPoolUpdate

        await client.update_work_pool("parity-x86-64", WorkPoolUpdate(concurrency_limit=POOL_LIMIT))

    client_call(limit)
    for i in (1, 2):
        prefect_api.spawn(
            f"worker-{i}",
            *(
                sys.executable,
                "-m",
                "prefect",
                "worker",
                "start",
                "--pool",
                "parity-x86-64",
                "--type",
                "process",
            ),
        )
    return prefect_api


async def _runs_of_flow(client, flow_name: str):
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    return await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))


@pytest.fixture(scope="module")
def swept(deployed, places):
    """One run of the nightly-sweep deployment (fan_out from prefect.yaml), with a host-only targets file."""
    from prefect.deployments import run_deployment

    targets = targets_file(places["root"], "host")
    parameters = {"registry": str(places["registry"]), "archive": str(places["archive"]), "fan_out": True}
    run = run_deployment(SWEEP, parameters={**parameters, "targets": str(targets)}, timeout=SWEEP_TIMEOUT)
    assert run.state.is_final(), f"the sweep did not finish in {SWEEP_TIMEOUT} s:\n{deployed.log('worker-1')}"
    children = client_call(_runs_of_flow, "convert-and-validate")
    return run, children


def test_the_sweep_ends_with_every_models_verdict(swept):
    run, _ = swept
    assert run.state.is_failed()  # LabelSpreading is unsupported: the sweep says so, after all the others
    assert "3 passed" in run.state.message and "1 unsupported" in run.state.message, run.state.message
    assert "fan-spreading:1" in run.state.message


def test_every_version_is_one_child_flow_run_on_the_pool(swept, places):
    _, children = swept
    assert sorted(c.parameters["name"] for c in children) == sorted(MODELS)
    assert all(c.state.is_final() for c in children)
    assert {c.work_pool_name for c in children} == {"parity-x86-64"}
    assert {c.parent_task_run_id is not None for c in children} == {True}  # shown under the sweep
    shelf = Archive(places["archive"])
    assert all(shelf.is_archived(name, 1) for name in MODELS[:-1])
    assert shelf.rejected(MODELS[-1], 1) and not shelf.is_archived(MODELS[-1], 1)


def test_the_pool_limit_held(swept):
    """Never more than POOL_LIMIT runs of the pool at once (the sweep's own run counts), from the
    server's start and end times of every run."""
    run, children = swept
    spans = [(r.start_time, r.end_time) for r in [run, *children] if r.start_time and r.end_time]
    assert len(spans) == len(children) + 1
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    most, now = 0, 0
    for _, step in edges:
        now += step
        most = max(most, now)
    assert 2 <= most <= POOL_LIMIT  # parallel (sweep + a child at least), never beyond the limit


def test_the_same_key_never_submits_twice_and_the_next_sweep_can(deployed, places):
    from parity.flows.fanout import CHILD_DEPLOYMENT, submit

    parameters = {"registry": str(places["registry"]), "archive": str(places["archive"])}
    first = submit(CHILD_DEPLOYMENT, "sweep-a", "absent-model", 1, parameters)
    again = submit(CHILD_DEPLOYMENT, "sweep-a", "absent-model", 1, parameters)
    retry = submit(CHILD_DEPLOYMENT, "sweep-a", "absent-model", 1, parameters, attempt=2)
    later = submit(CHILD_DEPLOYMENT, "sweep-b", "absent-model", 1, parameters)
    assert first.flow_run_id == again.flow_run_id
    assert len({first.flow_run_id, retry.flow_run_id, later.flow_run_id}) == 3


def test_deploy_creates_the_crash_automation_and_the_emulator_limit(deployed):
    from parity.deployments.deploy import CRASH_AFTER_S, CRASH_AUTOMATION, EMULATOR_SLOTS
    from parity.validators.targets.reaches import EMULATOR_LIMIT

    async def read(client):
        return (
            await client.read_automations_by_name(CRASH_AUTOMATION),
            await client.read_global_concurrency_limit_by_name(EMULATOR_LIMIT),
        )

    (automation,), limit = client_call(read)
    assert automation.trigger.within == timedelta(seconds=CRASH_AFTER_S)
    assert limit.limit == EMULATOR_SLOTS


HOLD = """
import sys, time
from parity.validators.targets.reaches import emulator_slot
with emulator_slot():
    entered = time.time()
    time.sleep(float(sys.argv[1]))
    print(entered, time.time())
"""
#: Seconds each holder keeps the slot: long enough that two unlimited holders started together overlap.
HOLD_S = 15


def test_emulated_runs_take_turns_across_processes(deployed):
    """Two processes holding the emulator's global limit (1 slot, made by `parity deploy`) never overlap:
    nothing but Prefect's limit stands between them."""

    holders = [
        subprocess.Popen(
            [sys.executable, "-c", HOLD, str(HOLD_S)], env=deployed.env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    spans = []
    for holder in holders:
        out, _ = holder.communicate(timeout=600)
        assert holder.returncode == 0
        spans.append(tuple(float(x) for x in out.split()))
    (_, first_out), (second_in, _) = sorted(spans)
    assert second_in >= first_out, spans


def test_workers_took_the_children(swept, deployed):
    _, children = swept
    logs = deployed.log("worker-1") + deployed.log("worker-2")
    assert all(str(c.id) in logs for c in children), "a child ran somewhere other than the pool's workers"


def test_children_unfinished_at_the_deadline_are_cancelled_and_reported(deployed, places):
    from parity.flows.fanout import fan_out, read_states

    parameters = {"registry": str(places["registry"]), "archive": str(places["archive"])}
    (report,) = fan_out([("absent-model", 7)], parameters, str(places["archive"]), deadline_s=0)
    assert report.outcome == "error"
    assert "did not finish within 0 s and was cancelled" in (report.error or ""), report.error
    assert "The next sweep retries this version" in (report.error or "")
    runs = client_call(_runs_of_flow, "convert-and-validate")
    (run,) = [r for r in runs if r.parameters.get("name") == "absent-model" and r.parameters["version"] == 7]
    state = read_states([run.id])[run.id].state  # named by id, as the sweep reads them
    assert state.is_cancelling() or state.is_cancelled(), state
