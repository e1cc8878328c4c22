"""Fault injection: ``parity run`` killed with SIGKILL at random points leaves nothing behind.

Each round starts ``parity run`` on a small registry (three small models; a new version of each is
registered whenever everything is archived, so every round has work), waits for a point of the run —
``load`` (the run printed where it validates), ``convert`` (an artifact appeared in the run's temporary
folder), ``validate`` (both artifacts exist, plus a random delay), ``archive`` (a staging folder or a new
bundle appeared in the archive) or ``random`` (a random delay) — and kills it: its whole process group, or
its main process alone (alternating). Every process the run started carries an environment mark of the
round, so an orphan is found whatever its parent became. After each kill it checks:

- every bundle under ``ARCHIVE/<name>/<version>/`` verifies against its manifest;
- no process carrying the round's mark is left (JVMs, Prefect's temporary server, qemu) after
  :data:`ORPHAN_DEADLINE_S`;
- no ``hs_err_pid*.log`` / ``replay_pid*.log`` in the run's working folder.

Then a last ``parity run`` without a kill must exit 0, leave no staging folder in the registry or the
archive, and leave every registered version archived exactly once, none rejected.

Run: ``.venv/bin/python benchmarks/faults.py [--kills 10] [--seed 1] [--targets host|default|FILE]
[--keep DIR]``. Prints each kill (point, mode, seconds into the run, what was found) and what held.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from benchmarks._common import PARITY, isolated_prefect_home, targets_file
from parity.archive.bundle import STAGING
from parity.core.reaper import marked

POINTS = ("load", "convert", "validate", "archive", "random")
#: The round's mark; every process the killed run started inherits it.
ROUND_MARK = "PARITY_FAULT_ROUND"
#: How long a killed run's children may take to end (the run's watcher: SIGTERM, then SIGKILL after 5 s).
ORPHAN_DEADLINE_S = 120
#: How long a point may take to come (Prefect's temporary server alone takes 15-20 s on 2 cores).
POINT_DEADLINE_S = 600
#: How long the final, unkilled run may take.
FINAL_RUN_DEADLINE_S = 1200


@dataclass
class Kill:
    point: str
    whole_group: bool
    reached: bool
    seconds: float
    orphans: list[str] = field(default_factory=list)
    bad_bundles: list[str] = field(default_factory=list)
    crash_logs: list[str] = field(default_factory=list)
    #: Staging folders the kill left (registry and archive): the next run must sweep them.
    staging_left: int = 0

    @property
    def held(self) -> bool:
        return not (self.orphans or self.bad_bundles or self.crash_logs)


def register_models(registry: Path) -> None:
    """Three small models (a new version of each on every call)."""
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    from parity.registry import FileRegistry

    store = FileRegistry(registry)
    X, y = load_iris(return_X_y=True, as_frame=True)
    Xd, yd = load_diabetes(return_X_y=True, as_frame=True)
    store.register(LogisticRegression(max_iter=500).fit(X, y), X, "iris-logreg")
    store.register(DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y), X, "iris-tree")
    store.register(LinearRegression().fit(Xd, yd), Xd, "diabetes-linear")


def pending(registry: Path, archive: Path) -> list[str]:
    from parity.archive import Archive
    from parity.registry import FileRegistry

    shelf = Archive(archive)
    return [str(r) for r in FileRegistry(registry).refs() if not shelf.is_archived(r.name, r.version)]


def bad_bundles(archive: Path) -> list[str]:
    """Bundles under ``ARCHIVE/<name>/<version>/`` that do not verify against their manifest."""
    from parity.archive import Archive

    shelf, bad = Archive(archive), []
    for bundle in sorted(archive.glob("*/*")):
        if (
            bundle.parent.name.startswith(("_", "."))
            or bundle.parent.name == "extensions"
            or not bundle.is_dir()
        ):
            continue
        try:
            problems = (
                shelf.check(bundle)
                if (bundle / "inventory.json.sha512").is_file()
                else ["no sidecar: incomplete"]
            )
        except Exception as err:  # no manifest: a partial bundle, the worst case
            problems = [f"{type(err).__name__}: {err}"]
        if problems:
            bad.append(f"{bundle.relative_to(archive)}: {'; '.join(problems)}")
    return bad


def wait_orphans(mark: str) -> list[str]:
    """The processes of a round still alive after :data:`ORPHAN_DEADLINE_S`, as ``PID command`` lines."""
    deadline = time.monotonic() + ORPHAN_DEADLINE_S
    while marked(mark, ROUND_MARK) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = []
    for process in marked(mark, ROUND_MARK):
        with contextlib.suppress(psutil.Error):
            left.append(f"{process.pid} {' '.join(process.cmdline())[:100]}")
    return left


def start_run(scratch: Path, registry: Path, archive: Path, targets: Path | None, mark: str):
    (scratch / "tmp").mkdir(exist_ok=True)
    (scratch / "cwd").mkdir(exist_ok=True)
    env = {**os.environ, ROUND_MARK: mark, "TMPDIR": str(scratch / "tmp")}
    env.pop("PARITY_RUN_MARK", None)
    command = [str(PARITY), "run", "--registry", str(registry), "--archive", str(archive)]
    if targets is not None:
        command += ["--targets", str(targets)]
    log = open(scratch / "run.log", "ab")  # noqa: SIM115 - closed by the caller with the run
    run = subprocess.Popen(
        command, cwd=scratch / "cwd", env=env, stdout=log, stderr=log, start_new_session=True
    )
    return run, log


def _artifacts(scratch: Path) -> set[str]:
    """Suffixes of the artifacts the run has written so far; empty when a temporary folder vanished while it
    was listed (the run removes its scratch folders as it goes: the next poll looks again)."""
    try:
        return {p.suffix for p in (scratch / "tmp").glob("parity-*/*/model*.*")}
    except FileNotFoundError:
        return set()


def wait_for(point: str, run, scratch: Path, archive: Path, rng: random.Random) -> bool:
    """Wait until the run reaches ``point``; False when it ended first or the point never came."""
    before = set(archive.glob("*/*"))
    log = scratch / "run.log"
    start = log.stat().st_size if log.exists() else 0
    deadline = time.monotonic() + POINT_DEADLINE_S
    if point == "random":
        deadline = time.monotonic() + rng.uniform(3, 45)
    while time.monotonic() < deadline:
        if run.poll() is not None:
            return False
        if point == "load" and b"validating" in log.read_bytes()[start:]:
            time.sleep(rng.uniform(0, 3))
            return run.poll() is None
        if point == "convert" and _artifacts(scratch):
            return True
        if point == "validate" and {".pmml", ".onnx"} <= _artifacts(scratch):
            time.sleep(rng.uniform(0, 2))
            return run.poll() is None
        if point == "archive" and (any((archive / STAGING).glob("*")) or set(archive.glob("*/*")) - before):
            return True
        time.sleep(0.02)
    return point == "random" and run.poll() is None


def one_kill(point: str, whole_group: bool, paths: dict[str, Path], targets, rng) -> Kill:
    scratch, registry, archive = paths["scratch"], paths["registry"], paths["archive"]
    if not pending(registry, archive):
        register_models(registry)
    shutil.rmtree(scratch / "tmp", ignore_errors=True)
    mark = uuid.uuid4().hex
    started = time.monotonic()
    run, log = start_run(scratch, registry, archive, targets, mark)
    try:
        reached = wait_for(point, run, scratch, archive, rng)
        seconds = time.monotonic() - started
        if run.poll() is None:
            if whole_group:
                os.killpg(run.pid, signal.SIGKILL)
            else:
                run.kill()
        run.wait(timeout=60)
    finally:
        log.close()
    crash_logs = [p.name for p in (scratch / "cwd").glob("*_pid*.log")]
    orphans = wait_orphans(mark)
    left = len(staging(registry, archive))
    return Kill(point, whole_group, reached, seconds, orphans, bad_bundles(archive), crash_logs, left)


def staging(registry: Path, archive: Path) -> list[str]:
    """The staging folders (not their lock files) in the registry and the archive."""
    found = [*registry.glob(".staging-*"), *(archive / STAGING).glob("*")]
    return [p.name for p in found if p.is_dir()]


def final_run(paths: dict[str, Path], targets) -> dict[str, object]:
    from parity.archive import Archive
    from parity.registry import FileRegistry

    scratch, registry, archive = paths["scratch"], paths["registry"], paths["archive"]
    mark = uuid.uuid4().hex
    run, log = start_run(scratch, registry, archive, targets, mark)
    try:
        code = run.wait(timeout=FINAL_RUN_DEADLINE_S)
    finally:
        log.close()
    shelf, refs = Archive(archive), FileRegistry(registry).refs()
    left = [*registry.glob(".staging-*"), *(archive / STAGING).glob("*")]  # lock files count too
    return {
        "exit": code,
        "versions": len(refs),
        "not_archived": [str(r) for r in refs if not shelf.is_archived(r.name, r.version)],
        "rejected": [str(r) for r in refs if shelf.rejected(r.name, r.version)],
        "staging_left": [p.name for p in left],
        "bad_bundles": bad_bundles(archive),
        "orphans": wait_orphans(mark),
        "crash_logs": [p.name for p in (scratch / "cwd").glob("*_pid*.log")],
    }


def inject(kills: int, seed: int, scratch: Path, targets_choice: str | None = "host") -> dict[str, object]:
    """Run ``kills`` killed rounds and the final run in ``scratch``; return what was tried and found."""
    rng = random.Random(seed)
    paths = {"scratch": scratch, "registry": scratch / "registry", "archive": scratch / "archive"}
    isolated_prefect_home(scratch)
    targets = targets_file(scratch, targets_choice)
    register_models(paths["registry"])
    points = [POINTS[i % len(POINTS)] for i in range(kills)]
    rng.shuffle(points)
    done = []
    for i, point in enumerate(points):
        kill = one_kill(point, i % 2 == 0, paths, targets, rng)
        done.append(kill)
        mode = "group" if kill.whole_group else "main"
        print(
            f"kill {i + 1:2}/{kills}: {point:8} {mode:5} at {kill.seconds:5.1f} s"
            f"{'' if kill.reached else ' (run ended first)'}, {kill.staging_left} staging folder(s) left: "
            f"{'held' if kill.held else f'FAILED {kill.orphans} {kill.bad_bundles} {kill.crash_logs}'}",
            flush=True,
        )
    final = final_run(paths, targets)
    return {"kills": done, "final": final}


def held(result: dict[str, object]) -> bool:
    final = result["final"]
    assert isinstance(final, dict)
    kills = result["kills"]
    assert isinstance(kills, list)
    return (
        all(k.held for k in kills)
        and final["exit"] == 0
        and not any(final[k] for k in ("not_archived", "rejected", "staging_left", "bad_bundles", "orphans"))
        and not final["crash_logs"]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--targets", default="host", help="host (this machine only), default, or a file")
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    scratch = (
        Path(args.keep)
        if args.keep
        else Path(os.environ.get("TMPDIR", "/tmp")) / f"parity-faults-{os.getpid()}"
    )
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        result = inject(args.kills, args.seed, scratch, args.targets)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    kills = result["kills"]
    assert isinstance(kills, list)
    reached = {p: sum(k.reached and k.point == p for k in kills) for p in POINTS}
    print(
        f"\n{len(kills)} kills ({sum(k.whole_group for k in kills)} of the whole group), points reached: {reached}"
    )
    print(
        f"held after every kill: {all(k.held for k in kills)} (bundles verify, no orphan, no crash log in cwd)"
    )
    print(
        f"staging folders left by the kills, each swept by a later run: {sum(k.staging_left for k in kills)}"
    )
    print(f"final run: {result['final']}")
    ok = held(result)
    print(f"{'ALL HELD' if ok else 'SOMETHING DID NOT HOLD'} in {time.monotonic() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
