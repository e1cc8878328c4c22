"""The flows against a real Prefect server: bundles, manifests, states and artifacts read back."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.semi_supervised import LabelSpreading

from parity.archive import MANIFEST, REJECTED
from parity.flows.summary import artifact_key
from parity.flows.validate import result_data
from parity.registry import FileRegistry

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
    bundle = root / "archive" / "iris-logreg" / "1"
    assert {p.name for p in bundle.iterdir()} == BUNDLE_FILES | {MANIFEST}
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
    report = json.loads((attempts[0] / "report.json").read_text())
    assert report["outcome"] == "unsupported"
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
