"""Validate converted artifacts of one registered model: every runtime of a format, on every target.

Everything format-specific comes from the conversion's spec (:data:`parity.validators.formats.FORMATS`)
and everything reach-specific from the target's reach (:data:`parity.validators.targets.reaches.REACHES`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import is_classifier, is_clusterer, is_outlier_detector

from parity.core.records import (
    Check,
    Conversion,
    ConversionStatus,
    Outcome,
    Role,
    Stage,
    Verdict,
    Where,
    decide_outcome,
)
from parity.core.tolerances import (
    BIG_DIFF,
    Band,
    OutputKind,
    Tolerance,
    arithmetic_bound,
    cross_target_tolerance,
    deviation_band,
    kind_of,
    scale_of,
    tolerance_for,
)
from parity.registry import RegisteredModel
from parity.registry.predictions import concat_rows, reference_predictions, row_chunks

from . import resolve_roles
from .compare import Difference, align, compare
from .formats import FormatSpec, format_of
from .outputs import OutputLog, Run
from .runtimes import Runtime, exclusive
from .targets.reaches import REACHES, Reach, describe_process, ran_on
from .targets.table import Target, load_roles, load_targets

#: Rows a runtime is fed at a time, so memory stays flat whatever the reference set's size.
CHUNK_ROWS = 10_000
#: Rows outside tolerance that float32 input rounding may explain before the cell fails anyway.
MAX_EXPLAINED_FRACTION = 0.01
#: How much larger than the measured float32 input sensitivity float32 arithmetic's error may be, per term.
SENSITIVITY_FACTOR = 4


@dataclass
class ModelContext:
    """What validating one model needs, computed at most once."""

    model: RegisteredModel
    #: tolerance overrides; default: the registration's (a replayed bundle passes its metadata's)
    tolerances: dict[str, dict[str, float]] | None = None
    #: runtime roles for this model; default: the registration's (a replayed bundle passes its metadata's)
    roles: Mapping[str, str] | None = None
    _rounded: dict[frozenset[str], dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def classifier(self) -> bool:
        return is_classifier(self.model.estimator)

    @property
    def labels(self) -> bool:
        """Whether the estimator's ``predict`` gives labels (classifiers, clusterers, outlier detectors)."""
        estimator = self.model.estimator
        return is_classifier(estimator) or is_clusterer(estimator) or is_outlier_detector(estimator)

    @property
    def overrides(self) -> dict[str, dict[str, float]]:
        """The model's tolerance overrides, as registered."""
        return self.model.record.tolerances if self.tolerances is None else self.tolerances

    @property
    def role_overrides(self) -> dict[str, str]:
        """The model's runtime roles, as registered (runtime name → role)."""
        if self.roles is not None:
            return dict(self.roles)
        return dict(getattr(self.model.record, "roles", None) or {})

    def rounded_reference(self, columns: list[str] | None = None) -> dict[str, np.ndarray]:
        """The estimator's outputs on the reference rows with ``columns`` rounded to float32.

        Parameters
        ----------
        columns : list of str, optional
            The columns an artifact reads as float32; default every float column.
        """
        X = self.model.reference
        chosen = [c for c in (X.columns if columns is None else columns) if pd.api.types.is_float_dtype(X[c])]
        key = frozenset(chosen)
        if key not in self._rounded:
            # piece by piece: a rounded copy of one piece at a time, never of the whole reference set
            parts = [
                reference_predictions(self.model.estimator, _rounded_to_float32(X.iloc[rows], chosen))
                for rows in row_chunks(len(X))
            ]
            self._rounded[key] = concat_rows(parts)
        return self._rounded[key]


def _rounded_to_float32(X: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """A copy of ``X`` with ``columns`` rounded to the nearest float32 (kept as float64)."""
    X = X.copy()
    for column in columns:
        X[column] = X[column].astype(np.float32).astype(np.float64)
    return X


def conversion_check(conversion: Conversion) -> Check:
    """The report row for a conversion that did not produce an artifact."""
    verdict = Verdict.UNSUPPORTED if conversion.status is ConversionStatus.UNSUPPORTED else Verdict.FAIL
    return Check(
        format=conversion.name,
        runtime="converter",
        output="conversion",
        verdict=verdict,
        target="*",  # a conversion happens once, whatever the targets
        kind="conversion",
        explanation=conversion.message,
        stage=Stage.CONVERT,
    )


def sample_index(n_rows: int, limit: int | None) -> np.ndarray:
    """Rows a sampling runtime evaluates: evenly spread, deterministic."""
    if limit is None or n_rows <= limit:
        return np.arange(n_rows)
    return np.unique(np.linspace(0, n_rows - 1, limit).round().astype(int))


def rows_at(X: pd.DataFrame, index: np.ndarray) -> pd.DataFrame:
    """The rows ``index`` of ``X``: ``X`` itself when they are all its rows in order (no copy of a large
    reference set per runtime), else a copy of those rows."""
    if len(index) == len(X) and (len(index) == 0 or (index[0] == 0 and bool((np.diff(index) == 1).all()))):
        return X
    return X.iloc[index]


def run_runtime(runtime: Runtime, conversion: Conversion, X: pd.DataFrame) -> dict[str, np.ndarray]:
    """Evaluate ``X`` in chunks and map the runtime's outputs to reference outputs."""
    spec = format_of(conversion.format)
    path = conversion.path
    if path is None:
        raise ValueError(f"the {conversion.format} conversion produced no artifact to evaluate")
    parts: list[tuple[int, dict[str, np.ndarray]]] = []
    for start in range(0, len(X), CHUNK_ROWS):
        chunk = X.iloc[start : start + CHUNK_ROWS]
        with exclusive(runtime):
            raw = runtime.evaluate(path, spec.feeds(conversion, chunk))
        parts.append((len(chunk), spec.outputs(raw, conversion)))
    first = parts[0][1]
    return {
        key: np.concatenate([p[key] for _, p in parts], axis=_row_axis(first[key], parts[0][0]))
        for key in first
    }


def _row_axis(values: np.ndarray, n_rows: int) -> int:
    """The axis ``n_rows`` rows run along: 0, except for a (1, N) row vector of N > 1 rows (QDA's ONNX label)."""
    values = np.asarray(values)
    return 1 if n_rows > 1 and values.ndim == 2 and values.shape == (1, n_rows) else 0


@dataclass(frozen=True)
class Cell:
    """What every row of one runtime on one target shares."""

    conversion: Conversion
    runtime: str
    target: str
    role: Role
    blocking: bool
    where: Where | None = None

    def __call__(self, output: str, verdict: Verdict, **fields: Any) -> Check:
        shared: dict[str, Any] = {
            "format": self.conversion.name,
            "runtime": self.runtime,
            "target": self.target,
            "required": self.blocking,
            "role": self.role,
        }
        if self.where is not None:
            shared["where"] = self.where
        return Check(output=output, verdict=verdict, **{**shared, **fields})


def validate_runtime(
    context: ModelContext, conversion: Conversion, runtime: Runtime, target: str, *, required: bool = True
) -> list[Check]:
    """Compare one runtime's outputs of one artifact with the reference, one row per output.

    Parameters
    ----------
    context : ModelContext
    conversion : Conversion
        A successful conversion.
    runtime : Runtime
        A runtime of the conversion's format (see :data:`parity.validators.RUNTIMES`).
    target : str
        Where the runtime runs (for the report).
    required : bool
        Whether the target's verdicts block the model (they do only if the runtime's role is deploy too).

    Returns
    -------
    list of Check
    """
    role = resolve_roles(context.role_overrides).get(runtime.name, runtime.role)
    cell = Cell(conversion, runtime.name, target, role, required and role is Role.DEPLOY, Where())
    return _run_in_process(context, conversion, runtime, cell, None)[0]


def _run_in_process(
    context: ModelContext, conversion: Conversion, runtime: Runtime, cell: Cell, limit: int | None
) -> tuple[list[Check], Run | None]:
    reason = runtime.unavailable_reason()
    if reason:
        return [cell("*", Verdict.UNAVAILABLE, explanation=reason, stage=Stage.LOAD)], None
    model = context.model
    index = sample_index(len(model.reference), runtime.sample_rows if limit is None else limit)
    try:
        outputs = run_runtime(runtime, conversion, rows_at(model.reference, index))
    except Exception as err:
        message = f"{type(err).__name__}: {str(err).strip()[:500]}"
        return [cell("*", Verdict.ERROR, explanation=message, stage=Stage.EVALUATE)], None
    run = Run(cell.target, runtime.name, index, outputs, cell.role, cell.blocking)
    return _output_checks(context, conversion, run, cell), run


def _output_checks(context: ModelContext, conversion: Conversion, run: Run, cell: Cell) -> list[Check]:
    checks = [
        _check_output(context, conversion, cell, output, actual, run.index)
        for output, actual in run.outputs.items()
        if output in context.model.predictions
    ]
    return checks or [
        cell("*", Verdict.FAIL, explanation="no output matched the reference outputs", stage=Stage.COVERAGE)
    ]


def _check_output(
    context: ModelContext,
    conversion: Conversion,
    cell: Cell,
    output: str,
    actual: np.ndarray,
    index: np.ndarray,
) -> Check:
    spec = format_of(conversion.format)
    kind = kind_of(output, context.labels)
    precision = spec.precision(conversion)
    tolerance = tolerance_for(precision, kind, context.overrides)
    expected, actual, layout = align(
        context.model.predictions[output][index], actual, spec.layout(conversion, output)
    )
    base: dict[str, Any] = {"kind": str(kind), "rows": len(index), "tolerance": tolerance.describe()}
    try:
        diff = compare(expected, actual, tolerance)
    except ValueError as err:
        explanation = f"not comparable: {err}: a conversion bug (the artifact's output has another shape)"
        return cell(output, Verdict.FAIL, explanation=explanation, stage=Stage.COMPARE, band=BIG_DIFF, **base)
    deviation = _deviation(diff, expected, actual, tolerance)
    figures: dict[str, Any] = {
        "max_abs": diff.max_abs,
        "max_rel": diff.max_rel,
        "n_outside": diff.n_outside,
        "first_outside": [int(index[i]) for i in diff.first_outside()],
        "band": deviation_band(deviation, diff.n_outside == 0),
    }
    laid_out = f"compared as {layout}" if layout else ""
    if diff.n_outside == 0:
        return cell(output, Verdict.PASS, explanation=laid_out, **base, **figures)
    finding = Finding(
        context, spec, conversion, output, kind, tolerance, actual, index, diff.outside, deviation
    )
    verdict, explanation = finding.explain()
    explanation = f"{explanation} ({laid_out})" if laid_out else explanation
    stage = None if verdict is Verdict.PASS else Stage.COMPARE
    return cell(output, verdict, explanation=explanation, stage=stage, **base, **figures)


def _deviation(
    diff: Difference, expected: np.ndarray, actual: np.ndarray, tolerance: Tolerance
) -> float | None:
    """The largest deviation per unit of the output's scale (None where nothing numeric was compared;
    infinite where one side is NaN and the other is not)."""
    if diff.max_abs is None or not isinstance(tolerance, Band):
        return None
    expected, actual = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if (np.isnan(expected) ^ np.isnan(actual)).any():
        return float("inf")
    return diff.max_abs / (scale_of(expected) if tolerance.scaled else 1.0)


@dataclass
class Finding:
    """Rows of one output outside its band, and what explains them: float32 inputs, ties, or a bug."""

    context: ModelContext
    spec: FormatSpec
    conversion: Conversion
    output: str
    kind: OutputKind
    tolerance: Tolerance
    actual: np.ndarray
    index: np.ndarray
    outside: np.ndarray
    deviation: float | None

    def explain(self) -> tuple[Verdict, str]:
        """The cell's verdict and why: explained rows pass, anything else is named a bug."""
        rounded = self._explained_by_float32_inputs()
        tied = self._ties() & self.outside & ~rounded
        left = self.outside & ~rounded & ~tied
        notes = self._notes(rounded, tied)
        if left.any():
            others = int((rounded | tied).sum())
            also = f" ({others} other row(s) outside the band agree with scikit-learn on float32 inputs, or tie.)"
            return Verdict.FAIL, self._bug(left) + (also if others else "")
        limit = max(1, int(MAX_EXPLAINED_FRACTION * len(self.index)))
        sensitive = int((rounded & self._beyond_float32_band()).sum())
        if sensitive > limit:
            return Verdict.FAIL, (
                f"{sensitive} row(s) change beyond the float32 band only because the artifact reads "
                f"float32 inputs (scikit-learn on float32-rounded inputs agrees), more than the {limit} "
                "allowed: the model is too sensitive to float32 inputs; convert it with double inputs."
            )
        return Verdict.PASS, " ".join(notes)

    def _explained_by_float32_inputs(self) -> np.ndarray:
        columns = self.spec.float_inputs(self.conversion)
        if not columns:
            return np.zeros_like(self.outside)
        rounded = self.context.rounded_reference(columns)[self.output][self.index]
        rounded, actual, _ = align(rounded, self.actual, self.spec.layout(self.conversion, self.output))
        again = compare(rounded, actual, self.tolerance).outside
        return self.outside & ~again

    def _beyond_float32_band(self) -> np.ndarray:
        expected, actual, _ = align(
            self.context.model.predictions[self.output][self.index],
            self.actual,
            self.spec.layout(self.conversion, self.output),
        )
        band = tolerance_for("float32", self.kind, self.context.overrides)
        return compare(expected, actual, band).outside

    def _ties(self) -> np.ndarray:
        """Rows whose reference label is a tie: its top two scores are within the scores' band."""
        if self.kind is not OutputKind.LABEL:
            return np.zeros_like(self.outside)
        predictions = self.context.model.predictions
        precision = self.spec.precision(self.conversion)
        for output, kind in (
            ("predict_proba", OutputKind.PROBABILITY),
            ("decision_function", OutputKind.DECISION),
        ):
            if output in predictions:
                scores = np.asarray(predictions[output], dtype=np.float64)[self.index]
                band = tolerance_for(precision, kind, self.context.overrides)
                classes = getattr(self.context.model.estimator, "classes_", None)
                names = None if classes is None else [_label(c) for c in classes]
                return _tied(scores, band, self.actual, names)
        return np.zeros_like(self.outside)

    def _notes(self, rounded: np.ndarray, tied: np.ndarray) -> list[str]:
        notes = []
        if rounded.any():
            notes.append(
                f"{int(rounded.sum())} row(s) explained by float32 inputs: scikit-learn on float32-rounded "
                "inputs agrees with the runtime (the artifact declares float inputs; inputs near a split). "
                "Remedy if it matters: double-precision inputs or a CastTransformer."
            )
        if tied.any():
            notes.append(
                f"{int(tied.sum())} label(s) differ on a tie: scikit-learn's top two scores are within the "
                "scores' band there, so either label is right."
            )
        return notes

    def _bug(self, left: np.ndarray) -> str:
        n = int(left.sum())
        precision = self.spec.precision(self.conversion)
        if self.kind is OutputKind.LABEL:
            return (
                f"{n} label(s) differ where scikit-learn's top two scores are not tied and float32 inputs do "
                "not explain them: a conversion bug."
            )
        bound = arithmetic_bound(precision, self.kind)
        sensitivity = self._sensitivity() if precision == "float32" else 0.0
        # float32 arithmetic on n terms errs by at most ~n*u*sum|terms| (Higham's gamma_n); rounding the inputs
        # alone moves the output by up to u*sum|terms| (less where roundings cancel: hence the factor 4)
        terms = len(self.spec.float_inputs(self.conversion)) + 1
        if self.deviation is None or not np.isfinite(self.deviation):
            return f"{n} row(s) outside {self.tolerance.describe()}, NaN on one side only: a conversion bug."
        off = f"{n} row(s) outside {self.tolerance.describe()}, off by up to {self.deviation:.3g} of the output's scale"
        if self.deviation > max(bound, SENSITIVITY_FACTOR * terms * sensitivity):
            return f"{off}, beyond what {precision} arithmetic can produce ({bound:.2g}): a conversion bug."
        if self.deviation > bound:
            return (
                f"{off}: the model sums terms far larger than its outputs (rounding its inputs to float32 alone "
                f"moves scikit-learn's outputs by {sensitivity:.3g} of the scale on a typical row), so float32 "
                "arithmetic can drift this far; convert it with double inputs."
            )
        return f"{off}, beyond the drift measured on correct {precision} conversions: a conversion bug."

    def _sensitivity(self) -> float:
        """How far rounding the artifact's float inputs to float32 moves scikit-learn's output on a typical
        row (the median), per unit of its scale: ``u * sum |terms|`` to first order, the factor of float32
        arithmetic's error bound. The median, because a tree's output jumps on the few rows near a split
        (those are re-checked on their own) while a smooth model's moves on every row."""
        columns = self.spec.float_inputs(self.conversion)
        if not columns:
            return 0.0
        expected = np.asarray(self.context.model.predictions[self.output][self.index], dtype=np.float64)
        rounded = np.asarray(
            self.context.rounded_reference(columns)[self.output][self.index], dtype=np.float64
        )
        scale = scale_of(expected) if isinstance(self.tolerance, Band) and self.tolerance.scaled else 1.0
        with np.errstate(invalid="ignore"):
            moved = np.abs(rounded - expected)
        return float(np.nanmedian(moved) / scale) if moved.size and np.isfinite(moved).any() else 0.0


def _tied(scores: np.ndarray, band: Tolerance, labels: np.ndarray, classes: list[str] | None) -> np.ndarray:
    """Rows where the artifact's label is one of the reference's top scores, all within ``band`` of each
    other (a binary decision value: within the band of 0, either label); never a label outside the tie."""
    if not isinstance(band, Band) or classes is None:
        return np.zeros(len(scores), dtype=bool)
    scale = scale_of(scores) if band.scaled else 1.0
    if scores.ndim == 1:
        return np.abs(scores) <= 2 * (band.atol * scale + band.rtol * np.abs(scores))
    top = scores.max(axis=1, keepdims=True)
    candidates = scores >= top - 2 * (band.atol * scale + band.rtol * np.abs(top))
    position = {label: j for j, label in enumerate(classes)}
    given = np.array([position.get(_label(v), -1) for v in np.asarray(labels).reshape(-1)])
    rows = np.arange(len(scores))
    known = given >= 0
    tied = np.zeros(len(scores), dtype=bool)
    tied[known] = candidates[rows[known], given[known]] & (candidates[known].sum(axis=1) > 1)
    return tied


def _label(value: object) -> str:
    """A label as the classes are spelled: ``1.0`` from a runtime that returns labels as doubles is ``1``."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


#: The explanation of an artifact whose converter embedded no verification rows, on every target alike.
NOT_EMBEDDED = (
    "not embedded: the PMML has no ModelVerification rows (its converter embedded none), so there is nothing "
    "to replay; its outputs are compared with the reference rows all the same"
)


def verification_check(runtime: Runtime, conversion: Conversion, target: str) -> Check:
    """A runtime's replay of the artifact's embedded verification rows, as its own report row.

    ``not covered`` (:data:`NOT_EMBEDDED`; that verdict never blocks) when the conversion embedded no rows;
    otherwise ``pass`` or ``fail`` as the runtime replayed them (an artifact that lost the rows its
    conversion recorded fails).
    """
    rows = format_of(conversion.format).embedded_rows(conversion)
    if rows == 0:
        passed, message = None, NOT_EMBEDDED
    else:
        try:
            if conversion.path is None:
                raise ValueError(f"the {conversion.format} conversion produced no artifact to verify")
            with exclusive(runtime):
                passed, message = runtime.verify(conversion.path)
        except Exception as err:
            passed, message = False, f"{type(err).__name__}: {err}"
    return Check(
        format=conversion.name,
        runtime=runtime.name,
        output="embedded-verification",
        verdict=Verdict.NOT_COVERED if passed is None else Verdict.PASS if passed else Verdict.FAIL,
        target=target,
        kind="verification",
        rows=rows,
        explanation=message,
        stage=Stage.COMPARE if passed is False else None,
    )


def validate_conversion(
    context: ModelContext,
    conversion: Conversion,
    runtime_names: list[str] | None = None,
    targets: dict[str, Target] | None = None,
    roles: Mapping[str, str] | None = None,
    log: OutputLog | None = None,
) -> list[Check]:
    """Every runtime of the conversion's format on every target, plus embedded verification, cross-target
    comparisons and coverage.

    Parameters
    ----------
    context : ModelContext
    conversion : Conversion
    runtime_names : list of str, optional
        Restrict the in-process runtimes to these entries of :data:`parity.validators.RUNTIMES`.
    targets : dict of str to Target, optional
        Default: :func:`parity.validators.targets.table.load_targets`.
    roles : mapping of str to str, optional
        The installation's runtime roles (a targets file's ``[roles]``); default: the default targets
        file's. The model's registered roles apply over them.
    log : OutputLog, optional
        Where to keep every run's converted outputs, row by row (for the bundle's ``outputs.parquet``).

    Returns
    -------
    list of Check
        A single conversion row when the conversion produced no artifact. The first deploy target
        evaluates every reference row (``sample_rows`` applies to the others); each reference output gets a
        coverage row saying how many rows a deploy runtime compared.

    Raises
    ------
    InvalidInputError
        For a role naming no runtime.
    """
    if not conversion.ok:
        return [conversion_check(conversion)]
    targets = load_targets() if targets is None else targets
    resolved = resolve_roles(load_roles() if roles is None else roles, context.role_overrides)
    spec = format_of(conversion.format)
    in_process = [t for t in targets.values() if REACHES[t.reach].in_process]
    # every runtime runs on the first deploy process target (else the first process target)
    primary = next((t for t in in_process if t.required), in_process[0] if in_process else None)
    first_deploy = next((t for t in targets.values() if t.required), None)
    checks: list[Check] = []
    runs: list[Run] = []
    for target in targets.values():
        reach = REACHES[target.reach]
        every_row = target is first_deploy
        if reach.in_process:
            place = Place(target, target is primary, every_row)
            found, made = _on_this_process(context, spec, conversion, place, runtime_names, resolved)
        else:
            found, made = _on_remote(
                context, spec, conversion, Place(target, False, every_row), reach, resolved
            )
        checks.extend(found)
        runs.extend(made)
    if log is not None:
        log.add(context.model.predictions, conversion, runs)
    checks = witness_notes(checks, conversion)
    return (
        checks
        + cross_target_checks(context, conversion, runs, targets)
        + coverage_checks(context, conversion, runs)
    )


@dataclass(frozen=True)
class Place:
    """A target as one conversion's validation uses it."""

    target: Target
    #: the first process target: it runs every runtime (the others only those their settings tune)
    primary: bool
    #: evaluate every reference row whatever the target's ``sample_rows`` (the first deploy target)
    every_row: bool


def _on_this_process(
    context: ModelContext,
    spec: FormatSpec,
    conversion: Conversion,
    place: Place,
    runtime_names: list[str] | None,
    roles: dict[str, Role],
) -> tuple[list[Check], list[Run]]:
    """The primary process target runs every runtime; others only the runtimes their settings tune."""
    target = place.target
    runtimes = [r for r in spec.runtimes if place.primary or r.tuned_by]
    if place.primary and runtime_names is not None:
        runtimes = [r for r in runtimes if r.name in runtime_names]
    where = describe_process().merged(**target.settings())
    checks: list[Check] = []
    runs: list[Run] = []
    for runtime in (r.for_target(target) for r in runtimes):
        role = roles.get(runtime.name, runtime.role)
        cell = Cell(
            conversion, runtime.name, target.name, role, target.required and role is Role.DEPLOY, where
        )
        limit = len(context.model.reference) if place.every_row and role is Role.DEPLOY else None
        found, run = _run_in_process(context, conversion, runtime, cell, limit)
        checks.extend(found)
        runs.extend([run] if run else [])
        if runtime.verifies and runtime.unavailable_reason() is None:
            verified = verification_check(runtime, conversion, target.name)
            checks.append(
                verified.model_copy(update={"required": cell.blocking, "role": role, "where": where})
            )
    return checks, runs


def _on_remote(
    context: ModelContext,
    spec: FormatSpec,
    conversion: Conversion,
    place: Place,
    reach: Reach,
    roles: dict[str, Role],
) -> tuple[list[Check], list[Run]]:
    """Run the format's runner on a target away from this process and check what came back."""
    target = place.target
    runner = spec.remote
    role = roles[runner.runtime]
    make = Cell(conversion, runner.runtime, target.name, role, target.required and role is Role.DEPLOY)
    reason = reach.unavailable(target)
    if reason:
        note = reason if target.required else f"skipped (optional target): {reason}"
        return [make("*", Verdict.UNAVAILABLE, explanation=note, stage=Stage.LOAD)], []
    limit = None if place.every_row else reach.rows_limit(target)
    index = sample_index(len(context.model.reference), limit)
    try:
        if conversion.path is None:
            raise ValueError(f"the {conversion.format} conversion has no artifact to run")
        X = rows_at(context.model.reference, index)
        result = reach.run(target, spec.name, runner, conversion.path, spec.remote_inputs(conversion, X))
    except Exception as err:
        message = f"{type(err).__name__}: {str(err).strip()[:800]}"
        return [make("*", Verdict.ERROR, explanation=message, stage=Stage.EVALUATE)], []
    where = result.where.merged(**target.settings())
    if ran_on(result.where) != target.platform:
        message = f"the runner ran on {ran_on(result.where)}, not on {target.platform}: its outputs prove nothing here"
        return [make("*", Verdict.FAIL, explanation=message, where=where, stage=Stage.EVALUATE)], []
    run = Run(
        target.name, runner.runtime, index, spec.outputs(result.outputs, conversion), role, make.blocking
    )
    cell = Cell(conversion, runner.runtime, target.name, role, make.blocking, where)
    checks = _output_checks(context, conversion, run, cell)
    if runner.replays_verification:
        rows = spec.embedded_rows(conversion)
        verified = "missing" if result.where.verification is None else result.where.verification
        # the record decides, as in-process (JPMML's own verify() passes a PMML without rows)
        if rows == 0:
            verdict, explanation = Verdict.NOT_COVERED, NOT_EMBEDDED
        elif verified == "ok":
            verdict, explanation = Verdict.PASS, f"{rows} embedded rows replayed"
        else:
            verdict, explanation = Verdict.FAIL, verified
        checks.append(
            make(
                "embedded-verification",
                verdict,
                kind="verification",
                rows=rows,
                explanation=explanation,
                where=where,
                stage=Stage.COMPARE if verdict is Verdict.FAIL else None,
            )
        )
    return checks, [run]


def cross_target_checks(
    context: ModelContext, conversion: Conversion, runs: list[Run], targets: dict[str, Target]
) -> list[Check]:
    """Each target's outputs against the first target's, for the same engine, on the rows both ran.

    Architecture and thread-count differences are findings: a disagreement beyond tolerance fails the
    cell and names the target.
    """
    spec = format_of(conversion.format)
    base = next((r for r in runs if r.runtime == spec.engine), None)
    if base is None:
        return []
    checks = []
    for run in runs:
        if run is base or run.target == base.target or not spec.same_engine(run.runtime):
            continue
        common, mine, theirs = np.intersect1d(run.index, base.index, return_indices=True)
        cell = Cell(conversion, run.runtime, run.target, run.role, run.blocking)
        for output, actual in run.outputs.items():
            if output not in base.outputs or output not in context.model.predictions:
                continue
            kind = kind_of(output, context.labels)
            tolerance = cross_target_tolerance(spec.precision(conversion), kind, context.overrides)
            theirs_out, mine_out, _ = align(
                _rows(base.outputs[output], theirs, len(base.index)),
                _rows(actual, mine, len(run.index)),
                spec.layout(conversion, output),
            )
            diff = compare(theirs_out, mine_out, tolerance)
            agree = diff.n_outside == 0
            who = f"{run.target}/{run.runtime} vs {base.target}/{base.runtime}"
            explanation = (
                f"{who}: {'agree' if agree else 'DISAGREE'} within {tolerance.describe()}"
                f"{'' if agree else f' on {diff.n_outside} row(s): {run.target} differs'}"
            )
            checks.append(
                cell(
                    output,
                    Verdict.PASS if agree else Verdict.FAIL,
                    kind=str(kind),
                    against=base.target,
                    rows=len(common),
                    max_abs=diff.max_abs,
                    max_rel=diff.max_rel,
                    n_outside=diff.n_outside,
                    first_outside=[int(common[i]) for i in diff.first_outside()],
                    tolerance=tolerance.describe(),
                    explanation=explanation,
                    stage=None if agree else Stage.COMPARE,
                    band=deviation_band(_deviation(diff, theirs_out, mine_out, tolerance), agree),
                )
            )
    return checks


def _rows(values: np.ndarray, index: np.ndarray, n_rows: int) -> np.ndarray:
    """The rows ``index`` of one run's output of ``n_rows`` rows, whichever axis its rows run along."""
    values = np.asarray(values)
    return values[:, index] if _row_axis(values, n_rows) == 1 else values[index]


def witness_notes(checks: list[Check], conversion: Conversion) -> list[Check]:
    """Where runtimes of one format disagree about an output, say which side scikit-learn agrees with.

    A witness that fails where a deploy runtime passes is named unfit for this model; a deploy runtime that
    fails where a witness passes is told that the artifact may be right and the runtime wrong for it.
    """
    by_output: dict[tuple[str, str], list[Check]] = {}
    for check in checks:
        if check.kind not in ("", "verification") and check.output != "*":
            by_output.setdefault((check.target, check.output), []).append(check)
    explanations: dict[int, str] = {}
    fmt = conversion.format.upper()
    for cells in by_output.values():
        passing = [c for c in cells if c.verdict is Verdict.PASS and c.role is Role.DEPLOY]
        witnesses = [c for c in cells if c.verdict is Verdict.PASS and c.role is Role.WITNESS]
        for check in cells:
            if check.verdict is not Verdict.FAIL:
                continue
            if check.role is Role.WITNESS and passing:
                others = ", ".join(sorted({c.runtime for c in passing}))
                explanations[id(check)] = (
                    f"{check.runtime}: {check.n_outside} row(s) differ{_by_up_to(check)}; {others} "
                    f"and scikit-learn agree: {check.runtime} evaluates this model wrongly (not a conversion bug). "
                    f"Do not serve this {fmt} with {check.runtime}."
                )
            elif check.role is Role.DEPLOY and witnesses:
                others = ", ".join(sorted({c.runtime for c in witnesses}))
                explanations[id(check)] = (
                    f"{others} agree(s) with scikit-learn where {check.runtime} does not: the artifact may be "
                    f"right and {check.runtime} wrong for it. {check.explanation}"
                )
    return [
        c.model_copy(update={"explanation": explanations[id(c)]}) if id(c) in explanations else c
        for c in checks
    ]


def _by_up_to(check: Check) -> str:
    return "" if check.max_abs is None else f", by up to {check.max_abs:.3g}"


def coverage_checks(context: ModelContext, conversion: Conversion, runs: list[Run]) -> list[Check]:
    """One row per reference output: how many reference rows a deploy runtime of this format compared.

    An output no deploy runtime gave is a failure of the format, unless its converter is known not to emit
    it for this estimator (``not covered``, explained, never blocking).
    """
    spec = format_of(conversion.format)
    n_rows = len(context.model.reference)
    known = spec.not_emitted(conversion, context.model.estimator)
    checks = []
    for output in context.model.predictions:
        giving = [r for r in runs if r.blocking and output in r.outputs]
        covered = np.unique(np.concatenate([r.index for r in giving])) if giving else np.array([], dtype=int)
        by = sorted({f"{r.runtime}@{r.target}" for r in giving})
        fields: dict[str, Any] = {
            "format": conversion.name,
            "runtime": "deploy",  # one cell per output whichever runtimes and targets gave it
            "output": output,
            "target": "*",
            "kind": "coverage",
            "rows": len(covered),
        }
        if len(covered) == n_rows:
            explanation = f"{n_rows} of {n_rows} reference rows compared by {', '.join(by)}"
            checks.append(Check(verdict=Verdict.PASS, explanation=explanation, **fields))
        elif not giving and output in known:
            checks.append(
                Check(verdict=Verdict.NOT_COVERED, explanation=f"not covered: {known[output]}", **fields)
            )
        else:
            what = spec.field_names(conversion, output)
            if giving:
                explanation = f"only {len(covered)} of {n_rows} reference rows compared by {', '.join(by)}"
            elif not any(r.blocking for r in runs):
                explanation = (
                    f"not compared: no deploy runtime evaluated the {conversion.format.upper()} artifact on a "
                    "deploy target (see its rows)"
                )
            else:
                explanation = (
                    f"the {conversion.format.upper()} artifact has no {what}: no deploy runtime gave {output}"
                )
            checks.append(
                Check(verdict=Verdict.FAIL, explanation=explanation, stage=Stage.COVERAGE, **fields)
            )
    return checks


def needs_remedy(conversion: Conversion, checks: list[Check]) -> bool:
    """Whether a float32 artifact failed a blocking comparison: its format's remedy may pass where it did not."""
    spec = format_of(conversion.format)
    if spec.remedy is None or conversion.variant is not None or not conversion.ok:
        return False
    if spec.precision(conversion) != "float32":
        return False
    return any(c.required and c.verdict is Verdict.FAIL and c.stage is Stage.COMPARE for c in checks)


def remedied(
    context: ModelContext,
    conversion: Conversion,
    checks: list[Check],
    out_dir: Path,
    targets: dict[str, Target] | None = None,
    roles: Mapping[str, str] | None = None,
    log: OutputLog | None = None,
) -> tuple[dict[str, Conversion], list[Check]]:
    """Try the format's remedy (a double-precision ONNX) when the float32 artifact failed a comparison.

    Parameters
    ----------
    context : ModelContext
    conversion : Conversion
        The format's own conversion, validated into ``checks``.
    checks : list of Check
        Its rows.
    out_dir : Path
        Where the variant is written.
    targets, roles, log
        As for :func:`validate_conversion` (the variant's outputs are kept in ``log`` too).

    Returns
    -------
    conversions : dict of str to Conversion
        By :attr:`~parity.core.records.Conversion.name`: the original, and the variant when one was tried.
    checks : list of Check
        Both sets of rows. When the variant passes, the original's rows no longer block (each says it was
        superseded) and the original is marked ``superseded_by`` the variant, which is archived instead; when
        it does not, the variant's rows are reported and do not block.
    """
    if not needs_remedy(conversion, checks):
        return {conversion.name: conversion}, checks
    spec = format_of(conversion.format)
    variant = spec.convert_remedy(context.model.estimator, context.model.reference, out_dir)
    tried = validate_conversion(context, variant, targets=targets, roles=roles, log=log)
    if variant.ok and decide_outcome(tried, False) is Outcome.PASSED:
        kept = [_superseded(c, variant) for c in checks]
        message = f"{variant.message}; passes where the float32 artifact failed: archived instead of it"
        variant = variant.model_copy(update={"message": message})
        original = conversion.model_copy(update={"superseded_by": variant.name})
        return {original.name: original, variant.name: variant}, kept + tried
    note = f"remedy tried for the failing float32 {conversion.format} artifact, and it does not pass either:"
    tried = [
        c.model_copy(update={"required": False, "explanation": f"{note} {c.explanation}"}) for c in tried
    ]
    return {conversion.name: conversion, variant.name: variant}, checks + tried


def _superseded(check: Check, variant: Conversion) -> Check:
    """A row of a float32 artifact whose double-precision variant passes: reported, no longer blocking."""
    if check.verdict is Verdict.FAIL and check.stage is Stage.COMPARE:
        explanation = (
            f"{check.n_outside} row(s) outside {check.tolerance} in the float32 artifact only: the "
            f"double-precision variant ({variant.name}) agrees with scikit-learn, so float32 numerics (inputs or "
            f"arithmetic) or a float32-only conversion defect are the cause; {variant.name} is archived instead. "
            f"Float32 finding: {check.explanation}"
        )
    else:
        explanation = f"superseded by {variant.name} (archived instead). {check.explanation}".strip()
    return check.model_copy(update={"required": False, "explanation": explanation})
