"""P3: reference sets of 10k / 100k / 1M rows: register and validate seconds, and peak RSS of the process tree.

One command::

    .venv/bin/python benchmarks/rows.py [--sizes 10000 100000 1000000] [--models logreg gb] [--out rows.json]

For each model (``logreg``: StandardScaler + LogisticRegression; ``gb``: a small GradientBoostingClassifier;
both on 20 numeric features) and each size, a reference parquet file of that many rows is written (in row
groups, as a user's export would be), then two fresh processes run, each sampled with its whole process tree
(children, JVMs) from ``/proc`` every 0.1 s:

1. ``register``: ``FileRegistry.register(estimator, "reference.parquet", ...)``: reading the file, the
   sandbox child that tries the model on the rows, the reference predictions, the parquet files written.
2. ``validate``: the one-model validation through the stage functions, without Prefect (what the
   ``convert-and-validate`` flow's tasks call): ``FileRegistry.open``, then per format ``convert``,
   ``validate_conversion`` and ``remedied``, on this machine only (host-only targets).

Printed per size: seconds of each, time per row, peak RSS; then the max/min ratio of the time per row
across sizes (goal ≤ 1.5x), also for the time beyond the smallest size's (the per-row cost once the fixed
costs, JVM starts and conversions, are paid), and the peak RSS at the largest size (goal ≤ 1 GiB).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import _common

FEATURES = 20
FIT_ROWS = 5_000
ROW_GROUP = 65_536
MARK = "ROWS-RESULT "


# -- the data and the models (deterministic: every process rebuilds the same ones) -----------------------
def _weights():
    import numpy as np

    rng = np.random.default_rng(1234)
    return rng.normal(size=FEATURES), rng.uniform(0.5, 20.0, size=FEATURES), rng.normal(size=FEATURES) * 5


def make_rows(n: int, seed: int):
    """``n`` rows of the 20 features (columns of different scales and offsets) and their labels."""
    import numpy as np
    import pandas as pd

    w, scale, offset = _weights()
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, FEATURES))
    y = (z @ w + rng.normal(scale=2.0, size=n) > 0).astype(np.int64)
    return pd.DataFrame(z * scale + offset, columns=[f"f{j:02d}" for j in range(FEATURES)]), y


def make_model(name: str):
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_rows(FIT_ROWS, seed=0)
    if name == "logreg":
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    else:
        model = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0)
    return model.fit(X, y)


def write_reference(path: Path, rows: int) -> None:
    """A parquet file of ``rows`` rows written in row groups, never holding more than one in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for start in range(0, rows, ROW_GROUP):
            frame, _ = make_rows(min(ROW_GROUP, rows - start), seed=1 + start // ROW_GROUP)
            table = pa.Table.from_pandas(frame, preserve_index=False)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=ROW_GROUP)
    finally:
        if writer is not None:
            writer.close()


# -- the two measured processes ---------------------------------------------------------------------------
def child_register(args: argparse.Namespace) -> dict:
    estimator = make_model(args.model)
    from parity.registry import FileRegistry

    start = time.perf_counter()
    ref = FileRegistry(args.registry).register(estimator, args.reference, args.model, source_files=[])
    return {"ref": str(ref), "register_s": time.perf_counter() - start}


def child_validate(args: argparse.Namespace) -> dict:
    import tempfile
    from collections import Counter

    from parity.registry import FileRegistry
    from parity.validators.formats import FORMATS, format_of
    from parity.validators.targets.table import load_roles, load_targets
    from parity.validators.validate import ModelContext, remedied, validate_conversion

    table, roles = load_targets(args.targets), load_roles(args.targets)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    store = FileRegistry(args.registry)
    model = store.open(store.resolve(args.model, None))
    seconds["open_s"] = time.perf_counter() - start
    context, verdicts = ModelContext(model), Counter()
    with tempfile.TemporaryDirectory(prefix="parity-rows-") as workdir:
        for fmt in FORMATS:
            began = time.perf_counter()
            conversion = format_of(fmt).convert(model.estimator, model.reference, Path(workdir) / fmt)
            converted = time.perf_counter()
            checks = validate_conversion(context, conversion, targets=table, roles=roles)
            _, checks = remedied(context, conversion, checks, Path(workdir) / f"{fmt}-remedy", table, roles)
            seconds[f"{fmt}_convert_s"] = converted - began
            seconds[f"{fmt}_validate_s"] = time.perf_counter() - converted
            verdicts.update(f"{c.runtime}:{c.output}={c.verdict}" for c in checks)
    seconds["validate_s"] = time.perf_counter() - start
    return {**seconds, "verdicts": dict(sorted(verdicts.items()))}


def child_main(args: argparse.Namespace) -> int:
    result = child_register(args) if args.child == "register" else child_validate(args)
    print(MARK + json.dumps(result), flush=True)
    return 0


# -- the invocation -------------------------------------------------------------------------------------------
def measured(stage: str, model: str, rows: int, scratch: Path, targets: Path, registry: Path) -> dict:
    command = [sys.executable, __file__, "--child", stage, "--model", model, "--registry", str(registry)]
    command += ["--reference", str(scratch / f"ref-{rows}.parquet"), "--targets", str(targets)]
    log = scratch / f"{model}-{rows}-{stage}.log"
    figures = _common.run_measured(command, log, env=dict(os.environ), timeout=1800, forks_private=True)
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith(MARK)]
    if figures["exit_code"] != 0 or not lines:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise SystemExit(f"{stage} {model} {rows} failed ({figures['exit_code']}); {log}:\n{tail}")
    return {**figures, **json.loads(lines[-1][len(MARK) :])}


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def ratio(values: list[float]) -> float | None:
    values = [v for v in values if v and v > 0]
    return max(values) / min(values) if len(values) > 1 else None


def summarise(model: str, results: list[dict]) -> dict:
    """Per-row times, their spread across sizes, and the peak RSS at the largest size."""
    base = results[0]
    out: dict = {"model": model}
    for stage in ("register", "validate"):
        per_row = [r[f"{stage}_s"] / r["rows"] for r in results]
        beyond = [(r[f"{stage}_s"] - base[f"{stage}_s"]) / (r["rows"] - base["rows"]) for r in results[1:]]
        out[f"{stage}_per_row_ratio"] = ratio(per_row)
        out[f"{stage}_marginal_per_row_ratio"] = ratio(beyond)
    out["peak_rss_mib_at_largest"] = max(results[-1]["register_rss_mib"], results[-1]["validate_rss_mib"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--models", nargs="+", default=["logreg", "gb"], choices=["logreg", "gb"])
    parser.add_argument("--out")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs, registries)")
    parser.add_argument("--child", choices=["register", "validate"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--registry", help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    parser.add_argument("--targets", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(args)

    scratch = _common.scratch_dir("parity-rows-")
    _common.isolated_prefect_home(scratch)
    targets = _common.targets_file(scratch, "host")
    assert targets is not None
    print(f"scratch {scratch}; {load()}", file=sys.stderr)
    sizes = sorted(args.sizes)
    rows_out, summaries = [], []
    try:
        for rows in sizes:
            write_reference(scratch / f"ref-{rows}.parquet", rows)
        for model in args.models:
            results = []
            for rows in sizes:
                registry = scratch / f"registry-{model}-{rows}"
                row: dict = {"model": model, "rows": rows, "load_before": load()}
                for stage in ("register", "validate"):
                    figures = measured(stage, model, rows, scratch, targets, registry)
                    row[f"{stage}_s"] = figures[f"{stage}_s"]
                    row[f"{stage}_rss_mib"] = figures["peak_rss_mib"]
                    row[f"{stage}_pss_mib"] = figures["peak_pss_mib"]
                    row[f"{stage}_detail"] = figures
                row["register_us_per_row"] = 1e6 * row["register_s"] / rows
                row["validate_us_per_row"] = 1e6 * row["validate_s"] / rows
                row["load_after"] = load()
                print(
                    f"{model} {rows}: register {row['register_s']:.1f} s, validate {row['validate_s']:.1f} s, "
                    f"peak RSS {row['register_rss_mib']:.0f} / {row['validate_rss_mib']:.0f} MiB; "
                    f"{row['load_after']}",
                    file=sys.stderr,
                )
                results.append(row)
            rows_out += results
            summaries.append(summarise(model, results))
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    columns = [
        "model",
        "rows",
        "register_s",
        "register_us_per_row",
        "register_rss_mib",
        "validate_s",
        "validate_us_per_row",
        "validate_rss_mib",
        "validate_pss_mib",
        "load_after",
    ]
    print(_common.markdown_table(rows_out, columns))
    print()
    print(_common.markdown_table(summaries, list(summaries[0])))
    worst_rss = max(s["peak_rss_mib_at_largest"] for s in summaries)
    worst_ratio = max(
        max(s[f"{stage}_per_row_ratio"] or 0 for stage in ("register", "validate")) for s in summaries
    )
    print(
        f"\ntime per row max/min across sizes: {worst_ratio:.2f}x (goal ≤ 1.5x: "
        f"{'met' if worst_ratio <= 1.5 else 'not met'})"
    )
    print(
        f"peak RSS of the process tree at {sizes[-1]:,} rows: {worst_rss:.0f} MiB (goal ≤ 1024 MiB: "
        f"{'met' if worst_rss <= 1024 else 'not met'}); {load()}"
    )
    _common.write_json(args.out, {"machine": _common.machine(), "rows": rows_out, "summary": summaries})
    return 0


if __name__ == "__main__":
    sys.exit(main())
