"""``parity run`` against the plain sequential way, side by side in one run: wall time, peak memory, PMML.

(a) ``benchmarks/naive.py`` in a fresh subprocess: the same conversions and runtime calls, the plain way.
(b) ``parity run --registry R --archive A`` as a subprocess (a fresh archive each time, so everything is
    validated): over an empty registry (its fixed cost: imports, preflight, Prefect's temporary server,
    an empty sweep flow; once on a fresh Prefect database, once on the warm one), over the 4 demo models,
    over 12 (the demo models registered 3 times each under different names) and over 20 (5 times each;
    issue 10's P1, the headline: ``parity-20`` against ``naive-20``, goal ≤ 0.3). The peak RSS of each
    whole process tree (Python, Prefect's server, child JVMs) is sampled from /proc every 0.1 s.
(c) PMML conversion of the demo batch: one ``sklearn2pmml.sklearn2pmml()`` per model (a JVM each) against
    ``parity.converters.pmml_server.WarmPmmlConverter`` (one JVM; first pass includes its start, second is warm).

The compared runs use a targets table of this machine only (``--targets host``), the work the naive
script does; ``--with-default-targets`` adds a run on Parity's built-in table (emulated aarch64 and a
2-thread target included).

Run: ``.venv/bin/python benchmarks/sweep.py [--only RUN,RUN...] [--naive-12] [--with-default-targets]
[--out FILE.json]``; ``--only parity-20,naive-20`` reruns the headline alone (a parity run is preceded by
``parity-empty-fresh-db`` when not listed, so that no measured run pays the database's migrations).
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

#: Registries by model count: the 4 demo models, then each demo model registered ``copies`` times.
COPIES = {12: 3, 20: 5}
TARGET_RATIO, TARGET_PEAK_GIB, TARGET_PMML_SPEEDUP = 0.3, 1.0, 10.0
#: The headline of issue 10's P1: ``parity-N`` against ``naive-N`` on this many models.
HEADLINE_MODELS = 20
#: Every run this benchmark knows, in the order they run (``--only`` picks some, in this order).
RUNS = (
    "naive-4",
    "parity-empty-fresh-db",
    "parity-empty-warm-db",
    "parity-4",
    "parity-12",
    "parity-20",
    "naive-20",
    "parity-4-default-targets",
    "parity-12-java-options",
    "naive-12",
    "pmml-speedup",
)
#: Runs only their flags (or ``--only``) add.
OPTIONAL_RUNS = frozenset({"parity-4-default-targets", "parity-12-java-options", "naive-12"})
DEFAULT_RUNS = tuple(label for label in RUNS if label not in OPTIONAL_RUNS)


def build_registries(scratch: Path, sizes: set[int]) -> dict[int, Path]:
    """The demo registry (4 models) and, for each other size in ``sizes``, the demo models copied."""
    from parity.cli.demo import build_demo_registry
    from parity.registry import FileRegistry

    demo = scratch / "registry-4"
    build_demo_registry(demo, log=lambda _m: None)
    source, registries = FileRegistry(demo), {4: demo}
    models = [source.open(ref) for ref in source.refs()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for size in sorted(sizes - {4}):
            registries[size] = scratch / f"registry-{size}"
            target = FileRegistry(registries[size])
            for model in models:
                for copy in range(1, COPIES[size] + 1):
                    name = f"{model.ref.name}-copy{copy}"
                    target.register(model.estimator, model.reference, name, source_files=[])
    return registries


def run_plan(args: argparse.Namespace) -> list[str]:
    """The runs of this invocation: ``--only``'s, or the default ones plus those the flags add."""
    if args.only:
        chosen = [label.strip() for label in args.only.split(",") if label.strip()]
        unknown = [label for label in chosen if label not in RUNS]
        if unknown:
            raise SystemExit(f"--only: unknown run(s) {', '.join(unknown)}; known: {', '.join(RUNS)}")
        if "parity-12-java-options" in chosen and not args.java_options:
            raise SystemExit("--only parity-12-java-options needs --java-options OPTS")
        if any(label.startswith("parity-") for label in chosen) and "parity-empty-fresh-db" not in chosen:
            chosen.append("parity-empty-fresh-db")  # migrates the database before the measured runs
        return [label for label in RUNS if label in chosen]
    plan = list(DEFAULT_RUNS)
    if args.with_default_targets and args.targets in (None, "host"):
        plan.append("parity-4-default-targets")
    if args.java_options:
        plan.append("parity-12-java-options")
    if args.naive_12:
        plan.append("naive-12")
    return [label for label in RUNS if label in plan]


def model_count(label: str) -> int:
    """How many models a run's registry holds (0 for the empty-registry runs)."""
    size = label.split("-")[1]
    return int(size) if size.isdigit() else 0


def with_load(result: dict, before: float) -> dict:
    """A run's result with the 1-minute load average before and after it."""
    result["load_1min"] = [round(before, 2), round(os.getloadavg()[0], 2)]
    return result


def parity_env(scratch: Path, targets: Path | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PARITY_TARGETS")}
    env["PREFECT_HOME"] = str(scratch / "prefect-home")
    if targets is not None:
        env["PARITY_TARGETS"] = str(targets)
    return env


def parity_run(label: str, registry: Path, scratch: Path, env: dict, timeout: float) -> dict:
    archive = scratch / f"archive-{label}"
    shutil.rmtree(archive, ignore_errors=True)
    command = [str(_common.PARITY), "run", "--registry", str(registry), "--archive", str(archive)]
    result = _common.run_measured(command, scratch / f"{label}.log", env=env, timeout=timeout)
    text = Path(result["log"]).read_text(errors="replace")
    result["summary_line"] = next((line for line in reversed(text.splitlines()) if line.strip()), "")
    print(
        f"  {label}: {result['seconds']} s, peak {result['peak_rss_mib']} MiB, exit {result['exit_code']}: {result['summary_line']}",
        file=sys.stderr,
    )
    return result


def naive_run(label: str, registry: Path, scratch: Path, timeout: float) -> dict:
    out = scratch / f"{label}.json"
    command = [
        str(_common.PYTHON),
        str(Path(__file__).with_name("naive.py")),
        "--registry",
        str(registry),
        "--out",
        str(out),
    ]
    result = _common.run_measured(command, scratch / f"{label}.log", timeout=timeout)
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


def figures(runs: dict, pmml: dict | None) -> dict:
    empty = runs.get("parity-empty-warm-db", {}).get("seconds")
    out: dict = {}
    met: dict[str, bool] = {}
    for n in (4, 12, HEADLINE_MODELS):
        parity, naive = runs.get(f"parity-{n}"), runs.get(f"naive-{n}")
        if parity is None or naive is None:
            continue
        unfinished = [
            f"{k}-{n} exit {r['exit_code']}"
            for k, r in (("parity", parity), ("naive", naive))
            if r["exit_code"] != 0
        ]
        if unfinished:  # a killed or failed run's seconds are no figure (a timeout's are a lower bound)
            out[f"unfinished_{n}"] = ", ".join(unfinished)
            met[f"ratio_le_0.3 ({n} models)"] = False
            continue
        out[f"ratio_parity_over_naive_{n}"] = round(parity["seconds"] / naive["seconds"], 2)
        met[f"ratio_le_0.3 ({n} models)"] = out[f"ratio_parity_over_naive_{n}"] <= TARGET_RATIO
        if empty is not None:
            out[f"ratio_excluding_fixed_cost_{n}"] = round((parity["seconds"] - empty) / naive["seconds"], 2)
            met[f"ratio_le_0.3 excluding fixed cost ({n} models)"] = (
                out[f"ratio_excluding_fixed_cost_{n}"] <= TARGET_RATIO
            )
    peaks = []
    for n in (4, 12, HEADLINE_MODELS):
        if f"parity-{n}" in runs:
            out[f"peak_rss_parity_{n}_mib"] = runs[f"parity-{n}"]["peak_rss_mib"]
            out[f"peak_pss_parity_{n}_mib"] = runs[f"parity-{n}"]["peak_pss_mib"]
            peaks.append(out[f"peak_rss_parity_{n}_mib"])
    if peaks:
        met["peak_le_1GiB (every parity run with models)"] = max(peaks) <= TARGET_PEAK_GIB * 1024
    if pmml is not None:
        out["pmml_speedup_first_pass"] = pmml["speedup_first_pass"]
        out["pmml_speedup_warm"] = pmml["speedup_warm"]
        met["pmml_speedup_ge_10x (one parity run: first pass)"] = (
            pmml["speedup_first_pass"] >= TARGET_PMML_SPEEDUP
        )
        met["pmml_speedup_ge_10x (warm converter)"] = pmml["speedup_warm"] >= TARGET_PMML_SPEEDUP
    out["targets_met"] = met
    return out


def headline(runs: dict) -> str:
    """Issue 10's P1 in one line: parity/naive wall time on 20 models against the goal, with the load."""
    parity, naive = runs.get(f"parity-{HEADLINE_MODELS}"), runs.get(f"naive-{HEADLINE_MODELS}")
    if parity is None or naive is None:
        return f"P1 ({HEADLINE_MODELS} models): not run (--only parity-20,naive-20 runs it)"
    ratio = parity["seconds"] / naive["seconds"]
    loads = [*parity["load_1min"], *naive["load_1min"]]
    load = f"1-minute load during the two runs {min(loads)}-{max(loads)} on {os.cpu_count()} cores"
    if parity["exit_code"] != 0:
        return f"P1, {HEADLINE_MODELS} models: no figure, parity-{HEADLINE_MODELS} exit {parity['exit_code']}; {load}"
    if (
        naive["exit_code"] != 0
    ):  # killed at the timeout: the naive time is a lower bound, the ratio an upper one
        return (
            f"P1, {HEADLINE_MODELS} models: naive-{HEADLINE_MODELS} did not finish (exit {naive['exit_code']} "
            f"after {naive['seconds']} s; raise --timeout): parity/naive **< {ratio:.2f}**, not a figure; {load}"
        )
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    return (
        f"P1, {HEADLINE_MODELS} models: parity {parity['seconds']} s / naive {naive['seconds']} s = "
        f"**{ratio:.2f}** (goal <= {TARGET_RATIO}: **{verdict}**); {load}"
    )


def print_tables(runs: dict, pmml: dict | None, summary: dict) -> None:
    rows = []
    for label, r in runs.items():
        rows.append(
            {
                "run": label,
                "wall s": r["seconds"],
                "peak RSS MiB (tree)": r["peak_rss_mib"],
                "exit": r["exit_code"],
                "load 1 min (before, after)": ", ".join(str(v) for v in r["load_1min"]),
                "at peak": ", ".join(f"{k} {v:.0f}" for k, v in r["at_peak_mib"].items()),
            }
        )
    print(f"## {headline(runs)}\n")
    print(f"uptime: {_common.uptime()}\n")
    if rows:
        print("## Wall time and peak memory, side by side\n")
        print(_common.markdown_table(rows, list(rows[0])))
    print("\n## Figures\n")
    fig = [{"figure": k, "value": v} for k, v in summary.items() if k != "targets_met"]
    fig += [
        {"figure": f"target: {k}", "value": "met" if v else "NOT met"}
        for k, v in summary["targets_met"].items()
    ]
    fig += [{"figure": f"pmml: {k}", "value": v} for k, v in (pmml or {}).items()]
    print(_common.markdown_table(fig, ["figure", "value"]))
    label = next((f"naive-{n}" for n in (HEADLINE_MODELS, 4, 12) if f"naive-{n}" in runs), None)
    naive = runs[label].get("detail") if label else None
    if naive:
        print(f"\n## Where the naive script's time goes ({naive['models']} models, s)\n")
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
    parser.add_argument(
        "--only",
        metavar="RUN,RUN",
        help=f"run only these (comma-separated, run in the usual order): {', '.join(RUNS)}",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600,
        help="seconds after which a run is killed (default 3600; a loaded machine needs them)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs, archives)")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    plan = run_plan(args)
    with _common.scratch_folder("parity-bench-sweep-", args.keep) as scratch:
        _common.isolated_prefect_home(scratch)
        print(f"building registries in {scratch}; runs: {', '.join(plan)}", file=sys.stderr)
        print(f"uptime: {_common.uptime()}", file=sys.stderr)
        registries = build_registries(scratch, {model_count(label) for label in plan} - {0})
        registries[0] = scratch / "registry-empty"
        registries[0].mkdir()
        targets = _common.targets_file(scratch, args.targets)
        env = parity_env(scratch, targets)
        runs, pmml = {}, None
        for label in plan:
            before = os.getloadavg()[0]
            if label == "pmml-speedup":
                print("  PMML conversion: sklearn2pmml() per model vs warm JVM", file=sys.stderr)
                pmml = pmml_speedup(registries[4], scratch)
                continue
            registry = registries[model_count(label)]
            if label.startswith("naive-"):
                runs[label] = with_load(naive_run(label, registry, scratch, args.timeout), before)
                continue
            run_env = env
            if label == "parity-4-default-targets":
                run_env = parity_env(scratch, None)
            elif label == "parity-12-java-options":
                run_env = {**env, "_JAVA_OPTIONS": args.java_options}
            runs[label] = with_load(parity_run(label, registry, scratch, run_env, args.timeout), before)
            if label == "parity-12-java-options":
                runs[label]["java_options"] = args.java_options
        summary = figures(runs, pmml)
        print_tables(runs, pmml, summary)
        data = {
            "benchmark": "sweep",
            "machine": _common.machine(),
            "uptime": _common.uptime(),
            "headline": headline(runs),
            "summary": summary,
            "runs": runs,
            "pmml": pmml,
        }
        _common.write_json(args.out, data)
        return 0


if __name__ == "__main__":
    sys.exit(main())
