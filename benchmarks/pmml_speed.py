"""PMML evaluation speed (issue 10, P2): Parity's PMML path against each engine's own plain-Java speed.

Five models fitted on synthetic data (``make_classification`` / ``make_regression``, 20 features, fixed
seed): StandardScaler + LogisticRegression, RandomForestClassifier (100 trees, depth 12),
GradientBoostingRegressor (100), HistGradientBoostingClassifier (100 iterations), MLPClassifier (64, 64).
Each is converted with Parity's converters (PMML: sklearn2pmml in the warm converter JVM; ONNX: skl2onnx)
and ``--rows`` fresh rows (100k by default) are evaluated, warm (after one warm-up pass over every row),
side by side in one invocation, by:

- scikit-learn (``predict_proba`` for classifiers, ``predict`` for the regressor);
- onnxruntime through Parity's runtime, 1 thread and ``--threads`` threads;
- **plain-Java JPMML-Evaluator** (``benchmarks/jvm/JpmmlBench.java``) and **plain PMML4S**
  (``benchmarks/jvm/Pmml4sBench.java``, the jars inside the pypmml package): ``--threads`` threads, rows
  read from a Parity column file (``parity/core/columns.py``), chunks of ``--chunk-rows``, ``-Xmx``
  ``--heap``; the baselines;
- **Parity's PMML path**: ``parity.validators.RUNTIMES["jpmml_evaluator"]`` and ``RUNTIMES["pypmml"]``
  ``.evaluate(path, X)``, whatever implementation is behind them (the benchmark does not care).

Goal: Parity's time / the plain engine's time ≤ 1.5, for JPMML and for PMML4S, with the same rows and the
same threads for the baselines (Parity's path uses the threads its implementation uses).

Run: ``.venv/bin/python benchmarks/pmml_speed.py [--rows 100000] [--threads 2] [--models logreg rf ...]
[--out FILE.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

GOAL = 1.5
#: Not ``benchmarks/java``: a folder named ``java`` next to a script shadows JPype's ``java`` package
#: (``import java.io`` finds the folder first), which breaks every in-process JPype JVM.
JAVA_DIR = Path(__file__).resolve().parent / "jvm"
FEATURES = 20


def _models() -> dict[str, tuple[str, Callable[[], object]]]:
    """Model name → (task, a function making the unfitted estimator)."""
    from sklearn.ensemble import (
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "logreg": (
            "classification",
            lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        ),
        "rf": ("classification", lambda: RandomForestClassifier(100, max_depth=12, random_state=0, n_jobs=2)),
        "gbr": ("regression", lambda: GradientBoostingRegressor(n_estimators=100, random_state=0)),
        "hgb": ("classification", lambda: HistGradientBoostingClassifier(max_iter=100, random_state=0)),
        "mlp": ("classification", lambda: MLPClassifier((64, 64), max_iter=200, random_state=0)),
    }


MODEL_NAMES = ("logreg", "rf", "gbr", "hgb", "mlp")


def data(task: str, fit_rows: int, rows: int):
    """Training rows and ``rows`` fresh rows, as frames with named columns (a fixed seed)."""
    import pandas as pd
    from sklearn.datasets import make_classification, make_regression

    n = fit_rows + rows
    if task == "classification":
        X, y = make_classification(n, FEATURES, n_informative=10, random_state=0)
    else:
        X, y = make_regression(n, FEATURES, n_informative=10, noise=1.0, random_state=0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(FEATURES)])
    return frame.iloc[:fit_rows], y[:fit_rows], frame.iloc[fit_rows:].reset_index(drop=True)


# -- the plain-Java baselines ----------------------------------------------------------------------------
def java_classpaths() -> dict[str, list[str]]:
    """Class paths of the two plain benches, compiled (cached) against the engine's column reader and each
    engine's jars."""
    from parity.core.engine import COMPONENTS, ENGINE_SOURCE
    from parity.core.java import cache_root, compile_java, find_java, java_version

    java, version = find_java(), java_version()
    if java is None or version is None:
        raise SystemExit("pmml_speed.py needs Java 17+ (openjdk-17-jdk-headless).")

    def compiled(source: Path, classpath: list[str]) -> str:
        return str(compile_java(source, classpath, java, version[1], cache_root()))

    jpmml_jars, pmml4s_jars = COMPONENTS["jpmml"].jars(), COMPONENTS["pmml4s"].jars()
    engine = compiled(ENGINE_SOURCE, [])
    harness = compiled(JAVA_DIR / "PmmlBench.java", [engine])
    return {
        "jpmml": [
            compiled(JAVA_DIR / "JpmmlBench.java", [harness, engine, *jpmml_jars]),
            harness,
            engine,
            *jpmml_jars,
        ],
        "pmml4s": [
            compiled(JAVA_DIR / "Pmml4sBench.java", [harness, engine, *pmml4s_jars]),
            harness,
            engine,
            *pmml4s_jars,
        ],
    }


def plain_java(engine: str, classpath: list[str], pmml: Path, inputs: Path, args) -> dict:
    """Run one plain bench (a fresh JVM); its JSON line, with the JVM's whole wall time."""
    from parity.core.java import find_java

    main = {"jpmml": "JpmmlBench", "pmml4s": "Pmml4sBench"}[engine]
    command = [
        str(find_java()),
        f"-Xmx{args.heap}",
        "-cp",
        os.pathsep.join(classpath),
        main,
        str(pmml),
        str(inputs),
        str(args.threads),
        str(args.repeats),
        str(args.chunk_rows),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
    wall = time.perf_counter() - start
    if done.returncode:
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-600:]}"}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["seconds"] = min(result["passes_s"])
    result["jvm_wall_s"] = round(wall, 2)
    return result


# -- the in-process runtimes -----------------------------------------------------------------------------
def warm_timed(call: Callable[[], object], repeats: int, rows: int) -> dict:
    """One warm-up call, then ``repeats`` timed calls; the fastest."""
    start = time.perf_counter()
    call()
    warmup = time.perf_counter() - start
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        passes.append(time.perf_counter() - start)
    best = min(passes)
    return {
        "warmup_s": round(warmup, 3),
        "passes_s": [round(p, 3) for p in passes],
        "seconds": best,
        "rows_per_s": rows / best,
    }


def guarded(label: str, measure: Callable[[], dict]) -> dict:
    """A measurement, or the error that stopped it (one engine failing does not stop the others)."""
    print(f"    {label} ...", file=sys.stderr, flush=True)
    try:
        return measure()
    except Exception as err:  # reported in the table: an engine that fails is a finding, not a crash
        return {"error": f"{type(err).__name__}: {str(err)[:400]}"}


def one_model(name: str, args, classpaths: dict[str, list[str]], scratch: Path) -> dict:
    """Fit, convert and time every engine on one model."""
    from parity import validators
    from parity.core.columns import write_columns
    from parity.validators.formats import convert, format_of
    from parity.validators.runtimes.onnx import OnnxruntimeRuntime

    task, make = _models()[name]
    X_fit, y_fit, X = data(task, args.fit_rows, args.rows)
    load_before = os.getloadavg()[0]
    estimator = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        estimator.fit(X_fit, y_fit)
        fit_s = time.perf_counter() - start
        folder = scratch / name
        pmml = convert("pmml", estimator, X_fit, folder / "pmml")
        onnx = convert("onnx", estimator, X_fit, folder / "onnx")
    if not (pmml.ok and onnx.ok):
        return {"model": name, "error": f"conversion failed: {pmml.message} / {onnx.message}"}
    inputs = folder / "inputs.bin"
    write_columns(inputs, X)
    predict = estimator.predict_proba if task == "classification" else estimator.predict
    feeds = format_of("onnx").feeds(onnx, X)
    rows, n = args.rows, args.repeats
    engines = {
        "sklearn": guarded("scikit-learn", lambda: warm_timed(lambda: predict(X), n, rows)),
        "onnxruntime-1": guarded(
            "onnxruntime 1 thread",
            lambda: warm_timed(lambda: OnnxruntimeRuntime(threads=1).evaluate(onnx.path, feeds), n, rows),
        ),
        f"onnxruntime-{args.threads}": guarded(
            f"onnxruntime {args.threads} threads",
            lambda: warm_timed(
                lambda: OnnxruntimeRuntime(threads=args.threads).evaluate(onnx.path, feeds), n, rows
            ),
        ),
        "plain-jpmml": guarded(
            "plain-Java JPMML", lambda: plain_java("jpmml", classpaths["jpmml"], pmml.path, inputs, args)
        ),
        "parity-jpmml": guarded(
            "Parity jpmml_evaluator",
            lambda: warm_timed(
                lambda: validators.RUNTIMES["jpmml_evaluator"].evaluate(pmml.path, X), n, rows
            ),
        ),
        "plain-pmml4s": guarded(
            "plain PMML4S", lambda: plain_java("pmml4s", classpaths["pmml4s"], pmml.path, inputs, args)
        ),
        "parity-pmml4s": guarded(
            "Parity pypmml",
            lambda: warm_timed(lambda: validators.RUNTIMES["pypmml"].evaluate(pmml.path, X), n, rows),
        ),
    }
    ratios = {}
    for engine in ("jpmml", "pmml4s"):
        plain, ours = engines[f"plain-{engine}"], engines[f"parity-{engine}"]
        ok = "seconds" in plain and "seconds" in ours
        ratios[engine] = round(ours["seconds"] / plain["seconds"], 2) if ok else None
    return {
        "model": name,
        "estimator": type(estimator).__name__ if name != "logreg" else "StandardScaler+LogisticRegression",
        "fit_s": round(fit_s, 2),
        "pmml_bytes": pmml.path.stat().st_size,
        "engines": engines,
        "ratio_parity_over_plain": ratios,
        "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


# -- output ----------------------------------------------------------------------------------------------
def _cell(result: dict) -> str:
    if "error" in result:
        return "error"
    return f"{result['rows_per_s']:,.0f} ({result['seconds']:.2f} s)"


def print_model(result: dict, threads: int) -> None:
    print(f"\n### {result['model']}: {result.get('estimator', '')}\n")
    if "engines" not in result:
        print(f"error: {result['error']}")
        return
    rows = [{"engine": engine, "rows/s (s)": _cell(r)} for engine, r in result["engines"].items()]
    print(_common.markdown_table(rows, ["engine", "rows/s (s)"]))
    for engine, ratio in result["ratio_parity_over_plain"].items():
        verdict = "no figure" if ratio is None else ("met" if ratio <= GOAL else "NOT met")
        print(
            f"\nParity {engine} time / plain {engine} time ({threads} threads): {ratio} (goal <= {GOAL}: {verdict})"
        )
    print(f"load average (1 min) before / after: {result['load_1min'][0]} / {result['load_1min'][1]}")
    errors = {e: r["error"] for e, r in result["engines"].items() if "error" in r}
    for engine, error in errors.items():
        print(f"- {engine}: {error}")


def summary_table(results: list[dict]) -> str:
    rows = []
    for r in results:
        ratios = r.get("ratio_parity_over_plain", {})
        rows.append(
            {
                "model": r["model"],
                "JPMML ratio": ratios.get("jpmml"),
                "PMML4S ratio": ratios.get("pmml4s"),
                "goal met": all(v is not None and v <= GOAL for v in ratios.values()) if ratios else False,
            }
        )
    return _common.markdown_table(rows, ["model", "JPMML ratio", "PMML4S ratio", "goal met"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows evaluated (default 100000)")
    parser.add_argument("--fit-rows", type=int, default=20_000, help="training rows (default 20000)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the plain-Java baselines and ORT")
    parser.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES))
    parser.add_argument(
        "--repeats", type=int, default=1, help="timed passes after the warm-up (fastest kept)"
    )
    parser.add_argument("--chunk-rows", type=int, default=10_000, help="rows per chunk of the Java baselines")
    parser.add_argument("--heap", default="1g", help="-Xmx of the Java baselines (default 1g)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (PMML, ONNX, inputs)")
    parser.add_argument("--out", help="write every figure as JSON here")
    args = parser.parse_args()
    with _common.scratch_folder("parity-bench-pmml-speed-", args.keep) as scratch:
        os.environ.setdefault("PARITY_CACHE_DIR", str(Path.home() / ".cache" / "parity"))
        classpaths = java_classpaths()
        print(
            f"uptime: {_common.uptime()}; threads {args.threads}; {args.rows:,} rows x {FEATURES} features",
            file=sys.stderr,
        )
        print(f"## PMML evaluation speed, {args.rows:,} rows x {FEATURES} features, warm; rows/s (seconds)")
        print(f"\nuptime: {_common.uptime()}; cores {os.cpu_count()}; baseline threads {args.threads}")
        results = []
        for name in args.models:
            print(f"  {name}", file=sys.stderr, flush=True)
            results.append(one_model(name, args, classpaths, scratch))
            print_model(results[-1], args.threads)
            sys.stdout.flush()
        print(f"\nuptime at the end: {_common.uptime()}")
        print(f"\n## Parity time / plain-engine time (goal <= {GOAL})\n")
        print(summary_table(results))
        _common.write_json(
            args.out,
            {
                "benchmark": "pmml_speed",
                "machine": _common.machine(),
                "goal": GOAL,
                "settings": vars(args),
                "results": results,
            },
        )
        return 0


if __name__ == "__main__":
    sys.exit(main())
