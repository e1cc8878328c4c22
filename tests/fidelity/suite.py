"""The mutation suite's machinery, shared by its tests and ``benchmarks/fidelity.py``: model families on
small bundled data, the mutations that apply to each, Parity's verdict on a mutant, and an independent
judge of whether the mutant changes a reference output beyond its band.

The judge runs the artifact itself (onnxruntime's ``InferenceSession``; JPMML through a
:class:`~parity.validators.runtimes.pmml.JpmmlRuntime` of its own) and compares with scikit-learn's
outputs under :func:`~parity.core.tolerances.tolerance_for`'s band, with code of its own. A mutant is
*observable* when some reference row is beyond the band in the mutant and within it in the correct
artifact, in the same engine: a row a correct float32 artifact already misses (inputs near a split) proves
nothing about the mutant.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from parity.core.defaults import host_platform
from parity.core.records import Check, Conversion, Outcome, Role, Verdict, decide_outcome
from parity.core.tolerances import Band, Tolerance, kind_of, scale_of, tolerance_for
from parity.registry import ModelRef, RegisteredModel
from parity.registry.predictions import reference_predictions
from parity.validators import formats
from parity.validators.runtimes.pmml import JpmmlRuntime
from parity.validators.targets.table import Target
from parity.validators.validate import ModelContext, validate_conversion
from tests.fidelity.mutators import MUTATORS, Mutator, NothingToMutate

#: This process only: every reference row, every runtime of the format.
HOST_ONLY = {"host": Target("host", host_platform(), "process")}


def _breast_cancer_with_missing_values() -> tuple[pd.DataFrame, pd.Series]:
    """Breast cancer with 10% of its values missing (NaN), at fixed places."""
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X.mask(np.random.default_rng(0).random(X.shape) < 0.1), y


#: name → (features, target), each sklearn.datasets data as DataFrames with named columns.
DATASETS: dict[str, Callable[[], tuple[pd.DataFrame, pd.Series]]] = {
    "breast_cancer": lambda: load_breast_cancer(return_X_y=True, as_frame=True),
    "breast_cancer_nan": _breast_cancer_with_missing_values,
    "iris": lambda: load_iris(return_X_y=True, as_frame=True),
    "wine": lambda: load_wine(return_X_y=True, as_frame=True),
    "diabetes": lambda: load_diabetes(return_X_y=True, as_frame=True, scaled=False),
}


@dataclass(frozen=True)
class Family:
    """A model family: its data, its unfitted model, and the mutation classes that apply to it."""

    data: str
    build: Callable[[], object]
    mutations: tuple[str, ...]
    #: format → further mutation classes that apply to that format's artifact only
    only_in: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def mutations_for(self, fmt: str) -> tuple[str, ...]:
        return self.mutations + self.only_in.get(fmt, ())


_LINEAR_CLASSIFIER = (
    "coefficient",
    "small-coefficient",
    "intercept",
    "class-labels",
    "columns",
    "dropped-output",
    "post-transform",
)
_TREE_CLASSIFIER = ("threshold", "leaf", "class-labels", "columns", "dropped-output", "nan-handling")

#: The families of the suite. LogisticRegression is standardised first (a StandardScaler pipeline), as
#: breast cancer needs; HistGradientBoostingClassifier learns on data with missing values, where NaN
#: handling shows.
FAMILIES: dict[str, Family] = {
    "LogisticRegression": Family(
        "breast_cancer",
        lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        _LINEAR_CLASSIFIER,
    ),
    "DecisionTreeClassifier": Family(
        "iris", lambda: DecisionTreeClassifier(max_depth=4, random_state=0), _TREE_CLASSIFIER
    ),
    "RandomForestClassifier": Family(
        "wine", lambda: RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0), _TREE_CLASSIFIER
    ),
    "GradientBoostingRegressor": Family(
        "diabetes",
        lambda: GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=0),
        ("threshold", "leaf", "intercept", "nan-handling"),
    ),
    "HistGradientBoostingClassifier": Family(
        "breast_cancer_nan",
        lambda: HistGradientBoostingClassifier(max_iter=10, max_depth=3, random_state=0),
        (
            "threshold",
            "leaf",
            "intercept",
            "class-labels",
            "columns",
            "dropped-output",
            "post-transform",
            "nan-handling",
        ),
        # the PMML scales the boosted sum by a coefficient (1.0) before its logit; the ONNX has no such step
        only_in={"pmml": ("coefficient", "small-coefficient")},
    ),
    "Ridge": Family("diabetes", Ridge, ("coefficient", "small-coefficient", "intercept")),
    "SVC": Family(
        "iris",
        lambda: make_pipeline(StandardScaler(), SVC(probability=True, random_state=0)),
        ("coefficient", "small-coefficient", "intercept", "class-labels"),
        # sklearn2pmml writes no probability fields for SVC: no columns to swap in the PMML
        only_in={"onnx": ("columns", "dropped-output")},
    ),
    "MLPClassifier": Family(
        "iris",
        lambda: MLPClassifier(hidden_layer_sizes=(8,), max_iter=2000, random_state=0),
        _LINEAR_CLASSIFIER,
    ),
}

FORMATS = ("onnx", "pmml")

#: Every mutant of the suite: (format, family, mutation class).
MUTANTS: list[tuple[str, str, str]] = [
    (fmt, family, mutation)
    for fmt in FORMATS
    for family, spec in FAMILIES.items()
    for mutation in spec.mutations_for(fmt)
]

# --- the independent judge -----------------------------------------------------------------------------


def outside_band(expected: np.ndarray, actual: np.ndarray, tolerance: Tolerance) -> np.ndarray:
    """Per row: whether ``actual`` is outside ``tolerance`` of ``expected`` (any column; NaN matches NaN)."""
    expected, actual = np.asarray(expected), np.asarray(actual)
    if actual.ndim == 2 and actual.shape[1] == 1 and expected.ndim == 1:
        actual = actual[:, 0]
    if actual.shape != expected.shape:
        return np.ones(len(expected), bool)
    if not isinstance(tolerance, Band):
        if expected.dtype.kind in "iuf":
            actual = actual.astype(expected.dtype)
        bad = actual.astype(str) != expected.astype(str)
    else:
        e, a = expected.astype(np.float64), actual.astype(np.float64)
        scale = scale_of(e) if tolerance.scaled else 1.0
        both_nan = np.isnan(e) & np.isnan(a)
        with np.errstate(invalid="ignore"):
            bad = ~both_nan & ~(np.abs(a - e) <= tolerance.atol * scale + tolerance.rtol * np.abs(e))
    return bad if bad.ndim == 1 else bad.any(axis=1)


@functools.cache
def _judge_jpmml() -> JpmmlRuntime:
    """The judge's own JPMML runtime (its JVM is the process's one, shared with Parity's runtimes)."""
    return JpmmlRuntime()


def direct_outputs(
    fmt: str, conversion: Conversion, X: pd.DataFrame, classes: list | None
) -> dict[str, np.ndarray]:
    """The artifact's outputs as reference outputs, computed without Parity's runtimes or output mapping."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(conversion.path), providers=["CPUExecutionProvider"])
        (feed,) = session.get_inputs()
        names = [o.name for o in session.get_outputs()]
        raw = dict(
            zip(names, session.run(None, {feed.name: X.to_numpy(np.float64).astype(np.float32)}), strict=True)
        )
        roles = {"label": "predict", "probabilities": "predict_proba", "variable": "predict"}
        return {roles[name]: np.asarray(value) for name, value in raw.items() if name in roles}
    frame = _judge_jpmml().evaluate(conversion.path, X)
    outputs = {"predict": frame[conversion.details.target].to_numpy()}
    columns = [f"probability({c})" for c in classes or []]
    if columns and all(c in frame.columns for c in columns):  # an SVC's PMML has no probability fields
        outputs["predict_proba"] = frame[columns].to_numpy(np.float64)
    return outputs


# --- the suite -----------------------------------------------------------------------------------------


@dataclass
class Built:
    """One family fitted, its context, and its correct conversion in one format with its direct outputs."""

    context: ModelContext
    conversion: Conversion
    correct: dict[str, np.ndarray]
    tolerances: dict[str, Tolerance]


@dataclass
class MutantResult:
    """What Parity said about one mutant, and what the judge says it is."""

    fmt: str
    family: str
    mutation: str
    #: why the judge calls it observable ("predict_proba: 12 of 569 rows beyond ..."); None: not observable
    observable: str | None
    outcome: Outcome
    checks: list[Check] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.fmt}-{self.family}-{self.mutation}"

    @property
    def blocking(self) -> list[Check]:
        """The cells that fail the model: deploy cells on required targets that failed or errored."""
        return [
            c
            for c in self.checks
            if c.required and c.role is Role.DEPLOY and c.verdict in (Verdict.FAIL, Verdict.ERROR)
        ]

    @property
    def caught(self) -> bool:
        return self.outcome is Outcome.FAILED and bool(self.blocking)

    @property
    def compared(self) -> list[Check]:
        """The blocking cells that compared outputs with scikit-learn (not the embedded verification)."""
        return [
            c
            for c in self.blocking
            if c.verdict is Verdict.FAIL and c.against == "scikit-learn" and c.kind != "verification"
        ]

    @property
    def rejected(self) -> bool:
        """Whether Parity rejects the model (whatever the judge says)."""
        return self.outcome is not Outcome.PASSED

    @property
    def status(self) -> str:
        if self.observable is None:
            return "not observable"
        return "caught" if self.caught else "missed"


#: Words that blame float32 rounding or arithmetic, unless denied ("not rounding", "beyond input rounding",
#: "not explained by float32 input rounding").
_HEDGE = re.compile(r"rounding|float32 arithmetic|explained by float32")
_DENIED = re.compile(
    r"(?:not|beyond) (?:explained by )?(?:float32 )?(?:input )?rounding|not explained by float32\w*"
    r"|beyond what float(?:32|64) arithmetic can produce"
)


def names_a_bug(explanation: str) -> bool:
    """Whether an explanation calls the deviation a bug (or defect) and never puts it down to rounding."""
    text = _DENIED.sub("", explanation.lower())
    return bool(re.search(r"\b(?:bug|defect)\b", text)) and not _HEDGE.search(text)


class Suite:
    """Families fitted, converted and judged once; mutants made, validated and judged on demand."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._contexts: dict[str, ModelContext] = {}
        self._built: dict[tuple[str, str], Built] = {}
        self._results: dict[tuple[str, str, str], MutantResult] = {}

    def context(self, family: str) -> ModelContext:
        if family not in self._contexts:
            spec = FAMILIES[family]
            X, y = DATASETS[spec.data]()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence warnings of small fits are not the subject here
                estimator = spec.build().fit(X, y)
            model = RegisteredModel(
                ref=ModelRef(f"fidelity-{family.lower()}", 1),
                path=Path("."),
                record={},
                estimator=estimator,
                reference=X,
                predictions=reference_predictions(estimator, X),
            )
            self._contexts[family] = ModelContext(model, tolerances={})
        return self._contexts[family]

    def built(self, fmt: str, family: str) -> Built:
        if (fmt, family) not in self._built:
            context = self.context(family)
            model = context.model
            conversion = formats.convert(fmt, model.estimator, model.reference, self.workdir / fmt / family)
            if not conversion.ok:
                raise AssertionError(f"{fmt} conversion of {family} failed: {conversion.message}")
            precision = formats.format_of(fmt).precision(conversion)
            tolerances = {
                output: tolerance_for(precision, kind_of(output, context.classifier), {})
                for output in model.predictions
            }
            correct = direct_outputs(fmt, conversion, model.reference, self.classes(family))
            self._built[fmt, family] = Built(context, conversion, correct, tolerances)
        return self._built[fmt, family]

    def classes(self, family: str) -> list | None:
        context = self.context(family)
        return [str(c) for c in context.model.estimator.classes_] if context.classifier else None

    def mutant(self, fmt: str, family: str, mutation: str) -> Conversion:
        """The mutant's conversion: the correct one with a mutated artifact next to it.

        Raises
        ------
        NothingToMutate
            When the mutation finds nothing to change in this family's artifact.
        """
        return self.mutated(fmt, family, mutation, MUTATORS[fmt][mutation])

    def mutated(self, fmt: str, family: str, name: str, mutator: Mutator) -> Conversion:
        """The correct conversion with its artifact changed by ``mutator``, written as ``name`` next to it."""
        built = self.built(fmt, family)
        source = built.conversion.path
        target = source.with_name(f"{name}{source.suffix}")
        mutator(source, target)
        return built.conversion.at(target)

    def judge(self, fmt: str, family: str, conversion: Conversion) -> str | None:
        """Why the artifact changes a reference output beyond its band where the correct one does not; None
        when it changes none."""
        built = self.built(fmt, family)
        model = built.context.model
        try:
            outputs = direct_outputs(fmt, conversion, model.reference, self.classes(family))
        except Exception as err:
            return f"the artifact does not evaluate: {type(err).__name__}: {str(err)[:200]}"
        reasons = []
        for output, correct in built.correct.items():
            expected, tolerance = model.predictions[output], built.tolerances[output]
            if output not in outputs:
                reasons.append(f"{output}: missing")
                continue
            new = outside_band(expected, outputs[output], tolerance) & ~outside_band(
                expected, correct, tolerance
            )
            if new.any():
                reasons.append(
                    f"{output}: {int(new.sum())} of {len(expected)} rows beyond {tolerance.describe()}"
                )
        return "; ".join(reasons) or None

    def validate(self, fmt: str, family: str, conversion: Conversion) -> tuple[Outcome, list[Check]]:
        """Parity's cells and outcome for an artifact of this family, on this process only."""
        checks = validate_conversion(self.built(fmt, family).context, conversion, targets=HOST_ONLY)
        return decide_outcome(checks, conversions_unsupported=False), checks

    def result(self, fmt: str, family: str, mutation: str) -> MutantResult:
        """One mutant made, judged and validated (once)."""
        key = (fmt, family, mutation)
        if key not in self._results:
            conversion = self.mutant(fmt, family, mutation)
            observable = self.judge(fmt, family, conversion)
            outcome, checks = self.validate(fmt, family, conversion)
            self._results[key] = MutantResult(fmt, family, mutation, observable, outcome, checks)
        return self._results[key]

    @property
    def results(self) -> list[MutantResult]:
        return list(self._results.values())


#: The columns of the counts: the three statuses, and the not-observable mutants Parity rejects anyway.
COLUMNS = ("caught", "not observable", "missed", "rejected though not observable")


def counts_by_class(results: list[MutantResult]) -> dict[tuple[str, str], dict[str, int]]:
    """(format, mutation class) → a count per :data:`COLUMNS`."""
    table: dict[tuple[str, str], dict[str, int]] = {}
    for result in results:
        row = table.setdefault((result.fmt, result.mutation), dict.fromkeys(COLUMNS, 0))
        row[result.status] += 1
        row["rejected though not observable"] += result.status == "not observable" and result.rejected
    return table


def counts_table(results: list[MutantResult]) -> str:
    """The counts as a markdown table, per format and class, with a total per format."""
    lines = [f"| format | class | {' | '.join(COLUMNS)} |", "|---|---|" + "---|" * len(COLUMNS)]
    table = counts_by_class(results)
    for fmt in [f for f in FORMATS if any(r.fmt == f for r in results)]:
        total = dict.fromkeys(COLUMNS, 0)
        for (f, mutation), row in table.items():
            if f == fmt:
                lines.append(f"| {fmt} | {mutation} | {' | '.join(str(row[c]) for c in COLUMNS)} |")
                total = {c: total[c] + row[c] for c in COLUMNS}
        lines.append(f"| {fmt} | **all** | {' | '.join(str(total[c]) for c in COLUMNS)} |")
    return "\n".join(lines)


__all__ = ["FAMILIES", "MUTANTS", "MutantResult", "NothingToMutate", "Suite", "counts_table", "names_a_bug"]
