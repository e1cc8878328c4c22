"""Load test of the fanned-out nightly sweep: a real Prefect server on PostgreSQL, process workers on one
work pool, N registered models, one worker (its whole process tree) killed with SIGKILL mid-sweep.

What it does, in order, printing each step:
1. a throwaway PostgreSQL cluster (Debian's ``postgresql``: ``initdb`` + ``pg_ctl``, as the ``postgres`` user
   when run as root, on a free port, trust authentication on 127.0.0.1 only);
2. ``prefect server start`` on it (``PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://...``);
3. ``parity deploy`` (work pools with their concurrency limits, the crash automation), then W process workers
   on ``parity-x86-64``;
4. N small models registered with ``FileRegistry.register`` (logistic regressions and shallow trees on iris,
   every tenth a LabelSpreading, which neither converter supports: it must end rejected);
5. the sweep, ``validate_registry(fan_out=True)``, in a subprocess (the parent is not on a worker, so the
   kill takes only children); once the first worker runs a model, that worker and everything under it gets
   SIGKILL;
6. then checks: every version archived or rejected, none archived twice (one bundle folder, a manifest that
   verifies, no leftover staging), none lost (the sweep reports each version exactly once), and reports wall
   time, the peak RSS of the process tree (PostgreSQL's own processes counted apart) and the error lines of
   the server's log.

Run: ``.venv/bin/python benchmarks/sweep_load.py [--models 100] [--workers 2] [--no-kill] [--out FILE.json]``
(100 models: about 20-40 minutes on a 2-core machine). ``tests/deployments/test_sweep_load.py`` runs it small.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import TreeSampler, machine, scratch_dir, targets_file  # noqa: E402
from tests.deployments.prefect_processes import (  # noqa: E402
    PrefectServer,
    free_port,
    healthy,
    server_env,
    stop,
)

#: Seconds each stage may take on a loaded 2-core machine before the load test gives up, saying which.
SERVER_START_S = 300
SWEEP_S_PER_MODEL = 120
SWEEP_S_FIXED = 900
WORKER_BUSY_S = 600
#: A child Pending this long, or Running this long without a heartbeat, is counted crashed by the sweep (a
#: killed worker may hold claimed runs, or runs whose first heartbeat never reached the server).
PENDING_S = 180
#: Lines of the server's log that count as database errors.
DB_ERROR = re.compile(
    r"database is locked|deadlock|asyncpg\.|sqlalchemy\.exc|OperationalError|IntegrityError|"
    r"too many connections|connection (was )?closed|could not serialize",
    re.IGNORECASE,
)
#: Every tenth model is one neither converter supports: it must end in the rejected area, not be lost.
UNSUPPORTED_EVERY = 10


class LoadTestError(RuntimeError):
    """A stage of the load test did not come up or finish in time (the message says which)."""


def wait_until(check: Callable[[], object], timeout: float, what: str, every: float = 1.0) -> object:
    """Poll ``check`` until truthy; raise :class:`LoadTestError` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise LoadTestError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
    return value


# -- PostgreSQL --------------------------------------------------------------------------------------------
def _pg_bin(tool: str) -> str:
    found = shutil.which(tool) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"))), None)
    if not found:
        raise LoadTestError(f"{tool} not found: install Debian's postgresql (apt-get install -y postgresql)")
    return str(found)


def _as_db_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the ``postgres`` user when we are root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextlib.contextmanager
def postgres(say: Callable[[str], None]) -> Iterator[tuple[str, Path]]:
    """A throwaway PostgreSQL cluster; yields its SQLAlchemy URL and its data folder."""
    # a folder of its own, readable by the postgres user (the scratch folder may be private to us)
    base = Path(tempfile.mkdtemp(prefix="parity-pg-"))
    base.chmod(0o755)
    data, port = base / "pgdata", free_port()
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    init = [_pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "prefect", "-E", "UTF8"]
    subprocess.run(_as_db_user(init), check=True, capture_output=True, timeout=300)
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=200"
    start = [_pg_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(data / "server.log"), "-w", "-t"]
    subprocess.run(_as_db_user([*start, "300", "start"]), check=True, capture_output=True, timeout=360)
    say(f"PostgreSQL on 127.0.0.1:{port} ({data})")
    try:
        yield f"postgresql+asyncpg://prefect@127.0.0.1:{port}/postgres", data
    finally:
        stop = [_pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "120", "stop"]
        subprocess.run(_as_db_user(stop), capture_output=True, timeout=180, check=False)
        shutil.rmtree(base, ignore_errors=True)


def postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# -- Prefect server and workers (the deployment tests' helpers: one way to run them) ---------------------
def stop_all(stack: PrefectServer) -> None:
    """Stop every process group the stack started: workers first, the server (started first) last."""
    for process in reversed(stack.processes):
        stop(process)


def start_server(root: Path, database_url: str, say: Callable[[str], None]) -> PrefectServer:
    """``prefect server start`` on ``database_url``, answering on a free port."""
    url, env = server_env(root / "prefect-home", PREFECT_API_DATABASE_CONNECTION_URL=database_url)
    stack = PrefectServer(url, env, root)
    server = stack.spawn("server", sys.executable, "-m", "prefect", "server", "start")
    wait_until(
        lambda: server.poll() is not None or healthy(url),
        SERVER_START_S,
        "the Prefect server to answer on PostgreSQL",
    )
    if server.poll() is not None:
        raise LoadTestError(f"the Prefect server exited:\n{stack.log('server')[-3000:]}")
    say(f"Prefect server {url}")
    return stack


# -- models -------------------------------------------------------------------------------------------------
def register_models(registry: Path, count: int) -> list[tuple[str, int]]:
    """``count`` small models, registered without a Prefect API (no event: only the sweep takes them)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.semi_supervised import LabelSpreading
    from sklearn.tree import DecisionTreeClassifier

    from parity.registry import FileRegistry

    X, y = load_iris(return_X_y=True, as_frame=True)
    store, done = FileRegistry(registry), []
    for i in range(count):
        if i % UNSUPPORTED_EVERY == UNSUPPORTED_EVERY - 1:
            model, kind = LabelSpreading(), "spreading"
        elif i % 2:
            model, kind = DecisionTreeClassifier(max_depth=2 + i % 3, random_state=i), "tree"
        else:
            model, kind = LogisticRegression(max_iter=300, C=1.0 + i / 10), "logreg"
        ref = store.register(model.fit(X, y), X.sample(30, random_state=i), f"load-{i:03d}-{kind}")
        done.append((ref.name, ref.version))
    return done


# -- the sweep and the kill ---------------------------------------------------------------------------------
SWEEP = """
import json, sys
from parity.flows.validate import result_data, validate_registry
from parity.flows import fanout
fanout.PENDING_S = fanout.SILENT_S = float(sys.argv[4])
state = validate_registry(sys.argv[1], sys.argv[2], targets=sys.argv[3], fan_out=True, return_state=True)
reports = result_data(state)
print("SWEEP-RESULT " + json.dumps({"state": state.type.value, "message": state.message,
    "reports": [[r.name, r.version, str(r.outcome), r.error or ""] for r in reports]}))
"""


def _descendants(pid: int) -> list[int]:
    from benchmarks._common import _tree

    return [p for p, _ in _tree(pid)]


def kill_tree(pid: int) -> list[int]:
    """SIGKILL ``pid`` and every process under it (a machine lost), leaves first seen, all at once."""
    victims = _descendants(pid)
    for victim in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    return victims


def _running_with_heartbeat(stack: PrefectServer, worker: str) -> bool:
    """A flow run this worker submitted is Running and has sent a heartbeat: killing the worker now
    leaves a run that only Prefect's crash automation can end (the case the sweep must survive)."""
    ids = re.findall(r"submitting flow run '([0-9a-f-]+)'", stack.log(worker))
    if not ids:
        return False
    url = stack.env["PREFECT_API_URL"]
    runs = _post(f"{url}/flow_runs/filter", {"flow_runs": {"id": {"any_": ids}}})
    running = [r["id"] for r in runs if r["state"] and r["state"]["type"] == "RUNNING"]
    if not running:
        return False
    ids_filter = {"id": [f"prefect.flow-run.{i}" for i in running]}
    found = _post(
        f"{url}/events/filter",
        {"filter": {"event": {"name": ["prefect.flow-run.heartbeat"]}, "resource": ids_filter}, "limit": 1},
    )
    return bool(found["events"])


def _post(url: str, body: dict) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def child_states(stack: PrefectServer) -> dict:
    """The sweep's children (runs of convert-and-validate): how many ended in each state, and the messages
    of the crashed ones (Prefect's crash automation, or the sweep for a run left Pending)."""
    body = {"flows": {"name": {"any_": ["convert-and-validate"]}}, "limit": 200}
    runs = _post(f"{stack.env['PREFECT_API_URL']}/flow_runs/filter", body)
    states = _count(r["state"]["type"] for r in runs if r["state"])
    crashed = [f"{r['name']}: {r['state']['message']}" for r in runs if r["state"]["type"] == "CRASHED"]
    return {"runs": len(runs), "states": states, "crashed": crashed}


@dataclass
class LoadResult:
    models: int
    workers: int
    killed: list[int]
    wall_s: float
    sweep: dict
    checks: dict
    memory: dict
    postgres_peak_rss_mib: float
    database_errors: list[str]
    held: bool
    #: the sweep's child flow runs by final state, and what Prefect said of the crashed ones
    children: dict


def check_archive(archive: Path, expected: list[tuple[str, int]], reports: list) -> dict:
    """Archived or rejected, none twice, none lost: what the archive and the sweep's reports say."""
    from parity.archive import REJECTED, STAGING, Archive

    shelf = Archive(archive)
    archived = [(n, v) for n, v in expected if shelf.is_archived(n, v)]
    rejected = [(n, v) for n, v in expected if not shelf.is_archived(n, v) and shelf.rejected(n, v)]
    lost = [f"{n}:{v}" for n, v in expected if (n, v) not in archived and (n, v) not in rejected]
    corrupt = {f"{n}:{v}": p for n, v in archived if (p := shelf.check(shelf.bundle_path(n, v)))}
    reported = [(n, v) for n, v, *_ in reports]
    twice = sorted({f"{n}:{v}" for n, v in reported if reported.count((n, v)) > 1})
    unreported = [f"{n}:{v}" for n, v in expected if (n, v) not in reported]
    staging = sorted(str(p) for p in (archive / STAGING).glob("*")) if (archive / STAGING).exists() else []
    unsupported_archived = [f"{n}:{v}" for n, v in archived if n.endswith("spreading")]
    return {
        "archived": len(archived),
        "rejected": len(rejected),
        "lost": lost,
        "corrupt": corrupt,
        "reported_twice": twice,
        "not_reported": unreported,
        "staging_left": staging,
        "unsupported_archived": unsupported_archived,
        "rejected_folder": str(archive / REJECTED),
    }


def run_load(
    models: int, workers: int, kill: bool, root: Path, say: Callable[[str], None] = print
) -> LoadResult:
    """The whole load test (see the module docstring) in ``root``; returns what it measured."""
    os.environ.pop("PREFECT_API_URL", None)
    registry, archive = root / "registry", root / "archive"
    expected = register_models(registry, models)
    say(f"registered {len(expected)} models in {registry}")
    targets = targets_file(root, "host")
    with postgres(say) as (database_url, pgdata):
        stack = start_server(root, database_url, say)
        pg_sampler = TreeSampler(postmaster_pid(pgdata) or os.getpid(), interval=0.5, pss_every=10**9)
        try:
            deploy = [sys.executable, "-m", "parity", "deploy", "--registry", str(registry)]
            done = subprocess.run(
                [*deploy, "--archive", str(archive)],
                env=stack.env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            if done.returncode != 0:
                raise LoadTestError(f"parity deploy failed:\n{done.stdout}\n{done.stderr}")
            say(f"deployed; starting {workers} process workers on parity-x86-64")
            pool = [
                stack.spawn(
                    f"worker-{i}",
                    *(sys.executable, "-m", "prefect", "worker", "start", "--pool", "parity-x86-64"),
                    *("--type", "process"),
                )
                for i in range(1, workers + 1)
            ]
            start = time.perf_counter()
            with TreeSampler(os.getpid(), interval=0.5, pss_every=20) as sampler, pg_sampler:
                sweep = stack.spawn(
                    "sweep",
                    sys.executable,
                    "-c",
                    SWEEP,
                    str(registry),
                    str(archive),
                    str(targets),
                    str(PENDING_S),
                )
                killed: list[int] = []
                if kill:
                    wait_until(
                        lambda: _running_with_heartbeat(stack, "worker-1"),
                        WORKER_BUSY_S,
                        "worker-1 to run a model that has sent a heartbeat",
                        every=0.5,
                    )
                    killed = kill_tree(pool[0].pid)
                    say(
                        f"SIGKILL to worker-1 and its {len(killed) - 1} child process(es) at "
                        f"{time.perf_counter() - start:.1f} s"
                    )
                budget = SWEEP_S_FIXED + SWEEP_S_PER_MODEL * models / max(1, workers - int(kill))
                wait_until(lambda: sweep.poll() is not None, budget, "the sweep to finish", every=2)
            wall = time.perf_counter() - start
            line = next((x for x in stack.log("sweep").splitlines() if x.startswith("SWEEP-RESULT ")), None)
            if line is None:
                raise LoadTestError(f"the sweep printed no result:\n{stack.log('sweep')[-4000:]}")
            result = json.loads(line.removeprefix("SWEEP-RESULT "))
            children = child_states(stack)
        finally:
            stop_all(stack)
        errors = [x for x in stack.log("server").splitlines() if DB_ERROR.search(x)]
    checks = check_archive(archive, expected, result["reports"])
    held = not (checks["lost"] or checks["corrupt"] or checks["reported_twice"] or checks["not_reported"])
    held = held and not checks["staging_left"] and not checks["unsupported_archived"] and not errors
    held = held and checks["archived"] + checks["rejected"] == models
    return LoadResult(
        models=models,
        workers=workers,
        killed=killed,
        wall_s=round(wall, 1),
        sweep={
            "state": result["state"],
            "message": result["message"],
            "outcomes": _count(r[2] for r in result["reports"]),
        },
        checks=checks,
        memory=sampler.summary(),
        postgres_peak_rss_mib=round(pg_sampler.peak_total / 1024**2, 1),
        database_errors=errors[:50],
        held=held,
        children=children,
    )


def _count(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-kill", action="store_true", help="do not kill a worker mid-sweep")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs, archive)")
    args = parser.parse_args(argv)
    root = scratch_dir("parity-sweep-load-")
    print(f"load test: {args.models} models, {args.workers} workers, kill={not args.no_kill}, in {root}")
    try:
        result = run_load(args.models, args.workers, not args.no_kill, root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    figures = {"machine": machine(), **result.__dict__}
    print(json.dumps(figures, indent=2))
    print(
        "HELD: all archived or rejected, none twice, none lost" if result.held else "DID NOT HOLD (see above)"
    )
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))
    return 0 if result.held else 1


if __name__ == "__main__":
    sys.exit(main())
