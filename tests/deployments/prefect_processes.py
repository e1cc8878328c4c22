"""A real ``prefect server start`` and process workers, as subprocesses, for the deployment tests.

Helpers live here (imported by the tests); ``conftest.py`` only exposes the fixture.

Every wait is bounded; workers are stopped before the server (a SIGTERM'd worker can take a minute).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import wait_for

__all__ = [
    "PrefectServer",
    "announce_until_triggered",
    "client_call",
    "deployment_runs",
    "prefect_api",
    "stop",
    "wait_for",
]

ROOT = Path(__file__).resolve().parents[2]
#: ``prefect server start`` on fresh SQLite: about 25 s on a quiet 2-core machine (FACTS.md), several times
#: that at load 10 (migrations and imports are CPU-bound); the wait ends as soon as /health answers.
SERVER_START_TIMEOUT = 300
#: A SIGTERM'd worker that has not exited by then is SIGKILLed: the test is over, nothing is lost by it.
WORKER_STOP_GRACE = 15
#: A short command against the server (``parity register``, an event sent from a fresh interpreter): its
#: imports alone take 5-10 s quiet and several times that under load, plus up to 60 s for its event to be
#: taken (``EMIT_TIMEOUT_SECONDS``). It ends as soon as the command does.
COMMAND_TIMEOUT = 300
#: Silence after an announcement before an event is announced again (see :func:`announce_until_triggered`):
#: the trigger service reconciles its automations every few seconds and a matched event becomes a flow run
#: within seconds more, so 30 s of nothing means the event was missed; a repeat that was not needed only
#: costs a second run, which the archive's exactly-once write makes harmless.
REANNOUNCE_AFTER_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen, grace: float = WORKER_STOP_GRACE) -> None:
    """Stop a process group this test started: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


@dataclass
class PrefectServer:
    """A running server and what a subprocess needs to talk to it."""

    url: str
    env: dict[str, str]
    logs: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def spawn(self, name: str, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start a long-running subprocess (worker, serve) in its own process group, logging to a file."""
        # The child writes through its own copy of the descriptor: ours is closed as soon as it has started.
        with open(self.logs / f"{name}.log", "w") as log:
            process = subprocess.Popen(
                list(args),
                cwd=ROOT,
                env={**self.env, **(extra_env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def run(
        self, *args: str, timeout: float = COMMAND_TIMEOUT, expect_failure: bool = False
    ) -> subprocess.CompletedProcess:
        """Run a short command against the server; fail the test with its output if it fails (unless a
        failure is what the test expects)."""
        done = subprocess.run(
            list(args), cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0 and not expect_failure:
            pytest.fail(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text() if path.is_file() else ""


def healthy(url: str) -> bool:
    """Whether ``url``/health answers 200 (a Prefect server, a webhook receiver)."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def server_env(home: Path, **extra: str) -> tuple[str, dict[str, str]]:
    """The API URL of a server on a free port, and the environment its processes and clients get
    (``extra`` adds settings, e.g. the database URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    return url, {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.5",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory) -> Iterator[PrefectServer]:
    """``prefect server start`` on a free port with SQLite in a temporary PREFECT_HOME.

    The test process talks to it through ``temporary_settings``; subprocesses get ``server.env``.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path_factory.mktemp("prefect-home")
    logs = tmp_path_factory.mktemp("logs")
    url, env = server_env(home)
    server = PrefectServer(url, env, logs)
    process = server.spawn("server", sys.executable, "-m", "prefect", "server", "start")
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Prefect server did not start:\n{server.log('server')[-4000:]}")
            time.sleep(1)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield server
    finally:
        for other in reversed(server.processes):  # workers first, the server (first started) last
            stop(other)


def client_call(coroutine_function: Callable[..., Any], *args: Any) -> Any:
    """Run ``coroutine_function(client, *args)`` with a fresh Prefect client."""
    from prefect.client.orchestration import get_client

    async def call() -> Any:
        async with get_client() as client:
            return await coroutine_function(client, *args)

    return asyncio.run(call())


async def _deployment_runs(client, name: str) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.exceptions import ObjectNotFound

    try:
        deployment = await client.read_deployment_by_name(name)
    except ObjectNotFound:
        return []
    return await client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
    )


def deployment_runs(name: str) -> list:
    """The flow runs of deployment ``name`` (``flow/deployment``); none while it does not exist."""
    return client_call(_deployment_runs, name)


def announce_until_triggered(
    deployment: str, announce: Callable[[], Any], timeout: float, what: Callable[[], str]
) -> tuple[list, list]:
    """Wait for a run of ``deployment``, calling ``announce`` again while none has appeared.

    The server's trigger service takes up a new automation a little after it is created (its periodic
    reconciliation of automations): an event that came first is seen, matched to nothing, and never looked at
    again, and the server ignores an event id it has already seen. So each announcement must be a new event.
    A loaded server may also not take an event in time (``emit_registered`` then returns None): the next
    announcement covers that too.

    Parameters
    ----------
    deployment : str
        ``flow/deployment`` whose run the event triggers.
    announce : callable
        Sends one new event; its return values are collected.
    timeout : float
        Seconds before the wait fails (bounds a hang).
    what : callable
        Describes the wait on failure (called then, so a log it quotes is current).

    Returns
    -------
    tuple of (list, list)
        The deployment's runs, and what each extra ``announce`` returned (empty when the first event did).
    """
    sent: list = []
    last = time.monotonic()

    def runs_or_announce() -> list:
        nonlocal last
        runs = deployment_runs(deployment)
        if not runs and time.monotonic() - last > REANNOUNCE_AFTER_S:
            sent.append(announce())
            last = time.monotonic()
        return runs

    started = time.monotonic()
    runs = wait_for(runs_or_announce, timeout, lambda: f"{what()} (events sent again: {sent})", every=2)
    # shown with `pytest -rP`: how often a loaded server needed the repeat
    print(f"{deployment}: a run after {time.monotonic() - started:.0f} s and {len(sent)} repeat(s): {sent}")
    return runs, sent
