"""The flows against a real Prefect server: bundles, manifests, states and artifacts read back."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.semi_supervised import LabelSpreading

from parity.archive import CONTENT, MANIFEST, REJECTED
from parity.flows.summary import artifact_key
from parity.flows.validate import result_data
from parity.registry import FileRegistry
from tests.archive.test_ocfl import ocfl_valid
from tests.prefect_events import read_events
from tests.waiting import SERVER_SIDE_DEADLINE_S, wait_for

pytestmark = [pytest.mark.prefect_server, pytest.mark.slow]

BUNDLE_FILES = {
    "model.pmml",
    "model.onnx",
    "model.skops",
    "reference.parquet",
    "predictions.parquet",
    "report.json",
    "metadata.json",
    "registration.json",
    "outputs.parquet",
    "card.md",
    "report.html",
}


@pytest.fixture(scope="module")
def swept(prefect_server, iris, tmp_path_factory):
    """A registry of one good and one unsupported model, swept once by validate_registry."""
    from parity.flows.validate import validate_registry

    X, y = iris
    root = tmp_path_factory.mktemp("sweep")
    registry = FileRegistry(root / "registry")
    registry.register(LogisticRegression(max_iter=500).fit(X, y), X, "iris-logreg", cv_scores={"acc": 0.95})
    registry.register(LabelSpreading().fit(X, y), X, "iris-spreading")
    state = validate_registry(str(root / "registry"), str(root / "archive"), return_state=True)
    return root, state


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sweep_state_counts_every_outcome(swept):
    _, state = swept
    assert state.is_failed()
    assert "1 passed" in state.message and "1 unsupported" in state.message
    assert "iris-spreading:1" in state.message
    outcomes = {r.name: r.outcome for r in result_data(state)}
    assert outcomes == {"iris-logreg": "passed", "iris-spreading": "unsupported"}


def test_passing_model_is_archived_with_a_true_manifest(swept):
    root, _ = swept
    bundle = root / "archive" / "iris-logreg" / "1" / CONTENT
    assert {p.name for p in bundle.iterdir()} == BUNDLE_FILES | {MANIFEST}
    valid, status = ocfl_valid(str(bundle.parents[1]))  # an OCFL 1.1 object, by an independent validator
    assert valid, status
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert manifest["schema"] == 1
    assert set(manifest["files"]) == BUNDLE_FILES
    for name, digest in manifest["files"].items():
        assert _sha256(bundle / name) == digest, name
    metadata = json.loads((bundle / "metadata.json").read_text())
    assert metadata["provenance"]["cv_scores"] == {"acc": 0.95}
    assert metadata["tools"]["sklearn2pmml"] and metadata["tools"]["java"]
    report = json.loads((bundle / "report.json").read_text())
    assert report["outcome"] == "passed"
    assert {(c["format"], c["runtime"]) for c in report["checks"]} >= {
        ("pmml", "jpmml_evaluator"),
        ("pmml", "pypmml"),
        ("onnx", "onnxruntime"),
        ("onnx", "onnx-reference"),
    }


def test_unsupported_model_is_kept_apart_with_reasons(swept):
    root, _ = swept
    assert not (root / "archive" / "iris-spreading").exists()
    attempts = list((root / "archive" / REJECTED / "iris-spreading" / "1").iterdir())
    assert len(attempts) == 1
    report = json.loads((attempts[0] / CONTENT / "report.json").read_text())
    assert report["outcome"] == "unsupported"
    assert ocfl_valid(str(attempts[0]))[0]
    reasons = [c["explanation"] for c in report["checks"] if c["verdict"] == "unsupported"]
    assert reasons and all(reasons)


def test_artifacts_are_readable_through_the_client(swept):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read(key: str):
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            )

    tables = asyncio.run(read(artifact_key("iris-logreg")))
    assert tables and tables[0].type == "table"
    rows = json.loads(tables[0].data) if isinstance(tables[0].data, str) else tables[0].data
    assert {row["verdict"] for row in rows} == {"pass", "not covered"}
    assert {row["output"] for row in rows if row["verdict"] == "not covered"} == {"decision_function"}
    reports = asyncio.run(read(artifact_key("iris-spreading", "report")))
    assert reports and "UNSUPPORTED" in reports[0].data


def test_rerun_neither_duplicates_nor_rewrites(swept):
    from parity.flows.validate import convert_and_validate

    root, _ = swept
    bundle = root / "archive" / "iris-logreg" / "1"
    before = {p.name: p.stat().st_mtime_ns for p in bundle.iterdir()}
    state = convert_and_validate(
        "iris-logreg", 1, str(root / "registry"), str(root / "archive"), return_state=True
    )
    assert state.is_completed()
    assert {p.name: p.stat().st_mtime_ns for p in bundle.iterdir()} == before
    assert [p.name for p in (root / "archive" / "iris-logreg").iterdir()] == ["1"]


def test_flow_run_is_named_after_the_model(swept):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    async def names():
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["iris-logreg-v1"]))
            )
            return [r.name for r in runs]

    assert "iris-logreg-v1" in asyncio.run(names())


#: What one model version costs in Prefect (issue 10 item 3): one task per stage, three artifacts, and its
#: flow run sends no heartbeat of its own (the sweep's run beats for the process).
TASKS_PER_MODEL = {"fetch": 1, "convert": 2, "validate": 2, "file_result": 1}
ARTIFACTS_PER_MODEL = {"table": 1, "markdown": 2}  # the verdicts, the report, the bundle link


async def _children(client, sweep_id):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    return await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[sweep_id]))
    )


async def _tasks_of(client, flow_run_id):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    return await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


async def _artifacts_of(client, flow_run_id):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    return await client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    )


async def _heartbeats_of(client, flow_run_ids):
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    page = await client.read_events(
        filter=EventFilter(
            event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{i}" for i in flow_run_ids]),
            occurred=EventOccurredFilter(
                since=datetime.now(UTC) - timedelta(days=1), until=datetime.now(UTC) + timedelta(minutes=1)
            ),
        ),
        limit=50,
    )
    return page.events


def _call(coroutine_function, *args):
    from prefect.client.orchestration import get_client

    async def call():
        async with get_client() as client:
            return await coroutine_function(client, *args)

    return asyncio.run(call())


def _counts(names) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return counts


def test_each_model_costs_one_task_per_stage_and_three_artifacts(swept):
    _, state = swept
    children = _call(_children, state.state_details.flow_run_id)
    assert sorted(c.name for c in children) == ["iris-logreg-v1", "iris-spreading-v1"]
    for child in children:
        # task runs reach the server as events: wait until all of them are recorded
        tasks = wait_for(
            lambda child=child: (
                (found := _call(_tasks_of, child.id))
                and len(found) >= sum(TASKS_PER_MODEL.values())
                and found
            ),
            SERVER_SIDE_DEADLINE_S,
            f"the task runs of {child.name}",
        )
        assert _counts(t.name.rsplit("-", 1)[0] for t in tasks) == TASKS_PER_MODEL, child.name
        artifacts = _call(_artifacts_of, child.id)
        assert _counts(a.type for a in artifacts) == ARTIFACTS_PER_MODEL, child.name
        assert all(
            a.task_run_id in {t.id for t in tasks if t.name.startswith("file_result")} for a in artifacts
        )


def test_a_models_subflow_sends_no_heartbeat_but_the_sweep_does(swept):
    _, state = swept
    sweep_id = state.state_details.flow_run_id
    children = [c.id for c in _call(_children, sweep_id)]
    # the sweep beats as it starts, before any child; the children's outcome events, sent after any
    # heartbeat a child would have sent at its start, are on the server once the check below has held
    wait_for(lambda: _call(_heartbeats_of, [sweep_id]), SERVER_SIDE_DEADLINE_S, "the sweep's heartbeat")
    since = state.timestamp - timedelta(hours=1)
    wait_for(
        lambda: (
            len(_call(read_events, "parity.model.validated", since))
            + len(_call(read_events, "parity.model.rejected", since))
            >= len(children)
        ),
        SERVER_SIDE_DEADLINE_S,
        "the children's outcome events",
    )
    assert _call(_heartbeats_of, children) == []
