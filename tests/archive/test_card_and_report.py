"""What a bundle says to a person: its outputs table, card.md (whose snippets run) and report.html (checked
in headless Chromium), for real models validated and filed by the real pipeline."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from parity.archive import MANIFEST, Archive, file_model
from parity.archive.card import render_card
from parity.archive.contents import folder_files
from parity.archive.html_report import MAX_POINTS, RENDERED_ID, render_html, render_report
from parity.archive.names import CARD, HTML_REPORT, OUTPUTS
from parity.cli.demo import DEMO_MODELS
from parity.core.defaults import host_platform
from parity.core.records import Check, Conversion, Manifest, Report, Verdict
from parity.registry import FileRegistry, RegisteredModel
from parity.validators import formats
from parity.validators import outputs as outputs_table
from parity.validators.outputs import OutputLog
from parity.validators.targets.table import Target
from parity.validators.validate import ModelContext, remedied, validate_conversion

HOST_ONLY = {"host": Target("host", host_platform(), "process")}
FIXTURE_BUNDLE = Path(__file__).parents[1] / "fixtures" / "schema-1" / "archive" / "iris-tree" / "1"
#: Cells whose rows are compared with scikit-learn one by one (not the coverage, verification or
#: conversion rows, nor a runtime that did not run).
COMPARED = ("label", "probability", "score", "value", "distance")
CHROMIUM = shutil.which("chromium")


def _iris_named():
    """Iris with its species' names as labels: a text output."""
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True)
    y = pd.Series(np.asarray(data.target_names)[data.target], name="species")
    return LogisticRegression(max_iter=500), data.data, y


def _wine_mixed():
    """The demo's pipeline: string categories fed to ONNX string inputs, numeric columns with NaNs."""
    model, X, y, _ = DEMO_MODELS["wine-mixed-types"]()
    return model, X, y


MODELS = {"iris-names": _iris_named, "wine-mixed": _wine_mixed}


@dataclass(frozen=True)
class Validated:
    """One model validated by the real pipeline, and where it was filed."""

    model: RegisteredModel
    conversions: dict[str, Conversion]
    checks: list[Check]
    log: OutputLog
    path: Path


@pytest.fixture(scope="module", params=sorted(MODELS))
def validated(request, tmp_path_factory) -> Validated:
    """One model registered with provenance, converted, validated (with its outputs kept) and filed."""
    name = request.param
    root = tmp_path_factory.mktemp(name)
    model, X, y = MODELS[name]()
    model.fit(X, y)
    snapshot = root / "train.csv"
    X.assign(y=y).to_csv(snapshot, index=False)
    registry = FileRegistry(root / "registry")
    ref = registry.register(
        model,
        X,
        name,
        training_data_uri=f"s3://training/{name}.csv",
        training_data_snapshot=snapshot,
        cv_scores={"accuracy": [0.9, 0.95]},
    )
    registered = registry.open(ref)
    context = ModelContext(registered)
    log = OutputLog()
    conversions, checks = {}, []
    for fmt in formats.FORMATS:
        conversion = formats.convert(fmt, registered.estimator, registered.reference, root / fmt)
        found = validate_conversion(context, conversion, targets=HOST_ONLY, log=log)
        made, found = remedied(context, conversion, found, root / f"{fmt}-remedy", HOST_ONLY, log=log)
        conversions.update(made)
        checks.extend(found)
    filed = file_model(Archive(root / "archive"), registered, conversions, checks, log)
    assert filed.outcome == "passed", [c.cell for c in filed.report.failing]
    return Validated(registered, conversions, checks, log, Path(filed.content))


@pytest.fixture
def bundle(validated: Validated) -> Path:
    return validated.path


def _compared(report: Report) -> list[Check]:
    return [c for c in report.checks if c.kind in COMPARED and c.against == "scikit-learn" and c.rows]


@pytest.mark.slow
def test_a_bundle_holds_its_outputs_card_and_report_under_its_manifest(bundle):
    names = {p.name for p in bundle.iterdir()}
    assert {OUTPUTS, CARD, HTML_REPORT} <= names
    manifest = Manifest.read(bundle / MANIFEST)
    assert {OUTPUTS, CARD, HTML_REPORT} <= set(manifest.files)
    assert Archive.check(bundle) == []


@pytest.mark.slow
def test_the_outputs_table_holds_what_each_check_summarised(bundle):
    report = Report.read(bundle / "report.json")
    table = outputs_table.read_parquet(str(bundle / OUTPUTS))
    compared = _compared(report)
    assert compared
    for check in compared:
        lines = table[
            (table["format"] == check.format)
            & (table["runtime"] == check.runtime)
            & (table["target"] == check.target)
            & (table["output"] == check.output)
        ]
        assert lines["row"].nunique() == check.rows, check.cell
        if check.max_abs is not None:
            deviation = (lines["converted"] - lines["original"]).abs().max()
            assert deviation == pytest.approx(check.max_abs, rel=1e-9, abs=1e-300), check.cell
        else:  # labels compared exactly: as many rows differ as the check counted outside
            numeric = lines["original_text"].isna()
            differ = (lines["original"] != lines["converted"]) & numeric
            differ |= (lines["original_text"] != lines["converted_text"]) & ~numeric
            assert int(differ.sum()) == check.n_outside, check.cell


@pytest.mark.slow
def test_iris_species_are_kept_as_text(bundle):
    table = outputs_table.read_parquet(str(bundle / OUTPUTS))
    labels = table[table["output"] == "predict"]
    if bundle.parents[2].name == "iris-names":
        assert set(labels["original_text"]) == {"setosa", "versicolor", "virginica"}
        assert labels["original"].isna().all()
    else:
        assert labels["original_text"].isna().all()


@pytest.mark.slow
def test_the_report_is_drawn_again_from_the_bundle_alone(bundle):
    assert render_report(bundle) == (bundle / HTML_REPORT).read_text()


class _Fetches(HTMLParser):
    """Every URL-bearing attribute and every tag that could load something."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href", "action", "data")]


@pytest.mark.slow
def test_the_report_fetches_nothing(bundle):
    page = (bundle / HTML_REPORT).read_text()
    parsed = _Fetches()
    parsed.feed(page)
    assert parsed.urls, "the plots' images and references are inline"
    assert all(u.startswith(("#", "data:")) for u in parsed.urls), sorted(set(parsed.urls))
    assert not {"link", "iframe", "object", "embed"} & set(parsed.tags)
    assert "@import" not in page and "url(http" not in page
    assert parsed.tags.count("script") == 1 and "<script>" in page  # the one inline script, no src


def _snippets(card: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card, re.S)


@pytest.mark.slow
def test_the_cards_snippets_run_from_the_bundle_as_printed(bundle):
    card = (bundle / CARD).read_text()
    snippets = _snippets(card)
    assert len(snippets) == 4  # the manifest check, onnxruntime, pypmml, jpmml_evaluator
    assert any(
        "from pypmml import Model" in s and 'Model.load("model.pmml").predict(df)' in s for s in snippets
    )
    for code in snippets:
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=bundle, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{code}\n{done.stderr[-2000:]}"
        assert done.stdout.strip(), code


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed (apt-get install jq)")
@pytest.mark.slow
def test_the_cards_manifest_check_with_standard_tools_passes_and_finds_a_changed_file(bundle, tmp_path):
    (command,) = [
        s for s in re.findall(r"```sh\n(.*?)```", (bundle / CARD).read_text(), re.S) if MANIFEST in s
    ]
    done = subprocess.run(["sh", "-c", command], cwd=bundle, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"{CARD}: OK" in done.stdout and f"{OUTPUTS}: OK" in done.stdout
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    (copy / OUTPUTS).write_bytes(b"changed")
    done = subprocess.run(["sh", "-c", command], cwd=copy, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and f"{OUTPUTS}: FAILED" in done.stdout
    # the OCFL route: the inventory's SHA-512 of every content file, from the object's root
    (inventory,) = [
        s for s in re.findall(r"```sh\n(.*?)```", (bundle / CARD).read_text(), re.S) if "inventory.json" in s
    ]
    root = bundle.parents[1]
    done = subprocess.run(["sh", "-c", inventory], cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"v1/content/{CARD}: OK" in done.stdout and f"v1/content/{MANIFEST}: OK" in done.stdout


@pytest.mark.slow
def test_the_card_says_what_was_proven_where_and_how_to_check_the_files(bundle):
    card = (bundle / CARD).read_text()
    report = Report.read(bundle / "report.json")
    name = bundle.parents[2].name
    assert card.startswith(f"# {name} v1: PASSED")
    for check in _compared(report):
        assert f"| {check.format} | {check.runtime} | {check.target} | {check.output} |" in card
    for tolerance in {c.tolerance for c in report.checks if c.tolerance}:
        assert tolerance in card
    assert f"s3://training/{name}.csv" in card
    snapshot = report_metadata_snapshot(bundle)
    assert snapshot and f"`{snapshot}`" in card
    assert '"accuracy": [0.9, 0.95]' in card
    assert "sha256sum -c" in card and "sha512sum -c" in card and "inventory.json" in card
    inputs = report.conversions["onnx"].details.inputs
    assert all(f'"{entry.name}"' in card for entry in inputs)


def report_metadata_snapshot(bundle: Path) -> str | None:
    from parity.core.records import Metadata

    return Metadata.read(bundle / "metadata.json").provenance.training_data.snapshot_sha256


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: `make chromium` installs it")
def test_headless_chromium_shows_the_verdicts_and_renders_every_plot(bundle, tmp_path):
    page = bundle / HTML_REPORT
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [*command, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    plots = page.read_text().count('<figure class="plot">')
    report = Report.read(bundle / "report.json")
    compared = {(c.format, c.output) for c in _compared(report)}
    assert plots == 2 * len(compared) > 0  # a scatter plot and a histogram per format and output
    rendered = re.search(rf'id="{RENDERED_ID}" data-rendered="(\w+)"', dom)
    assert rendered and rendered.group(1) == str(plots), rendered and rendered.group(0)
    text = re.sub(r"<[^>]+>", " ", dom)
    assert "PASSED" in text
    for check in report.checks:
        assert f"<td>{check.runtime}</td>" in dom and f"<td>{check.verdict}" in dom
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*command, f"--screenshot={shot}", "--window-size=1200,3000", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert _distinct_colours(shot) > 16, "the screenshot is blank"


def _distinct_colours(png: Path) -> int:
    from matplotlib.image import imread

    pixels = imread(png)
    return len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0))


@pytest.mark.slow
def test_a_rejected_attempt_has_its_outputs_card_and_report_too(validated, tmp_path):
    failing = validated.checks[0].model_copy(
        update={"verdict": Verdict.FAIL, "explanation": "3 rows outside the band", "required": True}
    )
    shelf = Archive(tmp_path / "archive")
    filed = file_model(
        shelf, validated.model, validated.conversions, [*validated.checks, failing], validated.log
    )
    assert (
        filed.outcome == "failed"
        and Path(filed.path).parent == shelf.root / "_rejected" / filed.report.name / "1"
    )
    content = Path(filed.content)
    assert {OUTPUTS, CARD, HTML_REPORT} <= {p.name for p in content.iterdir()}
    assert (content / CARD).read_text().startswith(f"# {filed.report.name} v1: FAILED")
    page = (content / HTML_REPORT).read_text()
    assert "3 rows outside the band" in page and '<tr class="fail">' in page


def test_a_bundle_written_before_outputs_were_kept_still_renders():
    files = folder_files(FIXTURE_BUNDLE)
    assert OUTPUTS not in files and CARD not in files
    page = render_html(files)
    assert "holds no per-row outputs" in page
    assert "<td>onnxruntime</td>" in page
    card = render_card(files)
    assert card.startswith("# iris-tree v1: PASSED")
    assert Archive(FIXTURE_BUNDLE.parents[1]).check(FIXTURE_BUNDLE) == []


def test_a_folder_without_a_report_is_refused_with_what_it_holds(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"no report\.json among notes\.txt: not a bundle"):
        render_report(tmp_path)


def test_a_scatter_plot_of_many_rows_is_sampled_and_says_so():
    from parity.archive.html_report import _scatter

    rows = MAX_POINTS * 2
    values = np.linspace(0.0, 1.0, rows)
    lines = outputs_table.output_lines(
        ("onnx", "onnxruntime", "host", "predict"), np.arange(rows), values, values
    )
    svg = _scatter("onnx", "predict", [("onnxruntime on host", lines)])
    assert f"{MAX_POINTS} of {rows} points shown" in svg


# -- hostile names: a name is a string literal in a snippet, one piece of text in prose ---------------------
#: The review's column name (closes the string literal and calls os.system), and one that tries to close the
#: code fence with a newline and backticks and run a line of its own.
HOSTILE_INPUTS = (
    'c": __import__("pathlib").Path("CANARY").write_text("ran"), "y',
    "d\n```\nimport pathlib; pathlib.Path('CANARY2').write_text('ran')\n```\n`",
)


def _hostile_onnx(folder: Path) -> None:
    """An ONNX graph whose string inputs carry the hostile names (each passed through by Identity), and
    reference rows with those column names."""
    import onnx
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(n, TensorProto.STRING, [None, 1]) for n in HOSTILE_INPUTS]
    outputs = [helper.make_tensor_value_info(f"out{i}", TensorProto.STRING, [None, 1]) for i in range(2)]
    nodes = [helper.make_node("Identity", [n], [f"out{i}"]) for i, n in enumerate(HOSTILE_INPUTS)]
    graph = helper.make_graph(nodes, "hostile", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "model.onnx")
    pd.DataFrame({n: ["a", "b"] for n in HOSTILE_INPUTS}).to_parquet(folder / "reference.parquet")


def _hostile_report() -> Report:
    from parity.archive.contents import report_and_metadata

    report, _ = report_and_metadata(folder_files(FIXTURE_BUNDLE))
    onnx_conversion = report.conversions["onnx"]
    details = onnx_conversion.details.model_copy(
        update={
            "inputs": [
                onnx_conversion.details.inputs[0].model_copy(
                    update={"name": n, "columns": [n], "dtype": "string"}
                )
                for n in HOSTILE_INPUTS
            ],
            "outputs": {"out0": "predict", "out1\n```\n# heading": "predict`|"},
        }
    )
    return report.model_copy(
        update={
            "estimator": "Tree`\n```\n# injected heading\n<script>",
            "conversions": {
                **report.conversions,
                "onnx": onnx_conversion.model_copy(update={"details": details}),
            },
        }
    )


def _fenced_blocks(card: str) -> list[tuple[str, list[str]]]:
    """The fenced code blocks of a markdown text as CommonMark reads them: (info, lines)."""
    blocks, fence, info, lines = [], None, "", []
    for line in card.split("\n"):
        if fence is None:
            if m := re.fullmatch(r"(`{3,})([^`]*)", line):
                fence, info, lines = m.group(1), m.group(2), []
        elif re.fullmatch(rf"{fence}`*\s*", line):
            blocks.append((info, lines))
            fence = None
        else:
            lines.append(line)
    assert fence is None, "a code fence is left open"
    return blocks


def test_a_hostile_onnx_input_name_is_a_literal_in_the_snippet_and_runs_nothing(tmp_path):
    from parity.archive.card import onnx_code, scoring_snippet

    _hostile_onnx(tmp_path)
    report = _hostile_report()
    section = scoring_snippet("model.onnx", report.conversions["onnx"], None)
    ((info, code),) = _fenced_blocks(section)
    assert info == "python" and code == onnx_code("model.onnx", report.conversions["onnx"].details)
    outside = section.split("\n" + "\n".join(code) + "\n")[0]  # the prose before the block
    assert not any(line.startswith("#") for line in outside.split("\n")[1:]), outside  # no injected heading
    done = subprocess.run(
        [sys.executable, "-c", "\n".join(code)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "out0 [['a']\n ['b']]" in done.stdout  # it still scores, feeding each input its column
    assert not (tmp_path / "CANARY").exists() and not (tmp_path / "CANARY2").exists()


def test_hostile_prose_fields_stay_one_piece_of_text_in_the_card():
    files = folder_files(FIXTURE_BUNDLE)
    files["report.json"] = _hostile_report().to_bytes()
    card = render_card(files)
    blocks = _fenced_blocks(card)
    # the manifest check, onnxruntime, pypmml, jpmml_evaluator, and the two sh blocks: nothing more
    assert [info for info, _ in blocks] == ["sh", "python", "sh", "python", "python", "python"]
    headings = [line for line in card.split("\n") if line.startswith("#")]
    assert not any("injected" in h or h == "# heading" for h in headings), headings
    # in a code span, fenced by more backticks than the value holds: written as is, the newlines visible
    (estimator,) = [line for line in card.split("\n") if line.startswith("- estimator: ")]
    assert estimator.startswith(r"- estimator: ````Tree`\n```\n# injected heading\n<script>```` (")
    # in prose, markup escaped: a backtick and a pipe do not open a code span or a table cell
    assert r"(predict\`\|)" in card
