"""Plain functions that turn a model's report into what people read: table rows, markdown, one line."""

from __future__ import annotations

import re
from dataclasses import dataclass

from parity.core.records import Check, Report, Role, Stage, Verdict, Where
from parity.validators.report import fmt_float

#: Columns of the verdict table, as shown in the CLI and the Prefect table artifact.
TABLE_COLUMNS = (
    "format",
    "runtime",
    "role",
    "target",
    "output",
    "vs",
    "rows",
    "max_abs",
    "max_rel",
    "n_outside",
    "verdict",
)
#: Failing cells a summary lists per model; the rest are counted (the detail has every one).
SUMMARY_CELLS = 12
#: Characters of an explanation's first sentence a summary shows.
REASON_CHARS = 240
#: The stage of a failing cell of a report that did not record one (schema 1, or a cell made before stages).
_STAGE_OF_VERDICT = {
    Verdict.UNSUPPORTED: Stage.CONVERT,
    Verdict.ERROR: Stage.EVALUATE,
    Verdict.NOT_COVERED: Stage.COVERAGE,
    Verdict.FAIL: Stage.COMPARE,
}


#: A line that only names a log level and a generic event (``SEVERE: Failed to convert PKL to PMML``).
_LOG_LEVEL_LINE = re.compile(r"^(SEVERE|WARNING|INFO|FINE|DEBUG|ERROR):\s")


@dataclass(frozen=True)
class Finding:
    """A cell that did not pass, as a summary says it: its verdict, where it went wrong and why."""

    #: ``format/runtime/target/output``, with ``vs <target>`` for a row that compared two targets
    cell: str
    verdict: Verdict
    #: the step that went wrong (none for a runtime or target that is not there)
    stage: Stage | None
    #: the first sentence of the explanation
    reason: str
    #: why this cell does not block the model ("witness", "optional target"); empty when it blocks
    not_blocking: str

    def line(self) -> str:
        """``onnx/onnxruntime/linux-x86_64/predict: compare: 3 row(s) outside ...`` (verdict not included)."""
        stage = f"{self.stage}: " if self.stage else ""
        note = f" (not blocking: {self.not_blocking})" if self.not_blocking else ""
        return f"{self.cell}: {stage}{self.reason}{note}"


def first_sentence(text: str, limit: int = REASON_CHARS) -> str:
    """The first sentence of an explanation (up to ``. `` on its first line that says something: a logger's
    level line, such as the JVM's ``SEVERE: Failed to convert PKL to PMML``, is passed over), at most
    ``limit`` characters."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    said = [line for line in lines if not _LOG_LEVEL_LINE.match(line)] or lines or [""]
    sentence = re.split(r"(?<=\.)\s", said[0], maxsplit=1)[0]
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def finding(check: Check) -> Finding:
    """How a summary says a cell that did not pass."""
    stage = check.stage or (
        Stage.CONVERT if check.kind == "conversion" else _STAGE_OF_VERDICT.get(check.verdict)
    )
    if check.verdict is Verdict.NOT_COVERED:
        not_blocking = ""  # a verdict of its own: never blocking, and said as such
    elif check.role is Role.WITNESS:
        not_blocking = "witness runtime"
    elif not check.required:
        not_blocking = "optional target"
    else:
        not_blocking = ""
    cell = check.cell if check.against == "scikit-learn" else f"{check.cell} vs {check.against}"
    reason = first_sentence(check.explanation) or str(check.verdict)
    return Finding(cell, check.verdict, stage, reason, not_blocking)


def findings(report: Report) -> list[Finding]:
    """The cells of a report that did not pass: those that block the model, then those not covered, then
    those that do not block (a witness runtime, an optional target)."""
    found = [finding(c) for c in report.failing]

    def rank(f: Finding) -> int:
        return 1 if f.verdict is Verdict.NOT_COVERED else (2 if f.not_blocking else 0)

    return sorted(found, key=rank)


def headline(report: Report) -> str:
    """``iris-lr:1: passed -> <bundle>``: a model's verdict and where its result went (or why none)."""
    where = report.bundle or report.error or ""
    return f"{report.name}:{report.version}: {report.outcome}" + (f" -> {where}" if where else "")


def compared_with(check: Check) -> str:
    """What a row's outputs were compared with: ``vs scikit-learn`` or ``vs <target>`` (empty for a row that
    compared nothing: a conversion, a runtime that did not run)."""
    return "" if check.kind == "conversion" or check.output == "*" else f"vs {check.against}"


def artifact_key(name: str, suffix: str = "") -> str:
    """A Prefect artifact key for a model: lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"
    return f"parity-{slug}{'-' + suffix if suffix else ''}"


def table_rows(report: Report) -> list[dict]:
    """One row per check, with figures as short strings."""
    rows = []
    for check in report.checks:
        data = check.to_json()
        row = {column: data.get(column, "") for column in TABLE_COLUMNS}
        row["max_abs"], row["max_rel"] = fmt_float(check.max_abs), fmt_float(check.max_rel)
        row["vs"] = compared_with(check)
        row["stage"], row["band"] = data.get("stage", ""), check.band
        row["explanation"] = check.explanation
        rows.append(row)
    return rows


def failing_cells(report: Report) -> list[str]:
    """``format/runtime/target/output: verdict`` of every check that did not pass."""
    return [f"{c.cell}: {c.verdict}" for c in report.failing]


def one_line(report: Report) -> str:
    """``iris-lr:1 passed (9 checks)`` or the failing cells."""
    head = f"{report.name}:{report.version} {report.outcome}"
    bad = failing_cells(report)
    return f"{head}: {'; '.join(bad)}" if bad else f"{head} ({len(report.checks)} checks)"


def summary_markdown(report: Report) -> list[str]:
    """Markdown lines of a model's summary: its verdict, then each cell that did not pass with its reason."""
    found = findings(report)
    if not found:
        return [f"- every cell passed ({len(report.checks)} checks)"]
    lines = [
        f"- **{f.verdict}** `{f.cell}`: {f.line().removeprefix(f.cell + ': ')}" for f in found[:SUMMARY_CELLS]
    ]
    if len(found) > SUMMARY_CELLS:
        lines.append(f"- … and {len(found) - SUMMARY_CELLS} more cells that did not pass (see the table)")
    return lines


def markdown(report: Report, where: str) -> str:
    """A markdown summary of one model version for the Prefect UI: the summary first, then the detail."""
    lines = [
        f"# {report.name} v{report.version}: {report.outcome.upper()}",
        "",
        *summary_markdown(report),
        "",
    ]
    lines += [
        f"- estimator: `{report.estimator}`",
        f"- reference rows: {report.reference_rows}",
        f"- bundle: `{where}`",
    ]
    for fmt, conversion in report.conversions.items():
        said = conversion.message.splitlines()[0] if conversion.message else ""
        lines.append(f"- {fmt}: {conversion.status} in {conversion.seconds:.2f} s — {said}")
    lines += [f"- note: {note}" for note in report.notes]
    lines += ["", "| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for row in table_rows(report):
        lines.append("| " + " | ".join(str(row[c]) for c in TABLE_COLUMNS) + " |")
    if report.targets:
        lines += ["", "## Where the outputs came from", ""]
        for name, entry in report.targets.items():
            lines.append(f"- **{name}** ({'required' if entry.required else 'optional'})")
            for runtime, described in entry.where.items():
                lines.append(f"  - {runtime}: {describe_where(described)}")
    explained = [c for c in report.checks if c.explanation and c.output != "embedded-verification"]
    if explained:
        lines += ["", "## Explanations", ""]
        lines += [f"- **{c.cell}** ({compared_with(c)}): {c.explanation}" for c in explained]
    return "\n".join(lines)


def describe_where(described: Where) -> str:
    """One line from a runner's own description of where it ran, plus the target's settings."""
    where = described.to_json()
    cpuinfo = where.get("cpuinfo", "")
    if isinstance(cpuinfo, dict):
        parts = [str(cpuinfo[k]) for k in ("model name", "CPU implementer", "CPU part") if k in cpuinfo]
    else:
        parts = [
            p.strip()
            for p in str(cpuinfo).split(";")
            if p.strip() and not p.strip().startswith(("flags", "Features"))
        ]
    settings = ", ".join(f"{k}={where[k]}" for k in ("threads", "graph_optimization", "cpu") if k in where)
    return f"machine {where.get('machine', '?')}; {' '.join(parts) or 'cpu unknown'}; {settings}"
