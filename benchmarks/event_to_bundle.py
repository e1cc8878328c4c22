"""P4: event → archived bundle on a running Prefect server, against the raw stage costs of the same model.

Starts ``prefect server start`` (private ``PREFECT_HOME``, SQLite, a free port) and ``parity serve`` (which
serves the ``convert-and-validate/on-registration`` deployment and its ``parity.model.registered`` trigger)
on a host-only targets table. Registers ``--trials + 1`` copies of a small model (iris LogisticRegression)
under distinct names while no API is configured (so registration emits nothing), then, for each copy in
turn, emits its ``parity.model.registered`` event and times until its archive bundle's manifest is on disk.
The first copy is a warm-up (the trigger's first match; re-announced until a run appears), not counted.

In the same benchmark process it then calls the stage functions directly, as the deployed flow's tasks do:
load (``FileRegistry.open``), convert ONNX and PMML (``validators.formats``), validate each artifact
(``validate_conversion`` and its remedy) and file (``archive.file_model``). *Cold* is the first pass of the
process (it imports the stage modules' runtimes and starts the converter JVM and the runtimes' JVMs, as
each deployed run's fresh process must), *warm* the fastest of ``--warm`` passes after it.

Prints event → bundle (median, min, max), both stage sums, the ratio against the goal (≤ 1.5x the warm sum)
and ``uptime``. Run: ``.venv/bin/python benchmarks/event_to_bundle.py [--trials 3] [--warm 2] [--out F.json]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _common  # noqa: E402
from tests.deployments.prefect_processes import PrefectServer, healthy, server_env, stop  # noqa: E402

GOAL = 1.5
#: Seconds the server may take to answer /health, `parity serve` to register its trigger, and one
#: triggered run to file its bundle; generous because the machine is shared (each ends as soon as done).
START_DEADLINE_S = 300
BUNDLE_DEADLINE_S = 600
#: A warm-up event not answered by a run within this long is emitted again (the trigger service
#: reconciles its automations every few seconds after `parity serve` creates them).
REANNOUNCE_AFTER_S = 30
#: How often the benchmark looks for the bundle on disk (its own resolution, not the flow's).
LOOK_EVERY_S = 0.05
MODEL = "iris-p4"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def wait_until(condition, deadline_s: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(every)
    raise TimeoutError(f"{what} did not happen within {deadline_s:.0f} s")


def register_copies(registry: Path, copies: int) -> list[str]:
    """``copies`` iris LogisticRegression models under distinct names (no API configured: no events)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from parity.registry import FileRegistry

    X, y = load_iris(return_X_y=True, as_frame=True)
    store, names = FileRegistry(registry), []
    for i in range(copies):
        name = f"{MODEL}-{i}"
        store.register(LogisticRegression(max_iter=500, C=1.0 + i / 10).fit(X, y), X, name)
        names.append(name)
    return names


class Served:
    """``prefect server start`` and ``parity serve`` (the deployment tests' process helpers)."""

    def __init__(self, scratch: Path, registry: Path, archive: Path, targets: Path) -> None:
        url, env = server_env(scratch / "server-home", PARITY_TARGETS=str(targets))
        (scratch / "logs").mkdir()
        self.stack = PrefectServer(url, env, scratch / "logs")
        self.url, self.registry, self.archive = url, registry, archive

    def start(self) -> float:
        """Start both; return the seconds until the trigger exists on the server."""
        began, stack = time.perf_counter(), self.stack
        stack.spawn("server", sys.executable, "-m", "prefect", "server", "start")
        wait_until(
            lambda: healthy(self.url), START_DEADLINE_S, f"the server's /health\n{stack.log('server')}"
        )
        serve = (sys.executable, "-m", "parity", "serve", "--registry", str(self.registry))
        stack.spawn("serve", *serve, "--archive", str(self.archive))
        wait_until(self.trigger_exists, START_DEADLINE_S, f"`parity serve`'s trigger\n{stack.log('serve')}")
        return time.perf_counter() - began

    def trigger_exists(self) -> bool:
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        with get_client(sync_client=True) as client:
            try:
                deployment = client.read_deployment_by_name("convert-and-validate/on-registration")
            except ObjectNotFound:
                return False
            return bool(client.read_resource_related_automations(f"prefect.deployment.{deployment.id}"))

    def stop(self) -> None:
        for process in reversed(self.stack.processes):  # `parity serve` first, the server last
            stop(process)


def event_to_bundle(name: str, registry: Path, archive: Path, reannounce: bool) -> tuple[float, datetime]:
    """Seconds from emitting ``name``'s registration event to its bundle's manifest on disk, and when the
    event was emitted."""
    from parity.archive import MANIFEST
    from parity.registry.events import emit_registered

    manifest = archive / name / "1" / MANIFEST
    emitted, began = datetime.now(UTC), time.perf_counter()
    emit_registered(name, 1, registry)
    deadline, last = began + BUNDLE_DEADLINE_S, began
    while not manifest.is_file():
        now = time.perf_counter()
        if now > deadline:
            raise TimeoutError(f"no bundle for {name} within {BUNDLE_DEADLINE_S} s")
        if reannounce and now - last > REANNOUNCE_AFTER_S:
            last = now
            if not runs_of([name]):  # the trigger's first match may miss a fresh automation
                emit_registered(name, 1, registry)
        time.sleep(LOOK_EVERY_S)
    return time.perf_counter() - began, emitted


def runs_of(names: list[str]) -> list:
    """The flow runs of these models (``NAME-v1``)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    run_names = [f"{name}-v1" for name in names]
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=run_names)))


def final_runs(names: list[str]) -> list:
    """The flow runs of these models once every run of each has ended; [] until then."""
    runs = runs_of(names)
    ended = all(run.created and run.start_time and run.end_time for run in runs)
    return runs if ended and {run.name for run in runs} >= {f"{name}-v1" for name in names} else []


def wait_final(names: list[str]) -> list:
    return wait_until(lambda: final_runs(names), BUNDLE_DEADLINE_S, f"the final states of {', '.join(names)}")


def run_phases(emitted: dict[str, datetime]) -> dict[str, dict[str, float]]:
    """Where each triggered run's time went, from the server's own timestamps: event → flow run created (the
    trigger and its action), created → Running (the runner's poll, the spawned process's start and
    imports), Running → final (the flow itself). Waits for the runs to end (a bundle is on disk before its
    run reports its final state)."""
    runs = wait_final(list(emitted))
    phases: dict[str, dict[str, float]] = {}
    for run in sorted(runs, key=lambda r: r.created):
        name = run.name.removesuffix("-v1")
        if name in phases or not (run.start_time and run.end_time):
            continue  # a second run of a re-announced event
        phases[name] = {
            "event_to_run_created": (run.created - emitted[name]).total_seconds(),
            "created_to_running": (run.start_time - run.created).total_seconds(),
            "flow_running": (run.end_time - run.start_time).total_seconds(),
        }
    return phases


def stage_pass(registry: Path, name: str, work: Path, targets: Path) -> dict[str, float]:
    """One model through the stage functions the deployed flow's tasks call, each timed."""
    import parity.archive as archive_stage
    from parity.core.records import Outcome
    from parity.registry import FileRegistry
    from parity.validators.formats import FORMATS, format_of
    from parity.validators.targets.table import load_roles, load_targets
    from parity.validators.validate import ModelContext, remedied, validate_conversion

    figures: dict[str, float] = {}
    began = time.perf_counter()
    store = FileRegistry(registry)
    model = store.open(store.resolve(name, 1))
    figures["load"] = time.perf_counter() - began
    context, conversions, checks = ModelContext(model), {}, []
    table, roles = load_targets(str(targets)), load_roles(str(targets))
    for fmt in FORMATS:
        began = time.perf_counter()
        conversion = format_of(fmt).convert(model.estimator, model.reference, work / fmt)
        figures[f"convert {fmt}"] = time.perf_counter() - began
        began = time.perf_counter()
        found = validate_conversion(context, conversion, targets=table, roles=roles)
        made, found = remedied(context, conversion, found, work / f"{fmt}-remedy", table, roles)
        figures[f"validate {fmt}"] = time.perf_counter() - began
        conversions.update(made)
        checks.extend(found)
    began = time.perf_counter()
    filed = archive_stage.file_model(archive_stage.Archive(str(work / "archive")), model, conversions, checks)
    figures["file"] = time.perf_counter() - began
    if filed.outcome is not Outcome.PASSED:
        raise RuntimeError(f"{name} did not pass when validated directly: {filed.report.outcome}")
    return figures


def stage_costs(registry: Path, name: str, scratch: Path, targets: Path, warm: int) -> dict:
    """The cold (first in this process) and warm (fastest of ``warm``) stage pass of ``name``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cold = stage_pass(registry, name, scratch / "stages-cold", targets)
        warms = [stage_pass(registry, name, scratch / f"stages-warm-{i}", targets) for i in range(warm)]
    best = min(warms, key=lambda f: sum(f.values()))
    return {"cold": cold, "warm": best}


def main() -> int:
    parser = argparse.ArgumentParser(description="P4: event → archived bundle vs the raw stage costs.")
    parser.add_argument("--trials", type=int, default=3, help="timed events after the warm-up (default 3)")
    parser.add_argument("--warm", type=int, default=2, help="warm stage passes, fastest kept (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs, archive)")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    scratch = _common.scratch_dir("parity-bench-p4-")
    load_before = uptime()
    served: Served | None = None
    try:
        _common.isolated_prefect_home(scratch)
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
        targets = _common.targets_file(scratch, "host")
        assert targets is not None
        registry, archive = scratch / "registry", scratch / "archive"
        names = register_copies(registry, args.trials + 1)
        served = Served(scratch, registry, archive, targets)
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: served.url}):
            startup_s = served.start()
            warm_up_s, _ = event_to_bundle(names[0], registry, archive, reannounce=True)
            wait_final([names[0]])  # each trial starts once the previous run has ended
            timed = {}
            for name in names[1:]:
                timed[name] = event_to_bundle(name, registry, archive, reannounce=False)
                wait_final([name])
            trials = [seconds for seconds, _ in timed.values()]
            phases = run_phases({n: emitted for n, (_, emitted) in timed.items()})
        load_served = uptime()
        served.stop()
        stages = stage_costs(registry, names[0], scratch, targets, args.warm)
        cold_s, warm_s = sum(stages["cold"].values()), sum(stages["warm"].values())
        median = statistics.median(trials)
        data = {
            "benchmark": "event_to_bundle",
            "machine": _common.machine(),
            "uptime": {"before": load_before, "after_served_runs": load_served, "end": uptime()},
            "server_and_serve_start_s": round(startup_s, 2),
            "warm_up_event_to_bundle_s": round(warm_up_s, 2),
            "event_to_bundle_s": [round(t, 2) for t in trials],
            "run_phases_s": {n: {k: round(v, 2) for k, v in p.items()} for n, p in phases.items()},
            "stages_cold_s": {k: round(v, 3) for k, v in stages["cold"].items()},
            "stages_warm_s": {k: round(v, 3) for k, v in stages["warm"].items()},
            "ratio_vs_warm_stages": round(median / warm_s, 2),
            "ratio_vs_cold_stages": round(median / cold_s, 2),
            "goal": GOAL,
        }
        print("## P4: event → archived bundle (host-only targets, iris LogisticRegression)\n")
        print(
            f"- server + `parity serve` up, trigger registered: {startup_s:.1f} s; warm-up event: {warm_up_s:.1f} s"
        )
        print(
            f"- event → bundle, {len(trials)} trials: median {median:.2f} s (min {min(trials):.2f}, max {max(trials):.2f})"
        )
        for name, phase in phases.items():
            print(f"  - {name}: " + ", ".join(f"{k.replace('_', ' ')} {v:.2f} s" for k, v in phase.items()))
        for kind in ("cold", "warm"):
            parts = ", ".join(f"{k} {v:.3f}" for k, v in stages[kind].items())
            print(f"- raw stages {kind}: {sum(stages[kind].values()):.2f} s ({parts})")
        met = "met" if data["ratio_vs_warm_stages"] <= GOAL else "NOT met"
        print(
            f"- **ratio event→bundle / warm stage sum: {data['ratio_vs_warm_stages']}x** (goal ≤ {GOAL}x: {met})"
        )
        print(
            f"- ratio against the cold stage sum (a fresh process's first pass): {data['ratio_vs_cold_stages']}x"
        )
        print(f"- uptime before: {load_before}\n- uptime after the served runs: {load_served}")
        _common.write_json(args.out, data)
        return 0
    finally:
        if served is not None:
            served.stop()
        if args.keep:
            print(f"scratch kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    from parity.core.exiting import end_process

    end_process(main())  # the stage passes used JPype's in-process JVM: skip the finalization it crashes
