"""P5: the per-model cost of validation on the emulated linux/aarch64 target against this machine's own.

For each demo model and format, ``validators.validate.validate_conversion`` runs twice side by side on the
same conversion and every reference row: with a targets table holding only this machine's process target
(the format's deploy engine alone, as the runner runs it: onnxruntime, JPMML), and with one holding only
the emulated target (``reach = "emulator"``, ``-cpu neoverse-n1``: the format's runner under qemu). Both are
measured warm: a copy of the first model is validated on both tables first, which starts the emulated
runner (and JVM) that later models reuse; that start is reported on its own. For ONNX it also times the
runner as it ran before it was kept warm (one fresh emulated process per model, ``runner.py onnx``).

Ratios emulated/native per model and overall (sums), against the goal <= 10x; the load of the machine
(``uptime``) is printed before and after.

Run: ``.venv/bin/python benchmarks/emulated_cost.py [--formats onnx pmml] [--out FILE.json]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

GOAL = 10.0
NATIVE, EMULATED = "linux-x86_64", "linux-aarch64-emulated"


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def tables() -> dict[str, dict]:
    from parity.validators.targets.target import Target

    return {
        "native": {NATIVE: Target(name=NATIVE, platform="linux/x86_64", reach="process")},
        "emulated": {
            EMULATED: Target(name=EMULATED, platform="linux/aarch64", reach="emulator", cpu="neoverse-n1")
        },
    }


def validate(context, conversion, table: dict) -> tuple[float, str]:
    """Seconds of one validation on one table, and its verdicts (``pass x3``)."""
    from collections import Counter

    from parity.validators import validate as validate_mod
    from parity.validators.formats import FORMATS

    engine = [FORMATS[conversion.format].engine]  # what the runner runs; the emulated table ignores it
    seconds, checks = timed(validate_mod.validate_conversion, context, conversion, engine, table)
    counts = Counter(str(c.verdict.value) for c in checks)
    return seconds, " ".join(f"{v} x{n}" for v, n in sorted(counts.items()))


def one_shot_onnx(env, context, conversion, scratch: Path) -> float:
    """Seconds of the runner as a fresh emulated process on every reference row (as before issue 10)."""
    from parity.validators.formats import FORMATS
    from parity.validators.targets import local

    given, made = scratch / "one-shot-in.npz", scratch / "one-shot-out.npz"
    local.write_onnx_inputs(given, FORMATS["onnx"].remote_inputs(conversion, context.model.reference))
    args = ["onnx", "--model", str(conversion.path), "--inputs", str(given), "--outputs", str(made)]
    start = time.perf_counter()
    proc = subprocess.run(
        local.runner_command(env, args), env=env.python_env(), capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the one-shot runner failed: {proc.stderr[-2000:]}")
    return seconds


def warm_up(context, conversions: dict, scratch: Path, tabs: dict) -> dict[str, float]:
    """Validate a copy of the first model on both tables: starts what later models reuse."""
    figures = {}
    for fmt, conversion in conversions.items():
        copy = scratch / "warm-up" / fmt / conversion.path.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(conversion.path, copy)
        twin = conversion.model_copy(update={"path": copy})
        for side, table in tabs.items():
            figures[f"{fmt}_{side}_first_s"] = round(validate(context, twin, table)[0], 3)
    return figures


def measure(formats: list[str], scratch: Path) -> dict:
    from parity.cli.demo import DEMO_MODELS, build_demo_registry
    from parity.registry import FileRegistry
    from parity.validators.formats import convert
    from parity.validators.targets.aarch64 import setup_aarch64
    from parity.validators.validate import ModelContext

    env = setup_aarch64(log=lambda _l: None)
    build_demo_registry(scratch / "registry", log=lambda _m: None)
    registry = FileRegistry(scratch / "registry")
    tabs = tables()
    models, start = [], None
    for name in DEMO_MODELS:
        model = registry.open(registry.resolve(name))
        context = ModelContext(model)
        conversions = {
            fmt: convert(fmt, model.estimator, model.reference, scratch / name / fmt) for fmt in formats
        }
        assert all(c.ok for c in conversions.values()), {f: c.message for f, c in conversions.items()}
        if start is None:
            start = warm_up(context, conversions, scratch, tabs)
        row: dict = {"model": name, "rows": len(model.reference)}
        for fmt, conversion in conversions.items():
            for side, table in tabs.items():
                row[f"{fmt}_{side}_s"], row[f"{fmt}_{side}_verdicts"] = validate(context, conversion, table)
            row[f"{fmt}_ratio"] = row[f"{fmt}_emulated_s"] / row[f"{fmt}_native_s"]
        if "onnx" in conversions:
            row["onnx_one_shot_emulated_s"] = one_shot_onnx(env, context, conversions["onnx"], scratch)
        row["native_s"] = sum(row[f"{fmt}_native_s"] for fmt in formats)
        row["emulated_s"] = sum(row[f"{fmt}_emulated_s"] for fmt in formats)
        row["ratio"] = row["emulated_s"] / row["native_s"]
        models.append({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
    return {"first_model_start": start, "models": models}


def summary(models: list[dict], formats: list[str]) -> dict:
    def total(key: str) -> float:
        return sum(m[key] for m in models)

    out = {f"{fmt}_ratio": total(f"{fmt}_emulated_s") / total(f"{fmt}_native_s") for fmt in formats}
    out["ratio"] = total("emulated_s") / total("native_s")
    if "onnx" in formats:
        out["onnx_one_shot_ratio"] = total("onnx_one_shot_emulated_s") / total("onnx_native_s")
    return {k: round(v, 2) for k, v in out.items()}


def report(data: dict, formats: list[str]) -> None:
    columns = ["model", "rows"]
    for fmt in formats:
        columns += [f"{fmt}_native_s", f"{fmt}_emulated_s", f"{fmt}_ratio"]
    if "onnx" in formats:
        columns.append("onnx_one_shot_emulated_s")
    columns += ["ratio"]
    print("## P5: validation per model, emulated linux/aarch64 vs native (warm; seconds)\n")
    print(_common.markdown_table(data["models"], columns))
    print("\nverdicts:", "; ".join(
        f"{m['model']} {fmt}: native {m[f'{fmt}_native_verdicts']} / emulated {m[f'{fmt}_emulated_verdicts']}"
        for m in data["models"] for fmt in formats
    ))  # fmt: skip
    print(f"first model (starts the emulated runner / JVM; not in the ratios): {data['first_model_start']}")
    overall = data["summary"]
    met = "met" if overall["ratio"] <= GOAL else "NOT met"
    print(f"\noverall emulated/native: {overall['ratio']}x (goal <= {GOAL:g}x: {met}); by format: "
          + ", ".join(f"{k} {v}x" for k, v in overall.items() if k != "ratio"))  # fmt: skip
    print(f"load before: {data['uptime_before']}\nload after:  {data['uptime_after']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", nargs="+", default=["onnx", "pmml"], choices=["onnx", "pmml"])
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    scratch = _common.scratch_dir("parity-bench-emulated-")
    try:
        _common.isolated_prefect_home(scratch)
        before = uptime()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = measure(args.formats, scratch)
        data.update(
            benchmark="emulated_cost",
            machine=_common.machine(),
            uptime_before=before,
            uptime_after=uptime(),
            summary=summary(data["models"], args.formats),
            goal=GOAL,
        )
        report(data, args.formats)
        _common.write_json(args.out, data)
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
