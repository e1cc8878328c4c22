"""Validate converted artifacts of one registered model: every runtime of a format, on every target."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import is_classifier

from parity.converters import Conversion
from parity.converters.onnx import feeds
from parity.core.tolerances import cross_target_tolerance, kind_of, tolerance_for
from parity.registry import RegisteredModel
from parity.registry.predictions import reference_predictions

from .compare import compare
from .outputs import onnx_outputs, pmml_outputs
from .report import Check, Verdict
from .runtimes import Runtime
from .targets.remote import REMOTE_RUNTIMES, describe_process, ran_on, remote_unavailable, run_remote
from .targets.table import Target, load_targets

#: Rows a runtime is fed at a time, so memory stays flat whatever the reference set's size.
CHUNK_ROWS = 10_000
#: Rows outside tolerance that float32 input rounding may explain before the cell fails anyway.
MAX_EXPLAINED_FRACTION = 0.01


@dataclass
class ModelContext:
    """What validating one model needs, computed at most once."""

    model: RegisteredModel
    _rounded: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def classifier(self) -> bool:
        return is_classifier(self.model.estimator)

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
    verdict = Verdict.UNSUPPORTED if str(conversion.status) == "unsupported" else Verdict.FAIL
    return Check(
        conversion.format,
        "converter",
        "conversion",
        verdict,
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
    path = conversion.path
    if path is None:
        raise ValueError(f"the {conversion.format} conversion produced no artifact to evaluate")
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, len(X), CHUNK_ROWS):
        chunk = X.iloc[start : start + CHUNK_ROWS]
        if conversion.format == "onnx":
            raw = runtime.evaluate(path, feeds(conversion.details["inputs"], chunk))
            parts.append(onnx_outputs(raw, conversion))
        else:
            parts.append(pmml_outputs(runtime.evaluate(path, chunk), conversion))
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


@dataclass(frozen=True)
class Run:
    """Outputs of one runtime on one target, mapped to reference outputs, for cross-target comparison."""

    target: str
    runtime: str
    index: np.ndarray
    outputs: dict[str, np.ndarray]


def validate_runtime(
    context: ModelContext, conversion: Conversion, runtime: Runtime, target: str, *, required: bool = True
) -> list[Check]:
    """Compare one runtime's outputs of one artifact with the reference, one row per output.

    Parameters
    ----------
    context : ModelContext
    conversion : Conversion
        A successful conversion.
    runtime : object
        An entry of :data:`validators.RUNTIMES` of the conversion's format.
    target : str
        Where the runtime runs (for the report).
    required : bool
        Whether the target's verdicts block the model.

    Returns
    -------
    list of Check
    """
    return _run_in_process(context, conversion, runtime, target, required)[0]


def _run_in_process(
    context: ModelContext, conversion: Conversion, runtime: Runtime, target: str, required: bool
) -> tuple[list[Check], Run | None]:
    name = runtime.name
    row: dict[str, Any] = {"target": target, "required": required}
    reason = runtime.unavailable_reason()
    if reason:
        return [Check(conversion.format, name, "*", Verdict.UNAVAILABLE, explanation=reason, **row)], None
    model = context.model
    index = sample_index(len(model.reference), getattr(runtime, "sample_rows", None))
    try:
        outputs = run_runtime(runtime, conversion, model.reference.iloc[index])
    except Exception as err:
        message = f"{type(err).__name__}: {str(err).strip()[:500]}"
        return [Check(conversion.format, name, "*", Verdict.ERROR, explanation=message, **row)], None
    run = Run(target, name, index, outputs)
    return _output_checks(context, conversion, run, required), run


def _output_checks(
    context: ModelContext, conversion: Conversion, run: Run, required: bool, where: dict | None = None
) -> list[Check]:
    checks = [
        _check_output(context, conversion, run.runtime, run.target, output, actual, run.index)
        for output, actual in run.outputs.items()
        if output in context.model.predictions
    ]
    if not checks:
        checks.append(
            Check(
                conversion.format,
                run.runtime,
                "*",
                Verdict.FAIL,
                target=run.target,
                explanation="no output matched the reference outputs",
            )
        )
    return [replace(c, required=required, where=where or {}) for c in checks]


def _check_output(
    context: ModelContext,
    conversion: Conversion,
    runtime: str,
    target: str,
    output: str,
    actual: np.ndarray,
    index: np.ndarray,
) -> Check:
    model = context.model
    kind = kind_of(output, context.classifier)
    precision = conversion.details.get("precision", "float64")
    tolerance = tolerance_for(precision, kind, model.record.get("tolerances"))
    expected = model.predictions[output][index]
    base: dict[str, Any] = {
        "target": target,
        "kind": str(kind),
        "rows": len(index),
        "tolerance": tolerance.describe(),
    }
    try:
        diff = compare(expected, actual, tolerance)
    except ValueError as err:
        return Check(
            conversion.format, runtime, output, Verdict.FAIL, explanation=f"not comparable: {err}", **base
        )
    figures: dict[str, Any] = {
        "max_abs": diff.max_abs,
        "max_rel": diff.max_rel,
        "n_outside": diff.n_outside,
        "first_outside": [int(index[i]) for i in diff.first_outside()],
    }
    if diff.n_outside == 0:
        return Check(conversion.format, runtime, output, Verdict.PASS, **base, **figures)
    verdict, explanation = _explain(context, precision, output, tolerance, actual, index, diff.outside, kind)
    return Check(conversion.format, runtime, output, verdict, explanation=explanation, **base, **figures)


def _explain(context, precision, output, tolerance, actual, index, outside, kind) -> tuple[Verdict, str]:
    """Say why rows are outside tolerance, and whether that is a conversion bug."""
    n = int(outside.sum())
    if precision != "float32":
        return Verdict.FAIL, (
            f"{n} row(s) outside {tolerance.describe()} in a double-precision artifact: a conversion or runtime "
            "bug, not rounding. Compare the runtimes' rows to see which side is wrong."
        )
    rounded = context.rounded_reference()[output][index]
    again = compare(
        rounded[outside],
        np.asarray(actual)[outside],
        tolerance,
    )
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
        if kind == "label"
        else "float32 arithmetic in the runtime (summed trees, reciprocal scaling) or a conversion bug; "
        "raise this model's tolerance only if the drift is acceptable"
    )
    return (
        Verdict.FAIL,
        f"{n} row(s) outside {tolerance.describe()}, {again.n_outside} not explained by float32 input rounding: {hint}.",
    )


def verification_check(runtime: Runtime, conversion: Conversion, target: str) -> Check:
    """JPMML's replay of the PMML's embedded verification rows, as its own report row."""
    rows = conversion.details.get("verification_rows", 0)
    try:
        passed, message = runtime.verify(conversion.path)  # type: ignore[attr-defined]
    except Exception as err:
        passed, message = False, f"{type(err).__name__}: {err}"
    verdict = Verdict.PASS if passed else Verdict.FAIL
    return Check(
        "pmml",
        runtime.name,
        "embedded-verification",
        verdict,
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
        Restrict the in-process runtimes to these entries of :data:`validators.RUNTIMES`.
    targets : dict of str to Target, optional
        Default: :func:`validators.targets.table.load_targets`.

    Returns
    -------
    list of Check
        A single conversion row when the conversion produced no artifact.
    """
    if not conversion.ok:
        return [conversion_check(conversion)]
    targets = load_targets() if targets is None else targets
    primary = next((t for t in targets.values() if t.reach == "process"), None)
    checks: list[Check] = []
    runs: list[Run] = []
    for target in targets.values():
        if target.reach == "process":
            found, made = _on_this_process(context, conversion, target, target is primary, runtime_names)
        else:
            found, made = _on_remote(context, conversion, target)
        checks.extend(found)
        runs.extend(made)
    return checks + cross_target_checks(context, conversion, runs, targets)


def _on_this_process(
    context, conversion, target: Target, primary: bool, runtime_names
) -> tuple[list[Check], list[Run]]:
    """The primary process target runs every runtime; others only the runtime their settings change."""
    from . import runtimes_for

    runtimes = runtimes_for(conversion.format) if primary else []
    runtimes = [r for r in runtimes if runtime_names is None or r.name in runtime_names]
    if conversion.format == "onnx" and (not primary or any(r.name == "onnxruntime" for r in runtimes)):
        tuned = _tuned_onnxruntime(target.threads, target.graph_optimization)
        runtimes = [tuned if r.name == "onnxruntime" else r for r in runtimes] if primary else [tuned]
    where = describe_process() | target.settings()
    checks: list[Check] = []
    runs: list[Run] = []
    for runtime in runtimes:
        found, run = _run_in_process(context, conversion, runtime, target.name, target.required)
        checks.extend(replace(c, where=where) for c in found)
        runs.extend([run] if run else [])
        if hasattr(runtime, "verify") and runtime.unavailable_reason() is None:
            checks.append(
                replace(
                    verification_check(runtime, conversion, target.name),
                    required=target.required,
                    where=where,
                )
            )
    return checks, runs


@functools.cache
def _tuned_onnxruntime(threads: int, graph_optimization: str):
    """One onnxruntime runtime per setting, so its session cache serves every model of a run."""
    from .runtimes.onnx import OnnxruntimeRuntime

    return OnnxruntimeRuntime(threads, graph_optimization)


def _on_remote(
    context: ModelContext, conversion: Conversion, target: Target
) -> tuple[list[Check], list[Run]]:
    """Run the format's runner on an emulated or work-pool target and check what came back."""
    fmt, runtime = conversion.format, REMOTE_RUNTIMES[conversion.format]
    row: dict[str, Any] = {"target": target.name, "required": target.required}
    reason = remote_unavailable(target)
    if reason:
        note = reason if target.required else f"skipped (optional target): {reason}"
        return [Check(fmt, runtime, "*", Verdict.UNAVAILABLE, explanation=note, **row)], []
    index = sample_index(len(context.model.reference), target.rows_limit())
    try:
        result = run_remote(target, conversion, context.model.reference.iloc[index])
    except Exception as err:
        message = f"{type(err).__name__}: {str(err).strip()[:800]}"
        return [Check(fmt, runtime, "*", Verdict.ERROR, explanation=message, **row)], []
    where = result.where | target.settings()
    if ran_on(result.where) != target.platform:
        message = f"the runner ran on {ran_on(result.where)}, not on {target.platform}: its outputs prove nothing here"
        return [Check(fmt, runtime, "*", Verdict.FAIL, explanation=message, where=where, **row)], []
    if fmt == "onnx":
        outputs = onnx_outputs(result.outputs, conversion)
    else:
        outputs = pmml_outputs(result.outputs, conversion)
    run = Run(target.name, runtime, index, outputs)
    checks = _output_checks(context, conversion, run, target.required, where)
    if fmt == "pmml":
        verified = str(result.where.get("verification", "missing"))
        checks.append(
            Check(
                "pmml",
                runtime,
                "embedded-verification",
                Verdict.PASS if verified == "ok" else Verdict.FAIL,
                kind="verification",
                rows=conversion.details.get("verification_rows", 0),
                explanation="embedded rows replayed" if verified == "ok" else verified,
                where=where,
                **row,
            )
        )
    return checks, [run]


#: Which in-process runtime a remote runner's outputs are compared with, per format.
_SAME_ENGINE = {"onnx": "onnxruntime", "pmml": "jpmml_evaluator"}


def cross_target_checks(
    context: ModelContext, conversion: Conversion, runs: list[Run], targets: dict[str, Target]
) -> list[Check]:
    """Each target's outputs against the first target's, for the same engine, on the rows both ran.

    Architecture and thread-count differences are findings: a disagreement beyond tolerance fails the
    cell and names the target.
    """
    engine = _SAME_ENGINE[conversion.format]
    base = next((r for r in runs if r.runtime == engine), None)
    if base is None:
        return []
    checks = []
    for run in runs:
        if (
            run is base
            or run.target == base.target
            or run.runtime not in (engine, REMOTE_RUNTIMES[conversion.format])
        ):
            continue
        common, mine, theirs = np.intersect1d(run.index, base.index, return_indices=True)
        for output, actual in run.outputs.items():
            if output not in base.outputs or output not in context.model.predictions:
                continue
            kind = kind_of(output, context.classifier)
            tolerance = cross_target_tolerance(
                conversion.details.get("precision", "float64"), kind, context.model.record.get("tolerances")
            )
            diff = compare(base.outputs[output][theirs], actual[mine], tolerance)
            verdict = Verdict.PASS if diff.n_outside == 0 else Verdict.FAIL
            who = f"{run.target}/{run.runtime} vs {base.target}/{base.runtime}"
            explanation = (
                f"{who}: {'agree' if diff.n_outside == 0 else 'DISAGREE'} within {tolerance.describe()}"
                f"{'' if diff.n_outside == 0 else f' on {diff.n_outside} row(s): {run.target} differs'}"
            )
            checks.append(
                Check(
                    conversion.format,
                    run.runtime,
                    output,
                    verdict,
                    target=run.target,
                    kind=f"{kind} vs {base.target}",
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
