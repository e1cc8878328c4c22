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

ROOT = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT = 180
WORKER_STOP_GRACE = 15


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    check: Callable[[], Any], timeout: float, what: str | Callable[[], str], every: float = 1.0
) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test naming ``what`` after ``timeout``.

    ``what`` may be a function, called on failure: a log it quotes is then the log at the end of the wait.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:.0f} s waiting for {what() if callable(what) else what}")
        time.sleep(every)


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
        self, *args: str, timeout: float = 120, expect_failure: bool = False
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


def _healthy(url: str) -> bool:
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
        while not _healthy(url):
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
