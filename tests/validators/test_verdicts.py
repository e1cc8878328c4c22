"""Verdicts that can be trusted: roles, every output role, coverage, precision read from the artifact, ties.

Each false alarm and each silent gap of issue 8 has a test here, on a real estimator converted for real.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import load_breast_cancer
from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
from sklearn.ensemble import (
    IsolationForest,
    RandomForestClassifier,
    RandomForestRegressor,
    StackingClassifier,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC

from parity.core.defaults import host_platform
from parity.core.errors import InvalidInputError
from parity.core.records import Outcome, Role, Stage, Verdict, decide_outcome
from parity.core.tolerances import OutputKind, arithmetic_bound, deviation_band
from parity.registry import ModelRef, RegisteredModel
from parity.registry.predictions import reference_predictions
from parity.validators import default_roles, formats, resolve_roles
from parity.validators.targets.table import Target, load_roles, load_targets
from parity.validators.validate import Cell, ModelContext, _check_output, validate_conversion

HOST_ONLY = {"host": Target("host", host_platform(), "process")}


@pytest.fixture(scope="module")
def cancer() -> tuple[pd.DataFrame, pd.Series]:
    """Four columns of breast cancer: small, real, two classes."""
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X.iloc[:, [0, 1, 4, 8]], y


def _context(estimator: object, X: pd.DataFrame, roles: dict[str, str] | None = None) -> ModelContext:
    model = RegisteredModel(
        ModelRef("m", 1), Path("."), {}, estimator, X, reference_predictions(estimator, X)
    )
    return ModelContext(model, tolerances={}, roles=roles or {})


def _validated(estimator, X, fmt: str, out: Path, roles=None, installation=None):
    context = _context(estimator, X, roles)
    conversion = formats.convert(fmt, estimator, X, out)
    assert conversion.ok, conversion.message
    checks = validate_conversion(context, conversion, targets=HOST_ONLY, roles=installation or {})
    return context, conversion, checks


def _by_cell(checks):
    return {(c.runtime, c.output, c.kind == "coverage"): c for c in checks}


# --- 1. roles ------------------------------------------------------------------------------------------
def test_default_roles_deploy_the_main_engines_and_witness_the_others():
    roles = default_roles()
    assert {n for n, r in roles.items() if r is Role.DEPLOY} == {"onnxruntime", "jpmml_evaluator", "jpmml"}
    assert {n for n, r in roles.items() if r is Role.WITNESS} == {"onnx-reference", "pypmml"}


def test_a_role_for_an_unknown_runtime_or_an_unknown_role_is_refused():
    with pytest.raises(
        InvalidInputError, match=r"role for 'pypml': no runtime of that name; runtimes: .*pypmml"
    ):
        resolve_roles({"pypml": "deploy"})
    with pytest.raises(InvalidInputError, match=r"role for 'pypmml': 'judge' is not deploy or witness"):
        resolve_roles({"pypmml": "judge"})


def test_the_targets_file_gives_installation_roles_and_target_roles(tmp_path: Path):
    path = tmp_path / "targets.toml"
    here = host_platform()
    path.write_text(
        '[roles]\npypmml = "deploy"\n\n'
        f'[[target]]\nname = "here"\nplatform = "{here}"\nreach = "process"\nrole = "deploy"\n\n'
        f'[[target]]\nname = "also"\nplatform = "{here}"\nreach = "process"\nrole = "witness"\nthreads = 2\n'
    )
    assert load_roles(path) == {"pypmml": Role.DEPLOY}
    table = load_targets(path)
    assert (table["here"].required, table["also"].required) == (True, False)
    assert table["also"].role is Role.WITNESS


@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param(
            '[roles]\npypmml = "judge"\n', r"\[roles\] pypmml: role 'judge' is not", id="role-value"
        ),
        pytest.param(
            '[[target]]\nname = "x"\nplatform = "linux/x86_64"\nreach = "process"\nrole = "deploy"\nrequired = true\n',
            "give role or required, not both",
            id="role-and-required",
        ),
    ],
)
def test_bad_roles_in_the_targets_file_are_refused(tmp_path: Path, text: str, words: str):
    path = tmp_path / "targets.toml"
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=words):
        load_roles(path) if text.startswith("[roles]") else load_targets(path)


@pytest.mark.slow
def test_a_witness_that_is_wrong_never_blocks_and_is_named_unfit(tmp_path: Path):
    """pypmml compares float split predicates in double: a forest regressor's PMML is right in JPMML."""
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = RandomForestRegressor(n_estimators=20, random_state=0).fit(X, y)
    context, conversion, checks = _validated(model, X, "pmml", tmp_path / "a")
    cells = _by_cell(checks)
    pypmml = cells["pypmml", "predict", False]
    assert (pypmml.verdict, pypmml.required, pypmml.role) == (Verdict.FAIL, False, Role.WITNESS)
    assert "jpmml_evaluator and scikit-learn agree" in pypmml.explanation
    assert "Do not serve this PMML with pypmml." in pypmml.explanation
    assert cells["jpmml_evaluator", "predict", False].verdict is Verdict.PASS
    assert decide_outcome(checks, False) is Outcome.PASSED

    # an installation (or a model) that serves this PMML with pypmml makes pypmml's verdict block
    served = validate_conversion(context, conversion, targets=HOST_ONLY, roles={"pypmml": "deploy"})
    assert _by_cell(served)["pypmml", "predict", False].required
    assert decide_outcome(served, False) is Outcome.FAILED
    per_model = _context(model, X, roles={"pypmml": "deploy"})
    assert decide_outcome(validate_conversion(per_model, conversion, targets=HOST_ONLY, roles={}), False) is (
        Outcome.FAILED
    )


# --- 3. every output role of every estimator kind -------------------------------------------------------
ESTIMATORS = {
    "KMeans": (lambda: KMeans(3, random_state=0, n_init=2), False, {"predict", "transform"}),
    "IsolationForest": (
        lambda: IsolationForest(n_estimators=10, random_state=0),
        False,
        {"predict", "decision_function", "score_samples"},
    ),
    "SVC-binary": (lambda: SVC(), True, {"predict", "decision_function"}),
    "QDA": (
        lambda: QuadraticDiscriminantAnalysis(reg_param=0.1),
        True,
        {"predict", "predict_proba", "decision_function"},
    ),
}
#: reference outputs a converter is known not to emit, per (format, estimator)
NOT_EMITTED = {
    ("onnx", "IsolationForest"): {"score_samples"},
    ("pmml", "IsolationForest"): {"score_samples"},
    ("pmml", "SVC-binary"): {"decision_function"},
    ("onnx", "QDA"): {"decision_function"},
}


@pytest.mark.parametrize("fmt", list(formats.FORMATS))
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_every_output_role_is_compared_and_a_correct_conversion_passes(name, fmt, cancer, tmp_path: Path):
    if fmt == "pmml" and name == "QDA":
        pytest.skip("sklearn2pmml does not support QuadraticDiscriminantAnalysis (unsupported, tested below)")
    build, supervised, outputs = ESTIMATORS[name]
    X, y = cancer
    model = build().fit(X, y) if supervised else build().fit(X)
    context, _, checks = _validated(model, X, fmt, tmp_path)
    assert set(context.model.predictions) == outputs
    coverage = {c.output: c for c in checks if c.kind == "coverage"}
    missing = NOT_EMITTED.get((fmt, name), set())
    assert {o for o, c in coverage.items() if c.verdict is Verdict.NOT_COVERED} == missing
    assert {o for o, c in coverage.items() if c.verdict is Verdict.PASS} == outputs - missing
    assert all(c.rows == len(X) for c in coverage.values() if c.verdict is Verdict.PASS)
    blocking = [c for c in checks if c.required and c.verdict not in (Verdict.PASS, Verdict.NOT_COVERED)]
    assert not blocking, [(c.cell, c.explanation) for c in blocking]
    assert decide_outcome(checks, False) is Outcome.PASSED


@pytest.mark.parametrize(
    ("name", "layout"),
    [("SVC-binary", "(N, 2) = [d, -d]"), ("QDA", "(1, N) row"), ("IsolationForest", "(N, 1) column")],
)
def test_a_known_layout_is_named_in_the_row(name, layout, cancer, tmp_path: Path):
    build, supervised, _ = ESTIMATORS[name]
    X, y = cancer
    model = build().fit(X, y) if supervised else build().fit(X)
    _, _, checks = _validated(model, X, "onnx", tmp_path)
    assert any(c.explanation == f"compared as {layout}" and c.verdict is Verdict.PASS for c in checks)


# --- 4. coverage is a verdict ---------------------------------------------------------------------------
def test_an_onnx_artifact_without_its_probabilities_fails_coverage(cancer, tmp_path: Path):
    X, y = cancer
    model = LogisticRegression(max_iter=2000).fit(X, y)
    context = _context(model, X)
    right = formats.convert("onnx", model, X, tmp_path)
    graph = onnx.load(right.path)
    kept = [o for o in graph.graph.output if o.name != "probabilities"]
    del graph.graph.output[:]
    graph.graph.output.extend(kept)
    onnx.save(graph, tmp_path / "lost.onnx")

    checks = validate_conversion(context, right.at(tmp_path / "lost.onnx"), targets=HOST_ONLY, roles={})

    (proba,) = [c for c in checks if c.kind == "coverage" and c.output == "predict_proba"]
    assert proba.verdict is Verdict.FAIL and proba.required and proba.stage is Stage.COVERAGE
    assert (
        proba.explanation
        == "the ONNX artifact has no output probabilities: no deploy runtime gave predict_proba"
    )
    assert decide_outcome(checks, False) is Outcome.FAILED


@pytest.mark.slow
def test_a_pmml_without_its_output_fields_fails_coverage(cancer, tmp_path: Path):
    X, y = cancer
    model = LogisticRegression(max_iter=2000).fit(X, y)
    context = _context(model, X)
    right = formats.convert("pmml", model, X, tmp_path)
    ET.register_namespace("", "http://www.dmg.org/PMML-4_4")
    tree = ET.parse(right.path)
    for parent in tree.iter():
        for child in list(parent):
            if child.tag.endswith("}Output") or child.tag.endswith("}ModelVerification"):
                parent.remove(child)
    tree.write(tmp_path / "lost.pmml")

    checks = validate_conversion(context, right.at(tmp_path / "lost.pmml"), targets=HOST_ONLY, roles={})

    (proba,) = [c for c in checks if c.kind == "coverage" and c.output == "predict_proba"]
    assert proba.verdict is Verdict.FAIL
    assert proba.explanation.startswith("the PMML artifact has no field(s) probability(0), probability(1)")
    assert decide_outcome(checks, False) is Outcome.FAILED


@pytest.mark.slow
def test_an_output_the_pmml_converter_never_emits_is_not_covered_and_says_so(cancer, tmp_path: Path):
    X, y = cancer
    model = KNeighborsClassifier().fit(X, y)
    _, _, checks = _validated(model, X, "pmml", tmp_path)
    (proba,) = [c for c in checks if c.kind == "coverage" and c.output == "predict_proba"]
    assert proba.verdict is Verdict.NOT_COVERED
    assert "KNeighborsClassifier has no field for predict_proba" in proba.explanation
    assert decide_outcome(checks, False) is Outcome.PASSED


# --- 2. precision read from the artifact, per field -----------------------------------------------------
@pytest.mark.slow
def test_float_typed_pmml_inputs_are_read_and_a_stacked_ensemble_passes(cancer, tmp_path: Path):
    """sklearn2pmml declares float inputs for tree ensembles: JPMML is right on float32-rounded inputs."""
    X, y = cancer
    model = StackingClassifier(
        [("rf", RandomForestClassifier(n_estimators=10, random_state=0))],
        final_estimator=LogisticRegression(max_iter=2000),
    ).fit(X, y)
    _, conversion, checks = _validated(model, X, "pmml", tmp_path)
    assert conversion.details.float_inputs == list(X.columns)
    jpmml = [c for c in checks if c.runtime == "jpmml_evaluator" and c.kind != "coverage"]
    assert all(c.verdict is Verdict.PASS for c in jpmml), [(c.cell, c.explanation) for c in jpmml]
    assert decide_outcome(checks, False) is Outcome.PASSED


def test_onnx_float_inputs_are_its_float32_tensors(cancer, tmp_path: Path):
    X, y = cancer
    conversion = formats.convert("onnx", LogisticRegression(max_iter=2000).fit(X, y), X, tmp_path)
    assert formats.FORMATS["onnx"].float_inputs(conversion) == list(X.columns)


# --- 5. explanations that are right ---------------------------------------------------------------------
def test_a_label_flip_on_a_tie_is_explained_and_passes(cancer, tmp_path: Path):
    """An exact 0.5/0.5 tie, summed in float32 to 0.49999994/0.50000006, may flip the label."""
    X, y = cancer
    model = LogisticRegression(max_iter=2000).fit(X, y)
    context = _context(model, X)
    conversion = formats.convert("onnx", model, X, tmp_path)
    tie = 7
    context.model.predictions["predict_proba"][tie] = [0.5, 0.5]  # what a forest's even vote gives
    labels = context.model.predictions["predict"].copy()
    labels[tie] = 1 - labels[tie]
    cell = Cell(conversion, "onnxruntime", "host", Role.DEPLOY, True)
    check = _check_output(context, conversion, cell, "predict", labels, np.arange(len(X)))
    assert check.verdict is Verdict.PASS, check.explanation
    assert "1 label(s) differ on a tie" in check.explanation
    # the same flip where the scores are far apart is a bug, named without hedging
    context.model.predictions["predict_proba"][tie] = [0.9, 0.1]
    check = _check_output(context, conversion, cell, "predict", labels, np.arange(len(X)))
    assert check.verdict is Verdict.FAIL and check.stage is Stage.COMPARE
    assert check.explanation.endswith("a conversion bug.") and "rounding" not in check.explanation
    assert check.band == "big-diff"


def test_the_arithmetic_bound_is_derived_from_the_unit_roundoff():
    assert arithmetic_bound("float32", OutputKind.PROBABILITY) == 4096 * 2.0**-24
    assert arithmetic_bound("float64", OutputKind.VALUE) == 4096 * 2.0**-53
    assert arithmetic_bound("float32", OutputKind.LABEL) == 0.0


@pytest.mark.parametrize(
    ("deviation", "within", "band"),
    [(1e-7, True, "OK"), (3e-7, False, "e<1e-06"), (5e-5, False, "e<0.0001"), (0.5, False, "e<1"),
     (4.0, False, "big-diff"), (None, False, "big-diff")],
)  # fmt: skip
def test_deviation_bands(deviation, within, band):
    assert deviation_band(deviation, within) == band


# --- 9. the double-precision remedy ----------------------------------------------------------------------
def _timestamps() -> tuple[pd.DataFrame, np.ndarray]:
    """A unix timestamp as a feature: float32 keeps it to 128 s, and a linear model's terms dwarf its output."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"t": 1.7e9 + rng.uniform(0, 600, 400), "x": rng.normal(size=400)})
    return X, (X["t"] - 1.7e9) / 600 + 0.3 * X["x"]


@pytest.mark.slow
def test_a_float32_failure_is_remedied_by_the_double_variant_which_is_archived(tmp_path: Path):
    from parity.archive import Archive, file_model
    from parity.archive.audit import audit_bundle
    from parity.registry import FileRegistry
    from parity.validators.validate import remedied

    X, y = _timestamps()
    registry = FileRegistry(tmp_path / "registry")
    model = registry.open(registry.register(LinearRegression().fit(X, y), X, "stamps"))
    context = ModelContext(model, roles={})
    conversion = formats.convert("onnx", model.estimator, X, tmp_path / "onnx")
    checks = validate_conversion(context, conversion, targets=HOST_ONLY, roles={})
    (failed,) = [c for c in checks if c.required and c.verdict is Verdict.FAIL]
    assert "the model sums terms far larger than its outputs" in failed.explanation
    assert "a conversion bug" not in failed.explanation

    conversions, every = remedied(context, conversion, checks, tmp_path / "remedy", HOST_ONLY, {})

    assert conversions["onnx"].superseded_by == "onnx-double"
    assert conversions["onnx-double"].details.precision == "float64"
    assert decide_outcome(every, False) is Outcome.PASSED
    superseded = [c for c in every if c.format == "onnx" and c.verdict is Verdict.FAIL]
    assert superseded and not any(c.required for c in superseded)
    assert all("onnx-double is archived instead" in c.explanation for c in superseded)
    assert any(c.format == "onnx-double" and c.required and c.verdict is Verdict.PASS for c in every)

    archive = Archive(tmp_path / "archive")
    filed = file_model(archive, model, conversions, every)
    assert filed.outcome is Outcome.PASSED
    content = Path(filed.content)
    assert (content / "model-double.onnx").is_file() and not (content / "model.onnx").exists()
    assert filed.report.conversions["onnx"].superseded_by == "onnx-double"
    audit = audit_bundle(archive, "stamps", 1, targets=HOST_ONLY)
    assert (audit.corrupt, audit.drift, audit.error) == ([], [], None), audit


def test_a_passing_or_pmml_conversion_gets_no_remedy(cancer, tmp_path: Path):
    from parity.validators.validate import remedied

    X, y = cancer
    model = LogisticRegression(max_iter=2000).fit(X, y)
    context, conversion, checks = _validated(model, X, "onnx", tmp_path)
    conversions, again = remedied(context, conversion, checks, tmp_path / "remedy", HOST_ONLY, {})
    assert list(conversions) == ["onnx"] and again == checks


# --- found in review: each a false alarm, a crash or a silent pass before its fix -----------------------
def test_qda_row_labels_compare_across_two_onnxruntime_targets(cancer, tmp_path: Path):
    X, y = cancer
    model = QuadraticDiscriminantAnalysis(reg_param=0.1).fit(X, y)
    context = _context(model, X)
    conversion = formats.convert("onnx", model, X, tmp_path)
    targets = {**HOST_ONLY, "two": Target("two", host_platform(), "process", required=False, threads=2)}
    checks = validate_conversion(context, conversion, targets=targets, roles={})
    across = [c for c in checks if c.against == "host" and c.output == "predict"]
    assert [c.verdict for c in across] == [Verdict.PASS]


def test_a_binary_linear_classifiers_scores_are_read_as_minus_d_d(cancer, tmp_path: Path):
    from sklearn.linear_model import Perceptron

    X, y = cancer
    model = Perceptron(random_state=0).fit(X, y)
    _, conversion, checks = _validated(model, X, "onnx", tmp_path)
    assert conversion.details.layouts == {"decision_function": "(N, 2) = [-d, d]"}
    (scores,) = [
        c
        for c in checks
        if c.runtime == "onnxruntime" and c.output == "decision_function" and c.kind != "coverage"
    ]
    assert scores.verdict is Verdict.PASS and scores.explanation == "compared as (N, 2) = [-d, d]"


@pytest.mark.slow
def test_a_searchs_best_estimator_decides_what_its_pmml_emits(cancer, tmp_path: Path):
    from sklearn.model_selection import GridSearchCV

    X, y = cancer
    model = GridSearchCV(KNeighborsClassifier(), {"n_neighbors": [3, 5]}).fit(X, y)
    _, _, checks = _validated(model, X, "pmml", tmp_path)
    (proba,) = [c for c in checks if c.kind == "coverage" and c.output == "predict_proba"]
    assert proba.verdict is Verdict.NOT_COVERED
    assert decide_outcome(checks, False) is Outcome.PASSED


def test_a_schema_1_conversion_gets_its_not_emitted_outputs_from_the_estimator(cancer, tmp_path: Path):
    X, y = cancer
    model = LogisticRegression(max_iter=2000).fit(X, y)
    conversion = formats.convert("onnx", model, X, tmp_path)
    old = conversion.model_copy(
        update={"details": conversion.details.model_copy(update={"not_emitted": None})}
    )
    assert set(formats.FORMATS["onnx"].not_emitted(old, model)) == {"decision_function"}


def test_a_label_outside_the_tie_is_a_bug(iris, tmp_path: Path):
    X, y = iris
    model = LogisticRegression(max_iter=2000).fit(X, y)
    context = _context(model, X)
    conversion = formats.convert("onnx", model, X, tmp_path)
    context.model.predictions["predict_proba"][0] = [0.5, 0.5, 0.0]
    cell = Cell(conversion, "onnxruntime", "host", Role.DEPLOY, True)
    labels = context.model.predictions["predict"].copy()
    labels[0] = 1  # the other class of the tie: explained
    assert (
        _check_output(context, conversion, cell, "predict", labels, np.arange(len(X))).verdict is Verdict.PASS
    )
    labels[0] = 2  # a class outside the tie: a bug
    check = _check_output(context, conversion, cell, "predict", labels, np.arange(len(X)))
    assert check.verdict is Verdict.FAIL and check.explanation.endswith("a conversion bug.")


def test_a_nan_on_one_side_is_a_big_diff_and_a_bug(cancer, tmp_path: Path):
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = LinearRegression().fit(X, y)
    context = _context(model, X)
    conversion = formats.convert("onnx", model, X, tmp_path)
    values = context.model.predictions["predict"].copy()
    values[3] = np.nan
    cell = Cell(conversion, "onnxruntime", "host", Role.DEPLOY, True)
    check = _check_output(context, conversion, cell, "predict", values, np.arange(len(X)))
    assert (check.verdict, check.band) == (Verdict.FAIL, "big-diff")
    assert check.explanation.endswith("NaN on one side only: a conversion bug.")


@pytest.mark.slow
def test_every_runtime_runs_on_the_first_deploy_process_target_whatever_the_order(cancer, tmp_path: Path):
    X, y = cancer
    model = LogisticRegression(max_iter=2000).fit(X, y)
    context = _context(model, X)
    conversion = formats.convert("pmml", model, X, tmp_path)
    targets = {
        "two": Target("two", host_platform(), "process", required=False, threads=2),
        **HOST_ONLY,
    }
    checks = validate_conversion(context, conversion, targets=targets, roles={})
    assert {c.target for c in checks if c.runtime == "jpmml_evaluator"} == {"host"}
    assert decide_outcome(checks, False) is Outcome.PASSED
