"""Seconds of each stage of Parity, per demo model, in one process.

Stages: load from the registry, ONNX conversion, PMML conversion in the warm converter JVM (the first
conversion of each model separately from later ones; the first model's first conversion also starts the
JVM), each runtime of ``validators.RUNTIMES`` on ``--rows`` rows (the reference rows resampled with a
little noise; onnx-reference on its own sample; cold call = first call, loads the model and, for the
first model, starts the runtime's JVM; warm = the same call again), the runtimes on the reference rows
alone (what a ``parity run`` evaluates), and the whole one-model flow
``parity.flows.validate.convert_and_validate`` in Prefect's ephemeral mode (after a trivial flow has started the
temporary server, whose start-up is reported on its own).

The flows run on a targets table of this machine only unless ``--targets default``.

Run: ``.venv/bin/python benchmarks/stages.py [--rows 10000] [--targets host|default|FILE] [--out FILE.json]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

PMML_WARM_REPEATS = 2


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def import_times() -> dict[str, float]:
    """One-time import costs, paid by every fresh process (measured before anything else imports them)."""
    figures = {}
    for module in (
        "sklearn2pmml",
        "skl2onnx",
        "onnxruntime",
        "onnx.reference",
        "pypmml",
        "jpmml_evaluator",
        "prefect",
        "parity.flows.validate",
    ):
        seconds, _ = timed(__import__, module)
        figures[module] = round(seconds, 3)
    return figures


def runtime_figures(runtime, conversion, X, validate_mod) -> dict:
    """Cold and warm seconds of one runtime on ``X`` (or on its sample), and rows per second warm."""
    index = validate_mod.sample_index(len(X), runtime.sample_rows)
    rows = X.iloc[index]
    cold, _ = timed(validate_mod.run_runtime, runtime, conversion, rows)
    warm, _ = timed(validate_mod.run_runtime, runtime, conversion, rows)
    figures = {
        "rows": len(rows),
        "cold_s": round(cold, 3),
        "warm_s": round(warm, 3),
        "rows_per_s": round(len(rows) / warm),
    }
    if hasattr(runtime, "verify"):
        figures["verify_s"] = round(timed(runtime.verify, conversion.path)[0], 3)
    return figures


def stage_model(name, registry, rows, scratch) -> dict:
    from parity import validators
    from parity.validators import validate as validate_mod
    from parity.validators.formats import convert

    ref = registry.resolve(name)
    load_s, model = timed(registry.open, ref)
    onnx_s, onnx = timed(convert, "onnx", model.estimator, model.reference, scratch / name / "onnx")
    first_s, pmml = timed(convert, "pmml", model.estimator, model.reference, scratch / name / "pmml")
    warm = [
        timed(convert, "pmml", model.estimator, model.reference, scratch / name / f"pmml{i}")[0]
        for i in range(PMML_WARM_REPEATS)
    ]
    assert onnx.ok and pmml.ok, (onnx.message, pmml.message)
    X = _common.tile_rows(model.reference, rows)
    conversions = {"onnx": onnx, "pmml": pmml}
    runtimes = {}
    for runtime in validators.RUNTIMES.values():
        runtimes[runtime.name] = runtime_figures(runtime, conversions[runtime.format], X, validate_mod)
    on_reference = {}
    for runtime in validators.RUNTIMES.values():
        index = validate_mod.sample_index(len(model.reference), runtime.sample_rows)
        on_reference[runtime.name] = round(
            timed(
                validate_mod.run_runtime, runtime, conversions[runtime.format], model.reference.iloc[index]
            )[0],
            3,
        )
    return {
        "model": name,
        "estimator": type(model.estimator).__name__,
        "reference_rows": len(model.reference),
        "load_s": round(load_s, 3),
        "onnx_conversion_s": round(onnx_s, 3),
        "pmml_first_conversion_s": round(first_s, 3),
        "pmml_warm_conversion_s": round(min(warm), 3),
        "pmml_bytes": pmml.path.stat().st_size,
        "runtimes": runtimes,
        "runtimes_on_reference_rows_s": on_reference,
    }


def flows_figures(names, registry_root: Path, scratch: Path) -> dict:
    from prefect import flow

    from parity.flows.validate import convert_and_validate, result_data

    @flow(name="benchmark-warm-up")
    def warm_up() -> int:
        return 1

    startup_s, _ = timed(warm_up)
    per_model = {}
    for name in names:
        archive = scratch / f"archive-{name}"
        seconds, state = timed(
            convert_and_validate, name, None, str(registry_root), str(archive), return_state=True
        )
        report = result_data(state)
        per_model[name] = {
            "seconds": round(seconds, 2),
            "outcome": report.get("outcome") if isinstance(report, dict) else str(report),
        }
    return {"ephemeral_server_first_flow_s": round(startup_s, 2), "per_model": per_model}


def table(results: list[dict], flows: dict, runtime_names: list[str]) -> str:
    rows = []
    for r in results:
        row = {
            "model": r["model"],
            "load": r["load_s"],
            "onnx conv": r["onnx_conversion_s"],
            "pmml conv first": r["pmml_first_conversion_s"],
            "pmml conv warm": r["pmml_warm_conversion_s"],
        }
        for name in runtime_names:
            f = r["runtimes"][name]
            row[f"{name} cold/warm s (rows/s)"] = (
                f"{f['cold_s']:.3g} / {f['warm_s']:.3g} ({f['rows_per_s']:,} r/s, {f['rows']} rows)"
            )
        row["runtimes on ref rows"] = round(sum(r["runtimes_on_reference_rows_s"].values()), 3)
        row["one-model flow"] = flows["per_model"][r["model"]]["seconds"]
        rows.append(row)
    return _common.markdown_table(rows, list(rows[0]))


def main() -> int:
    parser = argparse.ArgumentParser(description="Seconds of each Parity stage per demo model.")
    parser.add_argument(
        "--rows", type=int, default=10_000, help="rows each runtime evaluates (default 10000)"
    )
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument(
        "--targets",
        default="host",
        metavar="host|default|FILE",
        help="targets table of the one-model flows: host (default: this machine only), default "
        "(Parity's built-in table, emulated aarch64 included) or a TOML file",
    )
    args = parser.parse_args()
    scratch = _common.scratch_dir("parity-bench-stages-")
    try:
        _common.isolated_prefect_home(scratch)
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")  # as `parity run` does
        targets = _common.targets_file(scratch, args.targets)
        if targets is None:
            os.environ.pop("PARITY_TARGETS", None)
        else:
            os.environ["PARITY_TARGETS"] = str(targets)
        imports = import_times()
        from parity.cli.demo import DEMO_MODELS, build_demo_registry
        from parity.registry import FileRegistry

        registry_root = scratch / "registry"
        build_s, _ = timed(build_demo_registry, registry_root, log=lambda _m: None)
        registry = FileRegistry(registry_root)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = [stage_model(name, registry, args.rows, scratch / "work") for name in DEMO_MODELS]
        flows = flows_figures(list(DEMO_MODELS), registry_root, scratch)
        from parity import validators

        runtime_names = list(validators.RUNTIMES)
        data = {
            "benchmark": "stages",
            "machine": _common.machine(),
            "rows": args.rows,
            "flow_targets": str(targets or "Parity's built-in table"),
            "import_s": imports,
            "build_demo_registry_s": round(build_s, 2),
            "models": results,
            "flows": flows,
        }
        print(f"## Parity stages, seconds ({args.rows} rows per runtime; {data['machine']['cpus']} CPUs)\n")
        print(table(results, flows, runtime_names))
        print(f"\nimports (s): {imports}")
        print(
            f"Prefect ephemeral server start-up (first, trivial flow): {flows['ephemeral_server_first_flow_s']} s"
        )
        print(
            "pmml conv first: first conversion of that model in the warm JVM (the first model's also starts the JVM)"
        )
        _common.write_json(args.out, data)
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
