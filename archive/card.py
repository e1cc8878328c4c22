"""``card.md``: a bundle described for a person: what the model is, what was proven where, and how to check
and use the files without Parity.

The scoring snippets are made from the bundle's own records (the ONNX graph's input names and dtypes as the
conversion recorded them, the PMML's input columns), so that they run as printed from the bundle's folder;
a test executes them.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable

from parity.core.records import Check, Conversion, Metadata, OnnxDetails, Report
from parity.validators.report import fmt_float

from .contents import BundleFiles, archived_conversions, report_and_metadata
from .names import HTML_REPORT, MANIFEST, REFERENCE

#: How a card says a figure that is not known.
UNKNOWN = "not recorded"
#: Characters that mean markup in a line of markdown prose (a table cell included), backslash-escaped there.
_MARKUP = re.compile(r"([\\`|<>\[\]])")


def _visible(text: str) -> str:
    """``text`` with each control, format (bidi...) or line/paragraph separator character written as its
    Python escape (``\\n``, ``\\u202e``): a name holds no line break or hidden character in the card."""
    return "".join(
        c.encode("unicode_escape").decode("ascii")
        if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")
        else c
        for c in text
    )


def _prose(value: object) -> str:
    """A recorded value (a name, a URI...) as markdown prose: its markup characters escaped, its control
    characters written visibly, so that it stays one literal piece of text on its line."""
    return _MARKUP.sub(r"\\\1", _visible(str(value)))


def _code(value: object) -> str:
    """A recorded value as one inline code span: fenced by more backticks than it holds, its control
    characters written visibly."""
    text = _visible(str(value))
    fence = "`" * (1 + max((len(run) for run in re.findall("`+", text)), default=0))
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _block(info: str, lines: Iterable[str]) -> list[str]:
    """A fenced code block whose fence is longer than any run of backticks in its lines."""
    lines = list(lines)
    longest = max((len(run) for line in lines for run in re.findall("`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{info}", *lines, fence]


def _literal(text: str) -> str:
    """``text`` as a Python string literal (JSON's, ASCII only: also a valid Python literal)."""
    return json.dumps(text)


def render_card(files: BundleFiles) -> str:
    """The card of a bundle, from its files.

    Parameters
    ----------
    files : mapping of str to Path or bytes
        The bundle's files by name (:func:`~parity.archive.contents.folder_files` of a folder, or what
        ``file_model`` is about to file): ``report.json`` at least.

    Returns
    -------
    str
        Markdown.

    Raises
    ------
    FileNotFoundError
        No ``report.json`` among ``files``.
    RecordError, RecordSchemaError
        ``report.json`` or ``metadata.json`` is damaged or of a schema this version does not read.
    """
    report, metadata = report_and_metadata(files)
    artifacts = archived_conversions(report)
    sections = [
        _identity(report, metadata),
        _verdicts(report),
        _tolerances(report, metadata),
        _provenance(metadata),
        _verifying(sorted(files)),
        *(snippet for file, c in artifacts.items() if (snippet := scoring_snippet(file, c, metadata))),
    ]
    return "\n\n".join(sections) + "\n"


def _identity(report: Report, metadata: Metadata | None) -> str:
    tools = metadata.tools if metadata else {}
    registered_with = metadata.provenance.environment.scikit_learn if metadata else None
    lines = [
        f"# {_prose(report.name)} v{report.version}: {str(report.outcome).upper()}",
        "",
        f"- estimator: {_code(report.estimator or UNKNOWN)}"
        + (f" ({_prose(metadata.estimator_type)})" if metadata else ""),
        f"- registered at: {metadata.registered_at if metadata else UNKNOWN}",
        f"- validated at: {report.validated_at}",
        f"- scikit-learn: registered with {_prose(registered_with or UNKNOWN)}, "
        f"validated with {_prose(tools.get('scikit-learn') or UNKNOWN)}"
        + (
            f"; the pickle was made with {_prose(pickled)}"
            if (pickled := report.original_sklearn_version)
            else ""
        ),
        f"- reference rows: {report.reference_rows}",
        f"- the plots and every figure: [{HTML_REPORT}]({HTML_REPORT})",
    ]
    return "\n".join(lines)


def _verdict_row(check: Check) -> str:
    figures = f"{fmt_float(check.max_abs)} | {fmt_float(check.max_rel)}"
    blocking = "" if check.required else " (not blocking)"
    cells = (check.format, check.runtime, check.target, check.output, check.against)
    return (
        "| "
        + " | ".join(_prose(c) for c in cells)
        + f" | {check.verdict}{blocking} | {check.rows} | {figures} |"
    )


def _verdicts(report: Report) -> str:
    lines = [
        "## What was proven where",
        "",
        "| format | runtime | target | output | vs | verdict | rows | max abs | max rel |",
        "|---|---|---|---|---|---|---|---|---|",
        *(_verdict_row(c) for c in report.checks),
    ]
    return "\n".join(lines)


def _tolerances(report: Report, metadata: Metadata | None) -> str:
    used = sorted({(c.kind, c.tolerance) for c in report.checks if c.tolerance})
    lines = ["## Tolerances", "", "| output kind | tolerance |", "|---|---|"]
    lines += [f"| {_prose(kind)} | {_prose(tolerance)} |" for kind, tolerance in used] or [
        "| (none) | no number compared |"
    ]
    overrides = metadata.tolerances if metadata else {}
    shown = _code(json.dumps(overrides, sort_keys=True)) if overrides else "none"
    lines += ["", f"Registered overrides: {shown}."]
    return "\n".join(lines)


def _provenance(metadata: Metadata | None) -> str:
    if metadata is None:
        return "## Provenance\n\nThis bundle has no metadata.json."
    provenance = metadata.provenance
    data = provenance.training_data
    sources = [f"{_code(entry.origin)} (SHA-256 {_code(entry.sha256)})" for entry in provenance.source.files]
    scores = provenance.cv_scores
    model = metadata.registered_model
    lines = [
        "## Provenance",
        "",
        f"- training data: {_code(data.uri) if data.uri else UNKNOWN}",
        f"- training snapshot SHA-256: {_code(data.snapshot_sha256) if data.snapshot_sha256 else UNKNOWN}",
        f"- source: {_code(provenance.source.origin) if provenance.source.origin else UNKNOWN}"
        + (f": {', '.join(sources)}" if sources else ""),
        f"- cross-validation scores: {_code(json.dumps(scores)) if scores else UNKNOWN}",
        f"- registered model file: {_code(model.file)} ({_prose(model.format)}, SHA-256 {_code(model.sha256)})",
    ]
    return "\n".join(lines)


def _verifying(names: list[str]) -> str:
    listed = " ".join(_prose(n) for n in names if n != MANIFEST)
    return "\n".join(
        [
            "## Verifying the files with standard tools",
            "",
            f"`{MANIFEST}` holds the SHA-256 of every other file (`files`: name → digest); from the folder of the "
            "files (`v1/content/` of the bundle's object):",
            "",
            "```sh",
            f"jq -r '.files | to_entries[] | \"\\(.value)  \\(.key)\"' {MANIFEST} | sha256sum -c -",
            "```",
            "",
            "or, without jq:",
            "",
            *_block("python", manifest_check_code()),
            "",
            "As an OCFL 1.1 object, the bundle's `inventory.json` lists the SHA-512 of each "
            "`v1/content/<file>`; any OCFL tool checks it, e.g. `ocfl-validate.py <bundle>` (ocfl-py), or by "
            "hand from the object's root:",
            "",
            "```sh",
            "jq -r '.manifest | to_entries[] | .key as $d | .value[] | \"\\($d)  \\(.)\"' inventory.json "
            "| sha512sum -c -",
            "```",
            "",
            f"Files: {listed}.",
        ]
    )


def manifest_check_code() -> list[str]:
    """Lines of Python that check every file of the bundle against ``manifest.json``, from its folder."""
    return [
        "import hashlib, json",
        "",
        f'files = json.load(open({_literal(MANIFEST)}))["files"]',
        'differ = [n for n, d in files.items() if hashlib.sha256(open(n, "rb").read()).hexdigest() != d]',
        'print(f"{len(files)} files match the manifest" if not differ else f"differ: {differ}")',
    ]


def scoring_snippet(file: str, conversion: Conversion, metadata: Metadata | None) -> str | None:
    """How to score one archived artifact outside Parity, in Python, from the bundle's folder.

    Parameters
    ----------
    file : str
        The artifact's file name in the bundle.
    conversion : Conversion
        Its conversion, as the report records it.
    metadata : Metadata or None

    Returns
    -------
    str or None
        A markdown section with one code block per runtime (None for a format without snippets).
    """
    if conversion.format == "pmml":
        return _pmml_snippets(file)
    if conversion.format == "onnx" and isinstance(conversion.details, OnnxDetails):
        return _onnx_snippet(file, conversion.details)
    return None


def _pmml_snippets(file: str) -> str:
    return "\n".join(
        [
            f"## Scoring {_code(file)}",
            "",
            "With pypmml (PMML4S, needs Java):",
            "",
            *_block("python", pypmml_code(file)),
            "",
            "With JPMML (the jpmml_evaluator package, needs Java):",
            "",
            *_block("python", jpmml_code(file)),
        ]
    )


def pypmml_code(file: str) -> list[str]:
    """Lines of Python that score ``file`` with pypmml on the reference rows."""
    return [
        "import pandas as pd",
        "from pypmml import Model",
        "",
        f"df = pd.read_parquet({_literal(REFERENCE)})",
        f"print(Model.load({_literal(file)}).predict(df).head())",
    ]


def jpmml_code(file: str) -> list[str]:
    """Lines of Python that score ``file`` with jpmml_evaluator on the reference rows."""
    return [
        "import pandas as pd",
        "from jpmml_evaluator import make_evaluator",
        "",
        f"df = pd.read_parquet({_literal(REFERENCE)})",
        f"evaluator = make_evaluator({_literal(file)}).verify()",
        "print(evaluator.evaluateAll(df).head())",
    ]


def onnx_code(file: str, details: OnnxDetails) -> list[str]:
    """Lines of Python that score ``file`` with onnxruntime on the reference rows, feeding each graph input
    the columns and dtype the conversion recorded."""
    feeds = []
    for entry in details.inputs:
        # names and columns as JSON string literals (ASCII, escaped: valid Python), never pasted into code
        name, columns = _literal(entry.name), json.dumps(entry.columns)
        if entry.dtype == "string":
            feeds.append(f'    {name}: df[{columns}].fillna("").astype(str).to_numpy(object),')
        else:
            feeds.append(f"    {name}: df[{columns}].to_numpy(np.float64).astype({_literal(entry.dtype)}),")
    return [
        "import numpy as np",
        "import onnxruntime as ort",
        "import pandas as pd",
        "",
        f"df = pd.read_parquet({_literal(REFERENCE)})",
        f'session = ort.InferenceSession({_literal(file)}, providers=["CPUExecutionProvider"])',
        "feeds = {",
        *feeds,
        "}",
        "names = [o.name for o in session.get_outputs()]",
        "for name, values in zip(names, session.run(None, feeds)):",
        "    print(name, values[:5])",
    ]


def _onnx_snippet(file: str, details: OnnxDetails) -> str:
    outputs = ", ".join(f"{_code(name)} ({_prose(role)})" for name, role in details.outputs.items())
    return "\n".join(
        [
            f"## Scoring {_code(file)}",
            "",
            f"With onnxruntime; outputs: {outputs or UNKNOWN}.",
            "",
            *_block("python", onnx_code(file, details)),
        ]
    )
