"""Validate converted artifacts of one registered model in every runtime of a format."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import is_classifier

from converters import Conversion
from converters.onnx import feeds
from registry import RegisteredModel
from registry.predictions import reference_predictions

from .compare import compare
from .outputs import onnx_outputs, pmml_outputs
from .report import Check, Verdict, native_target
from .tolerances import Exact, kind_of, tolerance_for

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
        kind="conversion",
        explanation=conversion.message,
    )


def sample_index(n_rows: int, limit: int | None) -> np.ndarray:
    """Rows a sampling runtime evaluates: evenly spread, deterministic."""
    if limit is None or n_rows <= limit:
        return np.arange(n_rows)
    return np.unique(np.linspace(0, n_rows - 1, limit).round().astype(int))


def run_runtime(runtime: object, conversion: Conversion, X: pd.DataFrame) -> dict[str, np.ndarray]:
    """Evaluate ``X`` in chunks and map the runtime's outputs to reference outputs."""
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, len(X), CHUNK_ROWS):
        chunk = X.iloc[start : start + CHUNK_ROWS]
        if conversion.format == "onnx":
            raw = runtime.evaluate(conversion.path, feeds(conversion.details["inputs"], chunk))
            parts.append(onnx_outputs(raw, conversion))
        else:
            parts.append(pmml_outputs(runtime.evaluate(conversion.path, chunk), conversion))
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def validate_runtime(
    context: ModelContext, conversion: Conversion, runtime: object, target: str
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

    Returns
    -------
    list of Check
    """
    name = runtime.name
    reason = runtime.unavailable_reason()
    if reason:
        return [Check(conversion.format, name, "*", Verdict.UNAVAILABLE, target=target, explanation=reason)]
    model = context.model
    index = sample_index(len(model.reference), getattr(runtime, "sample_rows", None))
    try:
        outputs = run_runtime(runtime, conversion, model.reference.iloc[index])
    except Exception as err:
        message = f"{type(err).__name__}: {str(err).strip()[:500]}"
        return [Check(conversion.format, name, "*", Verdict.ERROR, target=target, explanation=message)]
    checks = [
        _check_output(context, conversion, name, target, output, actual, index)
        for output, actual in outputs.items()
        if output in model.predictions
    ]
    if not checks:
        checks.append(
            Check(
                conversion.format,
                name,
                "*",
                Verdict.FAIL,
                target=target,
                explanation="no output matched the reference outputs",
            )
        )
    return checks


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
    base = {"target": target, "kind": str(kind), "rows": len(index), "tolerance": tolerance.describe()}
    try:
        diff = compare(expected, actual, tolerance)
    except ValueError as err:
        return Check(
            conversion.format, runtime, output, Verdict.FAIL, explanation=f"not comparable: {err}", **base
        )
    figures = {
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
        tolerance if not isinstance(tolerance, Exact) else Exact(),
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


def verification_check(runtime: object, conversion: Conversion, target: str) -> Check:
    """JPMML's replay of the PMML's embedded verification rows, as its own report row."""
    rows = conversion.details.get("verification_rows", 0)
    try:
        passed, message = runtime.verify(conversion.path)
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
    context: ModelContext, conversion: Conversion, runtime_names: list[str] | None = None
) -> list[Check]:
    """Every runtime of the conversion's format (or those named), plus JPMML's embedded verification.

    Parameters
    ----------
    context : ModelContext
    conversion : Conversion
    runtime_names : list of str, optional
        Restrict to these entries of :data:`validators.RUNTIMES`.

    Returns
    -------
    list of Check
        A single conversion row when the conversion produced no artifact.
    """
    from . import runtimes_for

    if not conversion.ok:
        return [conversion_check(conversion)]
    target = native_target()
    checks: list[Check] = []
    for runtime in runtimes_for(conversion.format):
        if runtime_names is not None and runtime.name not in runtime_names:
            continue
        checks.extend(validate_runtime(context, conversion, runtime, target))
        if hasattr(runtime, "verify") and runtime.unavailable_reason() is None:
            checks.append(verification_check(runtime, conversion, target))
    return checks
