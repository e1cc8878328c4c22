"""Validate converted artifacts of one registered model: every runtime of a format, on every target.

Everything format-specific comes from the conversion's spec (:data:`parity.validators.formats.FORMATS`)
and everything reach-specific from the target's reach (:data:`parity.validators.targets.reaches.REACHES`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import is_classifier

from parity.core.records import Check, Conversion, ConversionStatus, Verdict, Where
from parity.core.tolerances import OutputKind, Tolerance, cross_target_tolerance, kind_of, tolerance_for
from parity.registry import RegisteredModel
from parity.registry.predictions import reference_predictions

from .compare import compare
from .formats import FormatSpec, format_of
from .runtimes import Runtime
from .targets.reaches import REACHES, Reach, describe_process, ran_on
from .targets.table import Target, load_targets

#: Rows a runtime is fed at a time, so memory stays flat whatever the reference set's size.
CHUNK_ROWS = 10_000
#: Rows outside tolerance that float32 input rounding may explain before the cell fails anyway.
MAX_EXPLAINED_FRACTION = 0.01


@dataclass
class ModelContext:
    """What validating one model needs, computed at most once."""

    model: RegisteredModel
    #: tolerance overrides; default: the registration's (a replayed bundle passes its metadata's)
    tolerances: dict[str, dict[str, float]] | None = None
    _rounded: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def classifier(self) -> bool:
        return is_classifier(self.model.estimator)

    @property
    def overrides(self) -> dict[str, dict[str, float]]:
        """The model's tolerance overrides, as registered."""
        return self.model.record.tolerances if self.tolerances is None else self.tolerances

    def rounded_reference(self) -> dict[str, np.ndarray]:
        """The estimator's outputs on the reference rows with numeric inputs rounded to float32."""
        if self._rounded is None:
            X = self.model.reference.copy()
            for column in X.columns:
                if pd.api.types.is_float_dtype(X[column]):
                    X[column] = X[column].astype(np.float32).astype(np.float64)
            self._rounded = reference_predictions(self.model.estimator, X)
        return self._rounded


def conversion_check(conversion: Conversion) -> Check:
    """The report row for a conversion that did not produce an artifact."""
    verdict = Verdict.UNSUPPORTED if conversion.status is ConversionStatus.UNSUPPORTED else Verdict.FAIL
    return Check(
        format=conversion.format,
        runtime="converter",
        output="conversion",
        verdict=verdict,
        target="*",  # a conversion happens once, whatever the targets
        kind="conversion",
        explanation=conversion.message,
    )


def sample_index(n_rows: int, limit: int | None) -> np.ndarray:
    """Rows a sampling runtime evaluates: evenly spread, deterministic."""
    if limit is None or n_rows <= limit:
        return np.arange(n_rows)
    return np.unique(np.linspace(0, n_rows - 1, limit).round().astype(int))


def run_runtime(runtime: Runtime, conversion: Conversion, X: pd.DataFrame) -> dict[str, np.ndarray]:
    """Evaluate ``X`` in chunks and map the runtime's outputs to reference outputs."""
    spec = format_of(conversion.format)
    path = conversion.path
    if path is None:
        raise ValueError(f"the {conversion.format} conversion produced no artifact to evaluate")
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, len(X), CHUNK_ROWS):
        chunk = X.iloc[start : start + CHUNK_ROWS]
        parts.append(spec.outputs(runtime.evaluate(path, spec.feeds(conversion, chunk)), conversion))
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


@dataclass(frozen=True)
class Run:
    """Outputs of one runtime on one target, mapped to reference outputs, for cross-target comparison."""

    target: str
    runtime: str
    index: np.ndarray
    outputs: dict[str, np.ndarray]


def _cell_of(conversion: Conversion, runtime: str, target: str, required: bool, where: Where | None = None):
    """A maker of this runtime-and-target's rows (the fields every one of its checks shares)."""
    shared: dict[str, Any] = {
        "format": conversion.format,
        "runtime": runtime,
        "target": target,
        "required": required,
    }
    if where is not None:
        shared["where"] = where

    def make(output: str, verdict: Verdict, **fields: Any) -> Check:
        return Check(output=output, verdict=verdict, **shared, **fields)

    return make


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
        Whether the target's verdicts block the model.

    Returns
    -------
    list of Check
    """
    return _run_in_process(context, conversion, runtime, target, required, Where())[0]


def _run_in_process(
    context: ModelContext, conversion: Conversion, runtime: Runtime, target: str, required: bool, where: Where
) -> tuple[list[Check], Run | None]:
    make = _cell_of(conversion, runtime.name, target, required, where)
    reason = runtime.unavailable_reason()
    if reason:
        return [make("*", Verdict.UNAVAILABLE, explanation=reason)], None
    model = context.model
    index = sample_index(len(model.reference), runtime.sample_rows)
    try:
        outputs = run_runtime(runtime, conversion, model.reference.iloc[index])
    except Exception as err:
        return [make("*", Verdict.ERROR, explanation=f"{type(err).__name__}: {str(err).strip()[:500]}")], None
    run = Run(target, runtime.name, index, outputs)
    return _output_checks(context, conversion, run, required, where), run


def _output_checks(
    context: ModelContext, conversion: Conversion, run: Run, required: bool, where: Where
) -> list[Check]:
    make = _cell_of(conversion, run.runtime, run.target, required, where)
    checks = [
        _check_output(context, conversion, make, output, actual, run.index)
        for output, actual in run.outputs.items()
        if output in context.model.predictions
    ]
    return checks or [make("*", Verdict.FAIL, explanation="no output matched the reference outputs")]


def _check_output(
    context: ModelContext, conversion: Conversion, make, output: str, actual: np.ndarray, index: np.ndarray
) -> Check:
    kind = kind_of(output, context.classifier)
    precision = format_of(conversion.format).precision(conversion)
    tolerance = tolerance_for(precision, kind, context.overrides)
    expected = context.model.predictions[output][index]
    base: dict[str, Any] = {"kind": str(kind), "rows": len(index), "tolerance": tolerance.describe()}
    try:
        diff = compare(expected, actual, tolerance)
    except ValueError as err:
        return make(output, Verdict.FAIL, explanation=f"not comparable: {err}", **base)
    figures: dict[str, Any] = {
        "max_abs": diff.max_abs,
        "max_rel": diff.max_rel,
        "n_outside": diff.n_outside,
        "first_outside": [int(index[i]) for i in diff.first_outside()],
    }
    if diff.n_outside == 0:
        return make(output, Verdict.PASS, **base, **figures)
    verdict, explanation = _explain(context, precision, output, tolerance, actual, index, diff.outside, kind)
    return make(output, verdict, explanation=explanation, **base, **figures)


def _explain(
    context: ModelContext,
    precision: str,
    output: str,
    tolerance: Tolerance,
    actual: np.ndarray,
    index: np.ndarray,
    outside: np.ndarray,
    kind: OutputKind,
) -> tuple[Verdict, str]:
    """Say why rows are outside tolerance, and whether that is a conversion bug."""
    n = int(outside.sum())
    if precision != "float32":
        return Verdict.FAIL, (
            f"{n} row(s) outside {tolerance.describe()} in a double-precision artifact: a conversion or runtime "
            "bug, not rounding. Compare the runtimes' rows to see which side is wrong."
        )
    rounded = context.rounded_reference()[output][index]
    again = compare(rounded[outside], np.asarray(actual)[outside], tolerance)
    explained = n - again.n_outside
    limit = max(1, int(MAX_EXPLAINED_FRACTION * len(index)))
    if again.n_outside == 0 and explained <= limit:
        return Verdict.PASS, (
            f"{n} row(s) outside the band are explained by float32 input rounding: scikit-learn on "
            "float32-rounded inputs agrees with the runtime (inputs near a split). Remedy if it matters: "
            "double-precision inputs or a CastTransformer."
        )
    if again.n_outside == 0:
        return Verdict.FAIL, (
            f"{n} row(s) outside the band, all from float32 input rounding, more than the {limit} allowed: "
            "the model is too sensitive to float32 inputs; convert with double inputs."
        )
    hint = (
        "labels differ beyond input rounding: a conversion bug"
        if kind == OutputKind.LABEL
        else "float32 arithmetic in the runtime (summed trees, reciprocal scaling) or a conversion bug; "
        "raise this model's tolerance only if the drift is acceptable"
    )
    return (
        Verdict.FAIL,
        f"{n} row(s) outside {tolerance.describe()}, {again.n_outside} not explained by float32 input rounding: {hint}.",
    )


def verification_check(runtime: Runtime, conversion: Conversion, target: str) -> Check:
    """A runtime's replay of the artifact's embedded verification rows, as its own report row."""
    rows = format_of(conversion.format).embedded_rows(conversion)
    try:
        if conversion.path is None:
            raise ValueError(f"the {conversion.format} conversion produced no artifact to verify")
        passed, message = runtime.verify(conversion.path)
    except Exception as err:
        passed, message = False, f"{type(err).__name__}: {err}"
    return Check(
        format=conversion.format,
        runtime=runtime.name,
        output="embedded-verification",
        verdict=Verdict.PASS if passed else Verdict.FAIL,
        target=target,
        kind="verification",
        rows=rows,
        explanation=message,
    )


def validate_conversion(
    context: ModelContext,
    conversion: Conversion,
    runtime_names: list[str] | None = None,
    targets: dict[str, Target] | None = None,
) -> list[Check]:
    """Every runtime of the conversion's format on every target, plus embedded verification and
    cross-target comparisons.

    Parameters
    ----------
    context : ModelContext
    conversion : Conversion
    runtime_names : list of str, optional
        Restrict the in-process runtimes to these entries of :data:`parity.validators.RUNTIMES`.
    targets : dict of str to Target, optional
        Default: :func:`parity.validators.targets.table.load_targets`.

    Returns
    -------
    list of Check
        A single conversion row when the conversion produced no artifact.
    """
    if not conversion.ok:
        return [conversion_check(conversion)]
    targets = load_targets() if targets is None else targets
    spec = format_of(conversion.format)
    primary = next((t for t in targets.values() if REACHES[t.reach].in_process), None)
    checks: list[Check] = []
    runs: list[Run] = []
    for target in targets.values():
        reach = REACHES[target.reach]
        if reach.in_process:
            found, made = _on_this_process(
                context, spec, conversion, target, target is primary, runtime_names
            )
        else:
            found, made = _on_remote(context, spec, conversion, target, reach)
        checks.extend(found)
        runs.extend(made)
    return checks + cross_target_checks(context, conversion, runs, targets)


def _on_this_process(
    context: ModelContext,
    spec: FormatSpec,
    conversion: Conversion,
    target: Target,
    primary: bool,
    runtime_names: list[str] | None,
) -> tuple[list[Check], list[Run]]:
    """The primary process target runs every runtime; others only the runtimes their settings tune."""
    runtimes = [r for r in spec.runtimes if primary or r.tuned_by]
    if primary and runtime_names is not None:
        runtimes = [r for r in runtimes if r.name in runtime_names]
    where = describe_process().merged(**target.settings())
    checks: list[Check] = []
    runs: list[Run] = []
    for runtime in (r.for_target(target) for r in runtimes):
        found, run = _run_in_process(context, conversion, runtime, target.name, target.required, where)
        checks.extend(found)
        runs.extend([run] if run else [])
        if runtime.verifies and runtime.unavailable_reason() is None:
            verified = verification_check(runtime, conversion, target.name)
            checks.append(verified.model_copy(update={"required": target.required, "where": where}))
    return checks, runs


def _on_remote(
    context: ModelContext, spec: FormatSpec, conversion: Conversion, target: Target, reach: Reach
) -> tuple[list[Check], list[Run]]:
    """Run the format's runner on a target away from this process and check what came back."""
    runner = spec.remote
    make = _cell_of(conversion, runner.runtime, target.name, target.required)
    reason = reach.unavailable(target)
    if reason:
        note = reason if target.required else f"skipped (optional target): {reason}"
        return [make("*", Verdict.UNAVAILABLE, explanation=note)], []
    index = sample_index(len(context.model.reference), reach.rows_limit(target))
    try:
        if conversion.path is None:
            raise ValueError(f"the {conversion.format} conversion has no artifact to run")
        X = context.model.reference.iloc[index]
        result = reach.run(target, spec.name, runner, conversion.path, spec.remote_inputs(conversion, X))
    except Exception as err:
        return [make("*", Verdict.ERROR, explanation=f"{type(err).__name__}: {str(err).strip()[:800]}")], []
    where = result.where.merged(**target.settings())
    if ran_on(result.where) != target.platform:
        message = f"the runner ran on {ran_on(result.where)}, not on {target.platform}: its outputs prove nothing here"
        return [make("*", Verdict.FAIL, explanation=message, where=where)], []
    run = Run(target.name, runner.runtime, index, spec.outputs(result.outputs, conversion))
    checks = _output_checks(context, conversion, run, target.required, where)
    if runner.replays_verification:
        verified = "missing" if result.where.verification is None else result.where.verification
        checks.append(
            make(
                "embedded-verification",
                Verdict.PASS if verified == "ok" else Verdict.FAIL,
                kind="verification",
                rows=spec.embedded_rows(conversion),
                explanation="embedded rows replayed" if verified == "ok" else verified,
                where=where,
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
        for output, actual in run.outputs.items():
            if output not in base.outputs or output not in context.model.predictions:
                continue
            kind = kind_of(output, context.classifier)
            tolerance = cross_target_tolerance(spec.precision(conversion), kind, context.overrides)
            diff = compare(base.outputs[output][theirs], actual[mine], tolerance)
            agree = diff.n_outside == 0
            who = f"{run.target}/{run.runtime} vs {base.target}/{base.runtime}"
            explanation = (
                f"{who}: {'agree' if agree else 'DISAGREE'} within {tolerance.describe()}"
                f"{'' if agree else f' on {diff.n_outside} row(s): {run.target} differs'}"
            )
            checks.append(
                Check(
                    format=conversion.format,
                    runtime=run.runtime,
                    output=output,
                    verdict=Verdict.PASS if agree else Verdict.FAIL,
                    target=run.target,
                    kind=str(kind),
                    against=base.target,
                    rows=len(common),
                    max_abs=diff.max_abs,
                    max_rel=diff.max_rel,
                    n_outside=diff.n_outside,
                    first_outside=[int(common[i]) for i in diff.first_outside()],
                    tolerance=tolerance.describe(),
                    explanation=explanation,
                    required=targets[run.target].required,
                )
            )
    return checks
