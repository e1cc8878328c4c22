"""Plain functions that turn a model's report into what people read: table rows, markdown, one line."""

from __future__ import annotations

import re

from parity.validators.report import fmt_float

#: Columns of the verdict table, as shown in the CLI and the Prefect table artifact.
TABLE_COLUMNS = (
    "format",
    "runtime",
    "target",
    "output",
    "rows",
    "max_abs",
    "max_rel",
    "n_outside",
    "verdict",
)


def artifact_key(name: str, suffix: str = "") -> str:
    """A Prefect artifact key for a model: lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"
    return f"parity-{slug}{'-' + suffix if suffix else ''}"


def table_rows(report: dict) -> list[dict]:
    """One row per check, with figures as short strings."""
    rows = []
    for check in report["checks"]:
        row = {column: check.get(column, "") for column in TABLE_COLUMNS}
        row["max_abs"], row["max_rel"] = fmt_float(check["max_abs"]), fmt_float(check["max_rel"])
        row["explanation"] = check.get("explanation", "")
        rows.append(row)
    return rows


def failing_cells(report: dict) -> list[str]:
    """``format/runtime/target/output`` of every check that did not pass."""
    return [
        f"{c['format']}/{c['runtime']}/{c['target']}/{c['output']}: {c['verdict']}"
        for c in report["checks"]
        if c["verdict"] != "pass"
    ]


def one_line(report: dict) -> str:
    """``iris-lr:1 passed (9 checks)`` or the failing cells."""
    head = f"{report['name']}:{report['version']} {report['outcome']}"
    bad = failing_cells(report)
    return f"{head}: {'; '.join(bad)}" if bad else f"{head} ({len(report['checks'])} checks)"


def markdown(report: dict, where: str) -> str:
    """A markdown summary of one model version for the Prefect UI."""
    lines = [
        f"# {report['name']} v{report['version']}: {report['outcome'].upper()}",
        "",
        f"- estimator: `{report['estimator']}`",
        f"- reference rows: {report['reference_rows']}",
        f"- bundle: `{where}`",
    ]
    for fmt, conversion in report["conversions"].items():
        lines.append(
            f"- {fmt}: {conversion['status']} in {conversion['seconds']:.2f} s — {conversion['message'].splitlines()[0] if conversion['message'] else ''}"
        )
    lines += [f"- note: {note}" for note in report["notes"]]
    lines += ["", "| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for row in table_rows(report):
        lines.append("| " + " | ".join(str(row[c]) for c in TABLE_COLUMNS) + " |")
    targets = report.get("targets", {})
    if targets:
        lines += ["", "## Where the outputs came from", ""]
        for name, entry in targets.items():
            lines.append(f"- **{name}** ({'required' if entry['required'] else 'optional'})")
            for runtime, ran_on in entry["where"].items():
                lines.append(f"  - {runtime}: {describe_where(ran_on)}")
    explained = [
        (c, c["explanation"])
        for c in report["checks"]
        if c.get("explanation") and c["output"] != "embedded-verification"
    ]
    if explained:
        lines += ["", "## Explanations", ""]
        lines += [f"- **{c['format']}/{c['runtime']}/{c['output']}**: {text}" for c, text in explained]
    return "\n".join(lines)


def describe_where(where: dict) -> str:
    """One line from a runner's own description of where it ran, plus the target's settings."""
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
