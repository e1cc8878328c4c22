"""What the Prefect UI shows of a model version and of a sweep, and the outcome events, read back."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prefect import flow

from parity.archive import CONTENT, Filed
from parity.core.records import Check, Conversion, ConversionStatus, Metadata, Outcome, Report, Verdict
from parity.flows.publish import (
    PROGRESS_STEPS,
    REJECTED,
    SWEEP_PROGRESS_KEY,
    VALIDATED,
    outcome_event,
    progress_step,
    publish,
    report_markdown,
    report_url,
    start_progress,
    update_progress,
    worst_checks,
)
from parity.flows.summary import artifact_key, first_sentence
from tests.waiting import SERVER_SIDE_DEADLINE_S, wait_for

NAME = "Churn_Model.v2"
#: A metadata.json written by Parity, as the starting point of this test's own.
FIXTURE_METADATA = (
    Path(__file__).parents[1] / "fixtures" / "schema-1" / "archive" / "iris-tree" / "1" / "metadata.json"
)


def _check(output: str, verdict: str = "pass", max_abs: float = 1e-8, max_rel: float = 1e-7) -> Check:
    return Check(
        format="onnx",
        runtime="onnxruntime",
        target="linux/x86_64",
        output=output,
        verdict=Verdict(verdict),
        kind="probability",
        rows=150,
        max_abs=max_abs,
        max_rel=max_rel,
        n_outside=0 if verdict == "pass" else 3,
        explanation="" if verdict == "pass" else "3 row(s) outside the band",
    )


def _metadata() -> Metadata:
    data = json.loads(FIXTURE_METADATA.read_text())
    data.update(registered_at="2026-11-01T00:00:00+00:00", validated_at="2026-11-02T00:00:00+00:00")
    data["provenance"]["training_data"] = {"uri": "s3://data/churn.parquet"}
    data["provenance"]["source"]["files"] = [
        {"file": "source/train.py", "origin": "/src/train.py", "sha256": "cd" * 32}
    ]
    data["provenance"]["cv_scores"] = {"acc": 0.93}
    data["registered_model"]["sha256"] = "ab" * 32
    data["tools"] = {"skl2onnx": "1.20.0"}
    return Metadata.from_data(data)


def _filed(folder: Path, outcome: str = "passed") -> Filed:
    checks = [_check("label", max_abs=0.0, max_rel=0.0), _check("probabilities", max_abs=2e-7, max_rel=3e-6)]
    if outcome != "passed":
        checks.append(_check("decision", "fail", max_abs=0.5, max_rel=0.1))
    report = Report(
        name=NAME,
        version=3,
        outcome=Outcome(outcome),
        validated_at="2026-11-02T00:00:00+00:00",
        estimator="LogisticRegression",
        reference_rows=150,
        conversions={
            "onnx": Conversion(format="onnx", status=ConversionStatus.CONVERTED, seconds=0.1, message="ok")
        },
        checks=checks,
    )
    (folder / CONTENT).mkdir(parents=True, exist_ok=True)
    (folder / CONTENT / "metadata.json").write_bytes(_metadata().to_bytes())
    return Filed(Outcome(outcome), str(folder), True, report)


def test_worst_checks_put_failures_first_then_the_largest_errors(tmp_path):
    report = _filed(tmp_path, "failed").report
    assert [c.output for c in worst_checks(report)] == ["decision", "probabilities", "label"]


def test_markdown_report_has_summary_worst_rows_provenance_and_location(tmp_path):
    text = report_markdown(_filed(tmp_path / "bundle"))
    assert text.startswith(f"# {NAME} v3: PASSED")
    for part in (
        "## Worst rows",
        "## Provenance",
        "s3://data/churn.parquet",
        "`/src/train.py`",
        "## Where it is",
    ):
        assert part in text
    assert f"archive bundle: `{tmp_path / 'bundle'}`" in text


def test_markdown_report_links_to_the_bundles_html_report(tmp_path):
    filed = _filed(tmp_path / "bundle")
    assert "report.html" not in report_markdown(filed)  # a bundle written before it had one: no dead link
    (tmp_path / "bundle" / CONTENT / "report.html").write_text("<!DOCTYPE html><html></html>")
    url = (tmp_path / "bundle" / CONTENT / "report.html").resolve().as_uri()
    assert url.startswith("file:///")
    text = report_markdown(filed)
    where = text.split("## Where it is", 1)[1]
    assert f"[report.html]({url})" in where


def test_a_bundle_on_object_storage_is_linked_by_its_own_url():
    assert (
        report_url("s3://models/parity/churn/3/v1/content/")
        == "s3://models/parity/churn/3/v1/content/report.html"
    )
    assert report_url(Path("no-such-bundle")) is None


def test_outcome_event_of_a_failure_is_rejected_with_the_failing_cells(tmp_path):
    event, payload = outcome_event(_filed(tmp_path, "failed"))
    assert event == REJECTED
    assert payload.failing_cells == ["onnx/onnxruntime/linux/x86_64/decision: fail"]
    assert payload.archived is False and payload.version == 3
    assert payload.to_json()["schema"] == 1 and payload.to_json()["outcome"] == "failed"


async def _read(kind: str, key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    async with get_client() as client:
        if kind == "artifact":
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                sort=ArtifactSort.CREATED_DESC,
            )
        from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

        since = datetime.now(UTC) - timedelta(minutes=5)
        page = await client.read_events(
            filter=EventFilter(
                event=EventNameFilter(name=[key]),
                occurred=EventOccurredFilter(since=since, until=datetime.now(UTC) + timedelta(minutes=1)),
            ),
            limit=50,
        )
        return [e for e in page.events if e.resource.id == f"parity.model.{NAME}.3"]


@flow
def _show(filed: Filed) -> None:
    publish(filed)


@pytest.mark.slow
@pytest.mark.prefect_server
@pytest.mark.parametrize(("outcome", "event"), [("passed", VALIDATED), ("failed", REJECTED)])
def test_publish_shows_table_report_link_and_emits_the_outcome(prefect_server, tmp_path, outcome, event):
    filed = _filed(tmp_path / "bundle", outcome)
    (tmp_path / "bundle" / CONTENT / "report.html").write_text("<!DOCTYPE html><html></html>")
    _show(filed)
    slug = artifact_key(NAME)
    assert slug == "parity-churn-model-v2"
    (table,) = asyncio.run(_read("artifact", slug))[:1]
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [r["output"] for r in rows] == [c.output for c in filed.report.checks]
    columns = {"format", "runtime", "role", "target", "output", "vs", "max_abs", "max_rel", "verdict"}
    assert columns <= set(rows[0])
    (report,) = asyncio.run(_read("artifact", f"{slug}-report"))[:1]
    assert "## Worst rows" in report.data
    assert (
        f"[report.html]({(tmp_path / 'bundle' / CONTENT / 'report.html').resolve().as_uri()})" in report.data
    )
    (link,) = asyncio.run(_read("artifact", f"{slug}-bundle"))[:1]
    assert link.type == "markdown" and (tmp_path / "bundle").resolve().as_uri() in link.data
    wait_for(
        lambda: any(
            e.payload["outcome"] == outcome and e.payload["location"] == str(filed.path)
            for e in asyncio.run(_read("event", event))
        ),
        SERVER_SIDE_DEADLINE_S,
        f"a {event} event with outcome {outcome} and the bundle's location",
    )


@flow
def _sweep(total: int) -> None:
    artifact_id = start_progress(total)
    for done in range(1, total + 1):
        update_progress(artifact_id, done, total)


@pytest.mark.slow
@pytest.mark.prefect_server
def test_sweep_progress_artifact_reaches_100_percent(prefect_server):
    _sweep(3)
    (progress,) = asyncio.run(_read("artifact", SWEEP_PROGRESS_KEY))[:1]
    assert progress.type == "progress"
    assert float(progress.data) == pytest.approx(100.0)
    assert progress.description == "3 of 3 model versions validated"


@pytest.mark.parametrize("total", [1, 4, PROGRESS_STEPS, 1000])
def test_a_sweep_moves_its_progress_artifact_at_most_once_per_step(total):
    steps = [progress_step(done, total) for done in range(total + 1)]
    assert steps[0] == 0 and steps[-1] == PROGRESS_STEPS
    assert steps == sorted(steps)
    moves = len(set(steps)) - 1  # the writes after the artifact's creation at 0 %
    assert moves == min(total, PROGRESS_STEPS)


def test_markdown_report_starts_with_the_summary_of_what_did_not_pass(tmp_path):
    filed = _filed(tmp_path / "bundle", "failed")
    covered = _check("probabilities", "not covered", max_abs=0.0).model_copy(
        update={"format": "pmml", "runtime": "jpmml_evaluator", "explanation": "No probability fields. More."}
    )
    away = _check("label", "fail", max_abs=1.0).model_copy(
        update={
            "target": "linux-aarch64-emulated",
            "against": "linux/x86_64",
            "explanation": "1 row differs.",
        }
    )
    report = filed.report.model_copy(update={"checks": [*filed.report.checks, covered, away]})
    text = report_markdown(Filed(filed.outcome, filed.path, filed.written, report))
    head = text.split("\n- estimator:")[0].splitlines()
    assert head[:2] == [f"# {NAME} v3: FAILED", ""]
    assert head[2:5] == [
        "- **fail** `onnx/onnxruntime/linux/x86_64/decision`: compare: 3 row(s) outside the band",
        "- **fail** `onnx/onnxruntime/linux-aarch64-emulated/label vs linux/x86_64`: compare: 1 row differs.",
        "- **not covered** `pmml/jpmml_evaluator/linux/x86_64/probabilities`: coverage: No probability fields.",
    ]
    table = text.split("\n\n| format |", 1)[1].split("\n\n")[0].splitlines()  # the verdict table
    table[0] = "| format |" + table[0]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert {"vs", "role"} <= set(header)
    vs = [row.strip("|").split("|")[header.index("vs")].strip() for row in table[2:]]
    assert vs == ["vs scikit-learn"] * 4 + ["vs linux/x86_64"]


def test_markdown_report_of_a_model_that_passed_says_every_cell_passed(tmp_path):
    text = report_markdown(_filed(tmp_path / "bundle"))
    assert text.splitlines()[2] == "- every cell passed (2 checks)"


@pytest.mark.parametrize(
    ("explanation", "said"),
    [
        ("3 row(s) outside atol 1e-05×scale. Compare the runtimes' rows.", "3 row(s) outside atol 1e-05×scale."),
        ("SEVERE: Failed to convert PKL to PMML\nSkLearnException: not a supported Estimator\nat ...",
         "SkLearnException: not a supported Estimator"),
        ("SEVERE: all there is", "SEVERE: all there is"),
        ("x" * 300, "x" * 239 + "…"),
        ("", ""),
    ],
    ids=["two-sentences", "jvm-log-line-first", "only-a-log-line", "long", "empty"],
)  # fmt: skip
def test_a_summary_gives_the_first_sentence_that_says_something(explanation, said):
    assert first_sentence(explanation) == said
