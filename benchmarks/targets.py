"""Seconds per model per target (native vs emulated aarch64), and the aarch64 set-up time from nothing and
when cached — measured side by side in one run.

Per demo model, each runner is timed on the same rows natively and under qemu (``-cpu neoverse-n1``): the
ONNX runner (a fresh process per call, as on every target) and the PMML runner (its JVM kept warm across
models, as Parity does: the first model pays the JVM start). Ratios emulated/native are the figures to read.

Run: ``.venv/bin/python benchmarks/targets.py [--rows 200] [--fresh-setup] [--out FILE.json]``.
``--fresh-setup`` also provisions the aarch64 target from nothing in a temporary cache (downloads ~150 MB
from the package mirrors; 15-30 s here).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def setup_times(fresh: bool) -> dict:
    from parity.validators.targets.aarch64 import setup_aarch64

    figures = {}
    if fresh:
        with tempfile.TemporaryDirectory(prefix="parity-bench-aarch64-") as cache:
            figures["setup_from_nothing_s"], _ = timed(
                setup_aarch64, Path(cache) / "aarch64", log=lambda _l: None
            )
            figures["setup_cached_s"], _ = timed(setup_aarch64, Path(cache) / "aarch64", log=lambda _l: None)
    else:
        setup_aarch64(log=print)
        figures["setup_cached_s"], _ = timed(setup_aarch64, log=lambda _l: None)
    return {k: round(v, 4) for k, v in figures.items()}


def per_model(rows: int) -> list[dict]:
    from parity.cli.demo import build_demo_registry
    from parity.registry import FileRegistry
    from parity.validators.formats import FORMATS
    from parity.validators.targets.aarch64 import setup_aarch64
    from parity.validators.targets.local import run_onnx_in
    from parity.validators.targets.pmml_runner import run_pmml_in

    env = setup_aarch64(log=lambda _l: None)
    results = []
    with tempfile.TemporaryDirectory(prefix="parity-bench-targets-") as scratch:
        root = Path(scratch)
        build_demo_registry(root / "registry", log=lambda _l: None)
        registry = FileRegistry(root / "registry")
        for ref in registry.refs():
            model = registry.open(ref)
            X = model.reference.sample(n=rows, replace=len(model.reference) < rows, random_state=0)
            onnx = FORMATS["onnx"].convert(model.estimator, model.reference, root / ref.name)
            pmml = FORMATS["pmml"].convert(model.estimator, model.reference, root / ref.name)
            feeds = FORMATS["onnx"].remote_inputs(onnx, X)
            row = {"model": ref.name, "rows": rows}
            row["onnx_native_s"], _ = timed(run_onnx_in, None, onnx.path, feeds)
            row["onnx_emulated_s"], (_, where) = timed(run_onnx_in, env, onnx.path, feeds)
            row["onnx_emulated_inference_s"] = where["seconds"]["run"]
            row["pmml_native_s"], _ = timed(run_pmml_in, None, pmml.path, X)
            row["pmml_emulated_s"], (_, where) = timed(run_pmml_in, env, pmml.path, X)
            row["machine_emulated"] = where["machine"]
            for fmt in ("onnx", "pmml"):
                row[f"{fmt}_ratio"] = round(row[f"{fmt}_emulated_s"] / row[f"{fmt}_native_s"], 1)
            results.append({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=200, help="rows per runner call (default 200, as the target)"
    )
    parser.add_argument(
        "--fresh-setup", action="store_true", help="also time the aarch64 set-up from nothing"
    )
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    figures = {"setup": setup_times(args.fresh_setup), "per_model": per_model(args.rows)}
    print("| model | ONNX native s | ONNX emulated s | ratio | PMML native s | PMML emulated s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for row in figures["per_model"]:
        print(
            f"| {row['model']} | {row['onnx_native_s']} | {row['onnx_emulated_s']} | {row['onnx_ratio']}x "
            f"| {row['pmml_native_s']} | {row['pmml_emulated_s']} | {row['pmml_ratio']}x |"
        )
    print("\nset-up:", ", ".join(f"{k} {v}" for k, v in figures["setup"].items()))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
