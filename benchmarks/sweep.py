"""``parity run`` against the plain sequential way, side by side in one run: wall time, peak memory, PMML.

(a) ``benchmarks/naive.py`` in a fresh subprocess: the same conversions and runtime calls, the plain way.
(b) ``parity run --registry R --archive A`` as a subprocess (a fresh archive each time, so everything is
    validated): over an empty registry (its fixed cost: imports, preflight, Prefect's temporary server,
    an empty sweep flow; once on a fresh Prefect database, once on the warm one), over the 4 demo models,
    and over 12 (the demo models registered 3 times each under different names). The peak RSS of each
    whole process tree (Python, Prefect's server, child JVMs) is sampled from /proc every 0.1 s.
(c) PMML conversion of the demo batch: one ``sklearn2pmml.sklearn2pmml()`` per model (a JVM each) against
    ``parity.converters.pmml_server.WarmPmmlConverter`` (one JVM; first pass includes its start, second is warm).

The compared runs use a targets table of this machine only (``--targets host``), the work the naive
script does; ``--with-default-targets`` adds a run on Parity's built-in table (emulated aarch64 and a
2-thread target included).

Run: ``.venv/bin/python benchmarks/sweep.py [--naive-12] [--with-default-targets] [--out FILE.json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

COPIES = 3
TARGET_RATIO, TARGET_PEAK_GIB, TARGET_PMML_SPEEDUP = 0.3, 1.0, 10.0


def build_registries(scratch: Path) -> tuple[Path, Path]:
    """The demo registry (4 models) and one with each demo model registered ``COPIES`` times."""
    from parity.cli.demo import build_demo_registry
    from parity.registry import FileRegistry

    demo, many = scratch / "registry-4", scratch / "registry-12"
    build_demo_registry(demo, log=lambda _m: None)
    source, target = FileRegistry(demo), FileRegistry(many)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for ref in source.refs():
            model = source.open(ref)
            for copy in range(1, COPIES + 1):
                target.register(model.estimator, model.reference, f"{ref.name}-copy{copy}", source_files=[])
    return demo, many


def parity_env(scratch: Path, targets: Path | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PARITY_TARGETS")}
    env["PREFECT_HOME"] = str(scratch / "prefect-home")
    if targets is not None:
        env["PARITY_TARGETS"] = str(targets)
    return env


def parity_run(label: str, registry: Path, scratch: Path, env: dict) -> dict:
    archive = scratch / f"archive-{label}"
    shutil.rmtree(archive, ignore_errors=True)
    command = [str(_common.PARITY), "run", "--registry", str(registry), "--archive", str(archive)]
    result = _common.run_measured(command, scratch / f"{label}.log", env=env)
    text = Path(result["log"]).read_text(errors="replace")
    result["summary_line"] = next((line for line in reversed(text.splitlines()) if line.strip()), "")
    print(
        f"  {label}: {result['seconds']} s, peak {result['peak_rss_mib']} MiB, exit {result['exit_code']}: {result['summary_line']}",
        file=sys.stderr,
    )
    return result


def naive_run(label: str, registry: Path, scratch: Path) -> dict:
    out = scratch / f"{label}.json"
    command = [
        str(_common.PYTHON),
        str(Path(__file__).with_name("naive.py")),
        "--registry",
        str(registry),
        "--out",
        str(out),
    ]
    result = _common.run_measured(command, scratch / f"{label}.log")
    result["detail"] = json.loads(out.read_text()) if out.is_file() else None
    print(
        f"  {label}: {result['seconds']} s, peak {result['peak_rss_mib']} MiB, exit {result['exit_code']}",
        file=sys.stderr,
    )
    return result


@contextlib.contextmanager
def quiet_fds():
    """Send this process's stdout and stderr (and its children's: sklearn2pmml's JVM) to /dev/null."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def pmml_speedup(registry_root: Path, scratch: Path) -> dict:
    """One sklearn2pmml() per model vs the warm converter, on the same PMMLPipelines."""
    import sklearn2pmml

    from parity.converters.pmml import make_pipeline
    from parity.converters.pmml_server import WarmPmmlConverter
    from parity.registry import FileRegistry

    registry = FileRegistry(registry_root)
    models = [registry.open(ref) for ref in registry.refs()]
    out = scratch / "pmml-speedup"
    out.mkdir()
    pipelines = [make_pipeline(m.estimator, m.reference)[0] for m in models]
    with quiet_fds():
        start = time.perf_counter()
        for model, pipeline in zip(models, pipelines, strict=True):
            sklearn2pmml.sklearn2pmml(pipeline, str(out / f"{model.ref.name}-plain.pmml"))
        plain = time.perf_counter() - start
    pipelines = [
        make_pipeline(m.estimator, m.reference)[0] for m in models
    ]  # sklearn2pmml() escapes in place
    passes = []
    with WarmPmmlConverter() as converter:
        for attempt in range(2):
            start = time.perf_counter()
            replies = [
                converter.convert_pipeline(p, out / f"{m.ref.name}-warm{attempt}.pmml")
                for m, p in zip(models, pipelines, strict=True)
            ]
            passes.append(time.perf_counter() - start)
            assert all(r.ok for r in replies), [r.log for r in replies if not r.ok]
    return {
        "models": len(models),
        "sklearn2pmml_per_model_s": round(plain, 2),
        "warm_first_pass_s": round(passes[0], 2),
        "warm_second_pass_s": round(passes[1], 3),
        "speedup_first_pass": round(plain / passes[0], 1),
        "speedup_warm": round(plain / passes[1], 1),
    }


def figures(runs: dict, pmml: dict) -> dict:
    empty = runs["parity-empty-warm-db"]["seconds"]
    out = {}
    for n in (4, 12):
        parity, naive = runs.get(f"parity-{n}"), runs.get(f"naive-{n}")
        if parity is None or naive is None:
            continue
        out[f"ratio_parity_over_naive_{n}"] = round(parity["seconds"] / naive["seconds"], 2)
        out[f"ratio_excluding_fixed_cost_{n}"] = round((parity["seconds"] - empty) / naive["seconds"], 2)
    out["peak_rss_parity_4_mib"] = runs["parity-4"]["peak_rss_mib"]
    out["peak_rss_parity_12_mib"] = runs["parity-12"]["peak_rss_mib"]
    out["peak_pss_parity_4_mib"] = runs["parity-4"]["peak_pss_mib"]
    out["peak_pss_parity_12_mib"] = runs["parity-12"]["peak_pss_mib"]
    out["pmml_speedup_first_pass"] = pmml["speedup_first_pass"]
    out["pmml_speedup_warm"] = pmml["speedup_warm"]
    out["targets_met"] = {
        "ratio_le_0.3 (4 models)": out["ratio_parity_over_naive_4"] <= TARGET_RATIO,
        "ratio_le_0.3 excluding fixed cost (4 models)": out["ratio_excluding_fixed_cost_4"] <= TARGET_RATIO,
        "peak_le_1GiB (4 and 12 models)": max(out["peak_rss_parity_4_mib"], out["peak_rss_parity_12_mib"])
        <= TARGET_PEAK_GIB * 1024,
        "pmml_speedup_ge_10x (one parity run: first pass)": pmml["speedup_first_pass"] >= TARGET_PMML_SPEEDUP,
        "pmml_speedup_ge_10x (warm converter)": pmml["speedup_warm"] >= TARGET_PMML_SPEEDUP,
    }
    return out


def print_tables(runs: dict, pmml: dict, summary: dict) -> None:
    rows = []
    for label, r in runs.items():
        rows.append(
            {
                "run": label,
                "wall s": r["seconds"],
                "peak RSS MiB (tree)": r["peak_rss_mib"],
                "exit": r["exit_code"],
                "at peak": ", ".join(f"{k} {v:.0f}" for k, v in r["at_peak_mib"].items()),
            }
        )
    print("## Wall time and peak memory, side by side\n")
    print(_common.markdown_table(rows, list(rows[0])))
    print("\n## Figures\n")
    fig = [{"figure": k, "value": v} for k, v in summary.items() if k != "targets_met"]
    fig += [
        {"figure": f"target: {k}", "value": "met" if v else "NOT met"}
        for k, v in summary["targets_met"].items()
    ]
    fig += [{"figure": f"pmml: {k}", "value": v} for k, v in pmml.items()]
    print(_common.markdown_table(fig, ["figure", "value"]))
    naive = runs.get("naive-4", {}).get("detail")
    if naive:
        print("\n## Where the naive script's time goes (4 models, s)\n")
        print(
            _common.markdown_table(
                [{"stage": k, "s": v} for k, v in naive["stage_seconds"].items()], ["stage", "s"]
            )
        )


def main() -> int:
    parser = argparse.ArgumentParser(description="parity run vs the plain sequential way, side by side.")
    parser.add_argument(
        "--naive-12", action="store_true", help="also run the naive baseline on 12 models (+1-2 min)"
    )
    parser.add_argument(
        "--targets",
        default="host",
        metavar="host|default|FILE",
        help="targets table of the compared runs: host (default: this machine only, the naive "
        "baseline's work), default (Parity's built-in table) or a TOML file",
    )
    parser.add_argument(
        "--with-default-targets",
        action="store_true",
        help="also run parity on the 4 models with Parity's built-in targets (emulated aarch64 ...)",
    )
    parser.add_argument(
        "--java-options",
        metavar="OPTS",
        help="also run parity on the 12 models with _JAVA_OPTIONS=OPTS (every JVM, JPype's included), "
        "e.g. '-XX:+UseSerialGC -Xmx256m'",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs, archives)")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    scratch = _common.scratch_dir("parity-bench-sweep-")
    try:
        _common.isolated_prefect_home(scratch)
        print(f"building registries in {scratch}", file=sys.stderr)
        demo, many = build_registries(scratch)
        empty = scratch / "registry-empty"
        empty.mkdir()
        targets = _common.targets_file(scratch, args.targets)
        env = parity_env(scratch, targets)
        runs = {"naive-4": naive_run("naive-4", demo, scratch)}
        runs["parity-empty-fresh-db"] = parity_run("parity-empty-fresh-db", empty, scratch, env)
        runs["parity-empty-warm-db"] = parity_run("parity-empty-warm-db", empty, scratch, env)
        runs["parity-4"] = parity_run("parity-4", demo, scratch, env)
        runs["parity-12"] = parity_run("parity-12", many, scratch, env)
        if args.with_default_targets and args.targets in (None, "host"):
            label = "parity-4-default-targets"
            runs[label] = parity_run(label, demo, scratch, parity_env(scratch, None))
        if args.java_options:
            label = "parity-12-java-options"
            runs[label] = parity_run(label, many, scratch, {**env, "_JAVA_OPTIONS": args.java_options})
            runs[label]["java_options"] = args.java_options
        if args.naive_12:
            runs["naive-12"] = naive_run("naive-12", many, scratch)
        print("  PMML conversion: sklearn2pmml() per model vs warm JVM", file=sys.stderr)
        pmml = pmml_speedup(demo, scratch)
        summary = figures(runs, pmml)
        print_tables(runs, pmml, summary)
        data = {
            "benchmark": "sweep",
            "machine": _common.machine(),
            "summary": summary,
            "runs": runs,
            "pmml": pmml,
        }
        _common.write_json(args.out, data)
        return 0
    finally:
        if args.keep:
            print(f"kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
