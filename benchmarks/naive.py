"""The plain, sequential way to do what ``parity run`` does, as the baseline of ``benchmarks/sweep.py``.

For each registered model (latest versions): load it from the registry, one ``sklearn2pmml.sklearn2pmml()``
call (a new JVM each), one skl2onnx conversion, then the same runtime calls as Parity, each the plain
way: a fresh ``pypmml.Model.fromFile`` per call, a fresh ``jpmml_evaluator.make_evaluator`` (JPype backend)
per call (evaluate and embedded verification), a new onnxruntime session per call, and onnx's
ReferenceEvaluator on the same sample size Parity uses. Outputs are compared with the reference
predictions (``numpy.allclose``) so the work is not skipped. No Prefect, no archive.

Run: ``.venv/bin/python benchmarks/naive.py --registry R [--out FILE.json]``; prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

T0 = time.perf_counter()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

#: The same sample Parity's onnx-reference runtime evaluates (parity.validators.runtimes.onnx.OnnxReferenceRuntime).
REFERENCE_SAMPLE_ROWS = 500
VERIFY_ROWS = 100


def onnx_inputs(X: pd.DataFrame):
    """One float matrix for all-numeric frames, else one [N, 1] input per column (float or string)."""
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    numeric = [pd.api.types.is_numeric_dtype(X[c]) for c in X.columns]
    if all(numeric):
        types = [("X", FloatTensorType([None, X.shape[1]]))]
        return types, lambda F: {"X": F.to_numpy(np.float64).astype(np.float32)}
    types = [
        (c, FloatTensorType([None, 1]) if n else StringTensorType([None, 1]))
        for c, n in zip(X.columns, numeric, strict=True)
    ]

    def feeds(F):
        out = {}
        for c, n in zip(F.columns, numeric, strict=True):
            block = F[[c]]
            out[c] = (
                block.to_numpy(np.float64).astype(np.float32)
                if n
                else block.astype(object).where(block.notna(), "").astype(str).to_numpy(object)
            )
        return out

    return types, feeds


def check(expected: np.ndarray, actual: np.ndarray) -> bool:
    expected, actual = np.asarray(expected), np.asarray(actual)
    if expected.dtype.kind in "fc":
        return bool(np.allclose(expected, actual.astype(np.float64).reshape(expected.shape), atol=1e-3))
    return bool((expected.astype(str) == actual.astype(str).reshape(expected.shape)).all())


def one_model(registry, ref, workdir: Path, times: dict) -> dict:
    import onnxruntime as ort
    import skl2onnx
    from jpmml_evaluator import make_evaluator
    from onnx.reference import ReferenceEvaluator
    from pypmml import Model
    from sklearn.base import is_classifier
    from sklearn2pmml import make_pmml_pipeline, sklearn2pmml

    def timed(stage, fn):
        start = time.perf_counter()
        result = fn()
        times[stage] = times.get(stage, 0.0) + time.perf_counter() - start
        return result

    model = timed("load", lambda: registry.open(ref))
    est, X, preds = model.estimator, model.reference, model.predictions
    classifier = is_classifier(est)
    pmml_path, onnx_path = workdir / f"{ref.name}.pmml", workdir / f"{ref.name}.onnx"

    def to_pmml():
        pipeline = make_pmml_pipeline(est, active_fields=list(X.columns), target_fields=["y"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipeline.verify(X.sample(n=min(VERIFY_ROWS, len(X)), random_state=0))
        sklearn2pmml(pipeline, str(pmml_path))

    timed("pmml conversion (sklearn2pmml, new JVM each)", to_pmml)
    types, feeds = onnx_inputs(X)

    def to_onnx():
        options = {id(est): {"zipmap": False}} if classifier else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onx = skl2onnx.convert_sklearn(
                est, initial_types=types, options=options, target_opset={"": 18, "ai.onnx.ml": 3}
            )
        onnx_path.write_bytes(onx.SerializeToString())

    timed("onnx conversion (skl2onnx)", to_onnx)
    ok = {}
    arguments = X.astype(object).where(X.notna(), None)

    def jpmml():
        result = make_evaluator(str(pmml_path), backend="jpype").evaluateAll(arguments)
        return check(preds["predict"], result["y"].to_numpy())

    def jpmml_verify():
        make_evaluator(str(pmml_path), backend="jpype").verify()
        return True

    def pypmml():
        result = Model.fromFile(str(pmml_path)).predict(X)
        if classifier:
            cols = [f"probability({c})" for c in est.classes_]
            return check(preds["predict_proba"], result[cols].to_numpy())
        return check(preds["predict"], result.iloc[:, 0].to_numpy())

    def onnxruntime():
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        return check(preds["predict"], session.run(None, feeds(X))[0])

    index = np.unique(np.linspace(0, len(X) - 1, min(REFERENCE_SAMPLE_ROWS, len(X))).round().astype(int))

    def reference():
        out = ReferenceEvaluator(str(onnx_path)).run(None, feeds(X.iloc[index]))
        return check(preds["predict"][index], out[0])

    for name, fn in [
        ("jpmml_evaluator", jpmml),
        ("jpmml_evaluator verify", jpmml_verify),
        ("pypmml", pypmml),
        ("onnxruntime", onnxruntime),
        ("onnx-reference", reference),
    ]:
        ok[name] = timed(f"runtime: {name}", fn)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", required=True)
    parser.add_argument("--out")
    args = parser.parse_args()
    from parity.registry import FileRegistry

    times: dict[str, float] = {"imports (numpy, pandas, registry)": time.perf_counter() - T0}
    start = time.perf_counter()
    import jpmml_evaluator  # noqa: F401
    import onnxruntime  # noqa: F401
    import pypmml  # noqa: F401
    import skl2onnx  # noqa: F401
    import sklearn2pmml  # noqa: F401

    times["imports (converters, runtimes)"] = time.perf_counter() - start
    registry = FileRegistry(args.registry)
    latest = {ref.name: ref for ref in registry.refs()}
    results = {}
    with tempfile.TemporaryDirectory(prefix="parity-naive-") as workdir:
        for ref in latest.values():
            results[str(ref)] = one_model(registry, ref, Path(workdir), times)
    report = {
        "models": len(latest),
        "seconds_in_process": round(time.perf_counter() - T0, 2),
        "stage_seconds": {k: round(v, 3) for k, v in times.items()},
        "all_matched": all(all(r.values()) for r in results.values()),
        "matched": results,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
