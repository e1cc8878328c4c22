"""What the Prefect UI shows of a model version, and the events automations hang on.

Per model version: a table artifact (one row per format × runtime × target × output, with what it was
compared with and the runtime's role), a markdown report (summary of what did not pass, detail, worst rows,
provenance, where the bundle is, a link to its report.html) and a link artifact to the bundle, all keyed from
the model name (``parity-<slug>``, ``parity-<slug>-report``, ``parity-<slug>-bundle``) so the UI's
artifact page shows each model's history. Then one event, ``parity.model.validated`` or
``parity.model.rejected``, on the resource ``parity.model.<name>.<version>``.

Each is written once per model version, by the task that files it (``file_result``): three artifact writes
and one event, no task of their own. A sweep shows a progress artifact (:class:`SweepProgress`, over
:func:`start_progress` and :func:`update_progress`), moved at most :data:`PROGRESS_STEPS` times.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast
from uuid import UUID

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.events import emit_event

import parity.archive as archive_stage
from parity.archive import as_link, read_url
from parity.archive.names import HTML_REPORT
from parity.core.records import Check, Metadata, Outcome, OutcomePayload, Report, Verdict
from parity.registry.events import model_resource
from parity.validators.report import fmt_float

from .summary import artifact_key, compared_with, failing_cells, markdown, one_line, table_rows

VALIDATED = "parity.model.validated"
REJECTED = "parity.model.rejected"
SWEEP_PROGRESS_KEY = "parity-sweep-progress"
#: Rows of the verdict table repeated under "Worst rows" in the markdown report.
WORST_ROWS = 5
#: Most updates of a sweep's progress artifact after its creation (one per model below this many models; a
#: larger sweep moves it in steps of 1/PROGRESS_STEPS, the last at 100 %), so a 1000-model sweep does not
#: pay a round trip to the API per model.
PROGRESS_STEPS = 20


def worst_checks(report: Report, limit: int = WORST_ROWS) -> list[Check]:
    """The checks furthest from passing: non-passing verdicts first, then by relative and absolute error."""

    def badness(check: Check) -> tuple[bool, float, float]:
        def figure(value: float | None) -> float:
            return -1.0 if value is None else float(value)  # the record holds no NaN

        return (check.verdict is not Verdict.PASS, figure(check.max_rel), figure(check.max_abs))

    return sorted(report.checks, key=badness, reverse=True)[:limit]


def provenance_lines(content: str) -> list[str]:
    """Markdown lines from a bundle's ``metadata.json`` (training data, source, scores, tools).

    Parameters
    ----------
    content : str
        Where the bundle's files are: a folder, or a URL of the archive's storage.

    Raises
    ------
    RecordError, RecordSchemaError
        The bundle's ``metadata.json`` is damaged or of a schema this version of Parity does not read.
    """
    path = f"{content}/metadata.json"
    raw = read_url(path)
    if raw is None:
        return [f"- no metadata.json in `{content}`"]
    metadata = Metadata.from_bytes(raw, path)
    provenance = metadata.provenance
    data = provenance.training_data
    sources = [entry.origin for entry in provenance.source.files]
    snapshot = f" (snapshot SHA-256 `{data.snapshot_sha256[:12]}…`)" if data.snapshot_sha256 else ""
    return [
        f"- registered at: {metadata.registered_at}, validated at: {metadata.validated_at}",
        f"- training data: {data.uri or 'not recorded'}{snapshot}",
        f"- training source: {', '.join(f'`{s}`' for s in sources) or 'not recorded'}",
        f"- cross-validation: {json.dumps(provenance.cv_scores)}",
        f"- model SHA-256: `{metadata.registered_model.sha256}`",
        "- tools: " + ", ".join(f"{k} {v}" for k, v in sorted(metadata.tools.items())),
    ]


def report_url(location: str | Path) -> str | None:
    """The URL of a filed bundle's ``report.html``; None for a local bundle that has none (written before
    bundles carried one).

    Parameters
    ----------
    location : str or Path
        Where the bundle's files are (:attr:`~parity.archive.Filed.content`): a local folder, or a URL such as
        ``s3://bucket/prefix/name/version/v1/content``.

    Returns
    -------
    str or None
    """
    text = str(location)
    if "://" not in text and not (Path(text) / HTML_REPORT).is_file():
        return None
    return f"{as_link(text).rstrip('/')}/{HTML_REPORT}"


def report_markdown(filed: archive_stage.Filed) -> str:
    """The markdown report of one model version: the summary (each cell that did not pass, with its stage and
    reason; outputs not covered), the detail, worst rows, provenance, bundle location.

    Parameters
    ----------
    filed : archive.Filed
        Where the version's result went, with its report.

    Returns
    -------
    str
    """
    report = filed.report
    passed = filed.outcome is Outcome.PASSED
    where = "archive bundle" if passed else "rejected attempt (not archived)"
    lines = [markdown(report, str(filed.path)), "", "## Worst rows", ""]
    lines += ["| cell | vs | verdict | max_abs | max_rel | n_outside |", "|---|---|---|---|---|---|"]
    for c in worst_checks(report):
        figures = f"{fmt_float(c.max_abs)} | {fmt_float(c.max_rel)} | {c.n_outside}"
        lines.append(f"| {c.cell} | {compared_with(c)} | {c.verdict} | {figures} |")
    lines += ["", "## Provenance", "", *provenance_lines(filed.content)]
    lines += ["", "## Where it is", "", f"- {where}: `{filed.path}`"]
    url = report_url(filed.content)
    if url:
        lines.append(f"- the report, with plots of every output: [{HTML_REPORT}]({url})")
    if passed:
        lines.append("- written by this run" if filed.written else "- already archived: left untouched")
    return "\n".join(lines)


def outcome_event(filed: archive_stage.Filed) -> tuple[str, OutcomePayload]:
    """The event name and payload announcing one model version's verdict."""
    report = filed.report
    passed = filed.outcome is Outcome.PASSED
    payload = OutcomePayload(
        name=report.name,
        version=report.version,
        outcome=report.outcome,
        location=str(filed.path),
        archived=passed,
        written=filed.written,
        failing_cells=failing_cells(report),
        summary=one_line(report),
    )
    return (VALIDATED if passed else REJECTED), payload


def publish(filed: archive_stage.Filed) -> None:
    """Show the verdicts, report and bundle link in the Prefect UI, and emit the outcome event.

    Called inside a flow or task run (the artifacts belong to it); the event is queued, not waited for.

    Parameters
    ----------
    filed : archive.Filed
        Where the version's result went, with its report.
    """
    report = filed.report
    name, version = report.name, report.version
    passed = filed.outcome is Outcome.PASSED
    create_table_artifact(
        key=artifact_key(name),
        table=table_rows(report),
        description=f"{name} v{version}: {report.outcome}",
    )
    create_markdown_artifact(
        key=artifact_key(name, "report"), markdown=report_markdown(filed), description=one_line(report)
    )
    create_link_artifact(
        key=artifact_key(name, "bundle"),
        link=as_link(filed.path),
        link_text=f"{name} v{version}: {'archive bundle' if passed else 'rejected attempt'}",
        description=f"{name} v{version}: {filed.path}",
    )
    event, payload = outcome_event(filed)
    emit_event(event=event, resource=model_resource(name, version), payload=payload.to_json())


def start_progress(total: int) -> UUID:
    """Create the sweep's progress artifact at 0 %.

    Parameters
    ----------
    total : int
        Model versions the sweep will validate.

    Returns
    -------
    UUID
        The artifact's id, for :func:`update_progress`.
    """
    created = create_progress_artifact(
        progress=0.0 if total else 100.0,
        key=SWEEP_PROGRESS_KEY,
        description=f"0 of {total} model versions validated",
    )
    # async_dispatch types the result as "UUID or a coroutine"; called from sync code, as here, it is the UUID.
    return cast(UUID, created)


def update_progress(artifact_id: UUID, done: int, total: int) -> None:
    """Move the sweep's progress artifact to ``done`` of ``total`` model versions.

    Parameters
    ----------
    artifact_id : UUID
        From :func:`start_progress`.
    done, total : int
    """
    update_progress_artifact(
        artifact_id=artifact_id,
        progress=100.0 * done / total if total else 100.0,
        description=f"{done} of {total} model versions validated",
    )


def progress_step(done: int, total: int) -> int:
    """Which of :data:`PROGRESS_STEPS` steps a sweep with ``done`` of ``total`` versions finished has reached.

    Parameters
    ----------
    done, total : int

    Returns
    -------
    int
        From 0 to :data:`PROGRESS_STEPS` (reached when every version is done, or when there are none).
    """
    return done * PROGRESS_STEPS // total if total else PROGRESS_STEPS


class SweepProgress:
    """A sweep's progress artifact, created at 0 % and moved only when it crosses one of
    :data:`PROGRESS_STEPS` steps (always at the end).

    Parameters
    ----------
    total : int
        Model versions the sweep will validate.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.artifact_id = start_progress(total)
        self.shown_step = 0

    def advance(self, done: int) -> None:
        """Record that ``done`` of the sweep's versions are finished; write the artifact if a step was crossed.

        Parameters
        ----------
        done : int
        """
        step = progress_step(done, self.total)
        if step > self.shown_step or done == self.total:
            self.shown_step = step
            update_progress(self.artifact_id, done, self.total)
