"""``report.html``: one self-contained page per bundle: verdicts, plots of the outputs, provenance.

Nothing in it is fetched: the style is inline, the plots are inline SVG drawn by matplotlib (Agg's SVG
backend, through its object API: file_model runs in worker threads, where pyplot's global state is unsafe),
and one inline script writes into the page how many plots the browser rendered with a non-zero size (a test
reads it back with headless Chromium). :func:`render_report` draws the page from a bundle's files alone.
"""

from __future__ import annotations

import html
import io
import json
import os
from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from parity.core.records import Check, Metadata, Report
from parity.validators import outputs as outputs_table
from parity.validators.report import fmt_float

from .contents import BundleFiles, folder_files, read, report_and_metadata
from .names import OUTPUTS

#: Points drawn per runtime and target in a scatter plot; above it a seeded sample is drawn (the plot says so).
MAX_POINTS = 2000
#: The seed of that sample, so that a report drawn again from the bundle is the same.
SAMPLE_SEED = 0
#: The resolution of the scatter plots' points, drawn as one embedded image (a vector point costs ~100 bytes).
RASTER_DPI = 100
#: The salt of the SVG elements' ids: fixed, so that a report drawn again from its bundle is byte for byte the same.
SVG_SALT = "parity"
#: The id of the element the page's script writes the rendered plots' count into.
RENDERED_ID = "plots-rendered"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 80em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; }
th { background: #f2f2f2; }
.pass { background: #e6f4ea; } .fail, .error { background: #fce8e6; }
.unavailable, .unsupported { background: #fef7e0; } .not-covered { background: #f1f3f4; }
.outcome { display: inline-block; padding: 0.1em 0.6em; border-radius: 0.3em; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
figure.plot { margin: 0; border: 1px solid #ddd; padding: 0.5em; }
figure.plot svg { width: 420px; height: auto; display: block; }
"""

# counts the plots that the browser laid out with a size; written into the page for a headless check
_SCRIPT = f"""
window.addEventListener("load", function () {{
  var plots = document.querySelectorAll("figure.plot svg");
  var shown = 0;
  plots.forEach(function (p) {{ var r = p.getBoundingClientRect(); if (r.width > 0 && r.height > 0) shown++; }});
  var out = document.getElementById("{RENDERED_ID}");
  out.setAttribute("data-rendered", String(shown));
  out.textContent = shown + " of " + plots.length + " plots rendered";
}});
"""


def render_report(folder: str | os.PathLike[str]) -> str:
    """The HTML report of a bundle folder (or a folder of a bundle's content), from its files alone.

    Parameters
    ----------
    folder : path-like

    Returns
    -------
    str

    Raises
    ------
    FileNotFoundError, RecordError, RecordSchemaError
        As :func:`render_html`.
    """
    return render_html(folder_files(folder))


def render_html(files: BundleFiles) -> str:
    """The HTML report of a bundle, from its files by name.

    Parameters
    ----------
    files : mapping of str to Path or bytes
        ``report.json`` at least; ``metadata.json`` and ``outputs.parquet`` when there (a bundle written
        before issue 12 has no outputs table: its page says so instead of plotting).

    Returns
    -------
    str
        A complete HTML document, fetching nothing.

    Raises
    ------
    FileNotFoundError
        No ``report.json`` among ``files``.
    RecordError, RecordSchemaError
        ``report.json`` or ``metadata.json`` is damaged or of a schema this version does not read.
    """
    report, metadata = report_and_metadata(files)
    table = read(files, OUTPUTS)
    frame = None if table is None else outputs_table.read_parquet(table)
    title = f"{report.name} v{report.version}: {report.outcome}"
    body = [
        f"<h1>{_e(report.name)} v{report.version} "
        f'<span class="outcome {_css(str(report.outcome))}">{_e(str(report.outcome).upper())}</span></h1>',
        _summary(report, metadata),
        "<h2>Verdicts</h2>",
        _verdict_table(report.checks),
        "<h2>Outputs: original vs converted</h2>",
        _plots(frame),
        "<h2>Provenance</h2>",
        _provenance(metadata),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(body)
        + f'\n<p id="{RENDERED_ID}" data-rendered="none">plots not counted (scripts off)</p>'
        + f"\n<script>{_SCRIPT}</script>\n</body></html>\n"
    )


def _e(text: object) -> str:
    return html.escape(str(text))


def _css(verdict: str) -> str:
    return verdict.replace(" ", "-")


def _summary(report: Report, metadata: Metadata | None) -> str:
    tools = metadata.tools if metadata else {}
    items = {
        "estimator": report.estimator,
        "registered at": metadata.registered_at if metadata else "",
        "validated at": report.validated_at,
        "scikit-learn (validating)": tools.get("scikit-learn") or "",
        "scikit-learn (the model says)": report.original_sklearn_version or "",
        "reference rows": report.reference_rows,
    }
    return _definition_table(items)


def _definition_table(items: Mapping[str, object]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in items.items())
    return f"<table>{rows}</table>"


def _verdict_table(checks: list[Check]) -> str:
    head = [
        "format",
        "runtime",
        "target",
        "output",
        "vs",
        "verdict",
        "rows",
        "tolerance",
        "max_abs",
        "max_rel",
        "explanation",
    ]
    rows = [
        f'<tr class="{_css(str(c.verdict))}">'
        + "".join(
            f"<td>{_e(v)}</td>"
            for v in (
                c.format,
                c.runtime,
                c.target,
                c.output,
                c.against,
                f"{c.verdict}" + ("" if c.required else " (not blocking)"),
                c.rows,
                c.tolerance,
                fmt_float(c.max_abs),
                fmt_float(c.max_rel),
                c.explanation,
            )
        )
        + "</tr>"
        for c in checks
    ]
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f'<table class="verdicts"><tr>{header}</tr>{"".join(rows)}</table>'


def _plots(frame: pd.DataFrame | None) -> str:
    if frame is None:
        return "<p>This bundle holds no per-row outputs (outputs.parquet): it was written before they were kept.</p>"
    if frame.empty:
        return "<p>No runtime gave outputs to compare.</p>"
    sections = []
    for (fmt, output), lines in frame.groupby(["format", "output"], sort=False):
        runs = list(_by_run(lines))
        sections.append(
            f"<h3>{_e(fmt)}: {_e(output)}</h3>"
            f'<div class="plots">{_figure(_scatter(fmt, output, runs))}{_figure(_histogram(fmt, output, runs))}</div>'
        )
    return "\n".join(sections)


def _by_run(lines: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    for (runtime, target), run in lines.groupby(["runtime", "target"], sort=False):
        yield f"{runtime} on {target}", run


def _figure(svg: str) -> str:
    return f'<figure class="plot">{svg}</figure>'


def _numeric(run: pd.DataFrame) -> bool:
    return bool(run["original_text"].isna().all())


def _sampled(run: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    if len(run) <= MAX_POINTS:
        return run, ""
    return run.sample(MAX_POINTS, random_state=SAMPLE_SEED), f" ({MAX_POINTS} of {len(run)} points shown)"


def _scatter(fmt: str, output: str, runs: list[tuple[str, pd.DataFrame]]) -> str:
    figure = Figure(figsize=(5.2, 4.2), dpi=RASTER_DPI)
    axes = figure.add_subplot()
    notes = []
    for label, run in runs:
        shown, note = _sampled(run)
        notes.append(note)
        if _numeric(shown):
            x, y = shown["original"].to_numpy(), shown["converted"].to_numpy()
        else:
            codes = {v: i for i, v in enumerate(sorted(set(shown["original_text"].dropna())))}
            x = shown["original_text"].map(codes).to_numpy(dtype=float)
            y = shown["converted_text"].map(lambda v, c=codes: c.get(v, -1)).to_numpy(dtype=float)
        axes.scatter(x, y, s=8, alpha=0.6, label=label, rasterized=True)  # points as one image
    axes.axline((0, 0), slope=1, color="grey", linewidth=0.8, linestyle="--")
    axes.set_xlabel(f"original (scikit-learn) {output}")
    axes.set_ylabel(f"converted ({fmt}) {output}")
    sampled = next((n for n in notes if n), "")
    axes.set_title(f"{fmt} {output}: original vs converted{sampled}", fontsize=9)
    axes.legend(fontsize=7)
    return _svg(figure)


def _histogram(fmt: str, output: str, runs: list[tuple[str, pd.DataFrame]]) -> str:
    figure = Figure(figsize=(5.2, 4.2), dpi=RASTER_DPI)
    axes = figure.add_subplot()
    numeric = all(_numeric(run) for _, run in runs)
    if numeric:
        _deviation_bars(axes, runs)
        axes.set_xlabel("|converted - original| (log scale; exact matches in their own bar)")
    else:
        labels = [label for label, _ in runs]
        differ = [int((run["original_text"] != run["converted_text"]).sum()) for _, run in runs]
        axes.bar(range(len(runs)), differ)
        axes.set_xticks(range(len(runs)), labels, rotation=20, fontsize=7)
        axes.set_xlabel("runtime and target")
    axes.set_ylabel("values" if numeric else "labels that differ")
    axes.set_title(f"{fmt} {output}: deviations per runtime and target", fontsize=9)
    return _svg(figure)


def _deviation_bars(axes, runs: list[tuple[str, pd.DataFrame]]) -> None:
    """Overlaid histograms of log10 of each value's absolute deviation; exact matches in a bar of their own."""
    exact_at = -17.0
    for label, run in runs:
        deviation = np.abs(run["converted"].to_numpy() - run["original"].to_numpy())
        both_nan = run["converted"].isna().to_numpy() & run["original"].isna().to_numpy()
        deviation = np.where(both_nan, 0.0, deviation)
        with np.errstate(divide="ignore"):
            logged = np.where(deviation > 0, np.log10(deviation), exact_at)
        logged = np.where(np.isnan(logged), 1.0, logged)  # one side NaN: far off, at the right
        exact = int((deviation == 0).sum())
        axes.hist(
            np.clip(logged, exact_at, 2.0),
            bins=np.arange(exact_at - 0.5, 2.5, 1.0),  # one bar per decade
            histtype="step",
            linewidth=1.5,
            label=f"{label} ({exact} exact of {len(run)})",
        )
    ticks = [exact_at, -15, -12, -9, -6, -3, 0]
    axes.set_xticks(ticks, ["exact", *(f"1e{t}" for t in ticks[1:])], fontsize=7)
    axes.legend(fontsize=7)


def _svg(figure: Figure) -> str:
    """The figure as an inline ``<svg>`` element (no XML prolog, no date: drawn again, it is the same)."""
    figure.tight_layout()
    buffer = io.StringIO()
    # ids made from the content (not a random salt); text as text, not as glyph paths
    with rc_context({"svg.hashsalt": SVG_SALT, "svg.fonttype": "none"}):
        FigureCanvasSVG(figure).print_svg(buffer, metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _provenance(metadata: Metadata | None) -> str:
    if metadata is None:
        return "<p>This bundle has no metadata.json.</p>"
    provenance = metadata.provenance
    data = provenance.training_data
    items = {
        "training data": data.uri or "not recorded",
        "training snapshot SHA-256": data.snapshot_sha256 or "not recorded",
        "source": provenance.source.origin,
        "source files": ", ".join(f"{f.origin} ({f.sha256[:12]}…)" for f in provenance.source.files)
        or "none",
        "cross-validation scores": json.dumps(provenance.cv_scores)
        if provenance.cv_scores
        else "not recorded",
        "registered with scikit-learn": provenance.environment.scikit_learn,
        "model SHA-256": metadata.registered_model.sha256,
        "tools": ", ".join(f"{k} {v}" for k, v in sorted(metadata.tools.items())),
    }
    return _definition_table(items)


__all__ = ["MAX_POINTS", "RENDERED_ID", "render_html", "render_report"]
