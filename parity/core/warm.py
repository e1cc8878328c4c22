"""A long-lived helper process that answers jobs over its standard streams, several at a time.

Parity keeps its heavy runtimes warm in processes of their own — the PMML engine's JVM
(:mod:`parity.core.engine`) and the ONNX runner under an emulator — and talks to each with one tiny line
protocol, the same on both sides:

- the server prints ``READY`` on its own line once it takes jobs;
- a request is one line, ``ID<TAB>VERB<TAB>ARG...``; a reply is one line, ``ID<TAB>ok<TAB>FIELD...`` or
  ``ID<TAB>error<TAB>MESSAGE``; replies may come in any order, so several callers share one process;
- the server exits when its standard input closes (so it never outlives this process).

Rows never travel in these lines: they go through files in a binary column format (doubles bit for bit),
named in the request. Fields must not hold tabs or line breaks; :func:`check_field` refuses them.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import IO

from .errors import EnvironmentProblem, InvalidInputError

#: What a server prints once it takes jobs.
READY = "READY"
#: Seconds a server has to say READY: a cold JVM under qemu on a loaded machine takes tens of seconds.
START_TIMEOUT_S = 600.0
#: Seconds to wait for a killed server to be gone (SIGKILL: only a process stuck in the kernel takes long).
KILL_WAIT_S = 30.0


def check_field(value: str) -> str:
    """``value`` when it can travel as one protocol field; refused when it holds a tab or a line break."""
    if any(char in value for char in "\t\r\n"):
        raise InvalidInputError(
            f"{value!r}: a job's paths and arguments must not hold tabs or line breaks; rename the file."
        )
    return value


class JobFailed(Exception):
    """The server answered ``error``: the job failed, the process is fine (the message is the server's)."""


@dataclass
class _Run:
    """One started server process and what belongs to it alone (so a restart never mixes two)."""

    process: subprocess.Popen[str]
    stderr: IO[bytes]  # its standard error, for the message when it fails
    ready: Future[None] = field(default_factory=Future)
    waiting: dict[str, Future[list[str]]] = field(default_factory=dict)
    gone: EnvironmentProblem | None = None  # set once its output ended: it takes no more jobs

    def stderr_tail(self, limit: int = 2000) -> str:
        """The end of its standard error, read without moving the offset the server writes at."""
        with contextlib.suppress(OSError, ValueError):
            fd = self.stderr.fileno()
            size = os.fstat(fd).st_size
            start = max(0, size - 4 * limit)
            text = os.pread(fd, size - start, start).decode(errors="replace").strip()
            return text[-limit:] or "no error output"
        return "no error output"


class WarmProcess:
    """One server process (see the module docstring), started on first use and again after it died.

    Parameters
    ----------
    name : str
        What it is, for messages (``"the PMML engine (linux/x86_64)"``).
    command : sequence of str
        The server's command line.
    env : mapping, optional
        Its environment (default: this process's).
    start_timeout_s : float
        Seconds it has to print ``READY``.

    Notes
    -----
    Thread-safe: any number of threads may :meth:`call` at once; each waits for its own reply. A job
    written to a server that has already died is sent again to a fresh one (it cannot have run).
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        env: dict[str, str] | None = None,
        *,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        self.name, self.command, self.env = name, list(command), env
        self.start_timeout_s = start_timeout_s
        self._lock = threading.Lock()  # guards the current run and every run's table of waiting jobs
        self._write = threading.Lock()
        self._run: _Run | None = None
        self._ids = itertools.count(1)

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else None."""
        run = self._run
        return run.process.pid if run is not None and run.process.poll() is None else None

    def start(self) -> None:
        """Start the server now (if it is not running) and wait until it says READY."""
        self._running()

    def call(self, verb: str, args: Sequence[str], timeout_s: float) -> list[str]:
        """Run one job and return its reply fields.

        Parameters
        ----------
        verb : str
            What the server should do.
        args : sequence of str
            Its arguments (no tabs or line breaks).
        timeout_s : float
            Seconds the job may take; past them the server is stopped (its other jobs fail too) and
            restarted by the next call.

        Returns
        -------
        list of str
            The fields after ``ok``.

        Raises
        ------
        JobFailed
            When the server answered ``error`` (its message).
        EnvironmentProblem
            When the server cannot start, dies, or does not answer in time; the message holds the end of
            its standard error.
        """
        line = "\t".join(check_field(str(part)) for part in (verb, *args))
        run, job, reply = self._submit(line)
        try:
            return reply.result(timeout=timeout_s)
        except FutureTimeout:
            tail = run.stderr_tail()
            self._kill(run.process)
            raise EnvironmentProblem(
                f"{self.name} did not finish {verb} in {timeout_s:.0f} s and was stopped; the next job starts "
                f"it afresh. Its last output: {tail}"
            ) from None
        finally:
            with self._lock:
                run.waiting.pop(job, None)

    def _submit(self, line: str) -> tuple[_Run, str, Future[list[str]]]:
        for _attempt in range(2):  # a second time only when the first server was dead before it read the job
            run = self._running()
            job, reply = str(next(self._ids)), Future[list[str]]()
            with self._lock:
                if run.gone is None:
                    run.waiting[job] = reply
            if run.gone is None and self._send(run, f"{job}\t{line}\n"):
                return run, job, reply
            with self._lock:
                run.waiting.pop(job, None)
            with contextlib.suppress(subprocess.TimeoutExpired):
                run.process.wait(timeout=5)  # its pipe is closed: it is exiting; let it finish
        raise run.gone or EnvironmentProblem(
            f"{self.name} closed its input without exiting: {run.stderr_tail()}. Stop it and try again."
        )

    def _send(self, run: _Run, text: str) -> bool:
        """Write ``text`` to ``run``'s input; False when the server is gone (its input is closed)."""
        try:
            with self._write:
                assert run.process.stdin is not None  # started with stdin=PIPE
                run.process.stdin.write(text)
                run.process.stdin.flush()
        except (OSError, ValueError):
            return False
        return True

    def _running(self) -> _Run:
        with self._lock:
            if self._run is None or self._run.process.poll() is not None:
                self._spawn()
            run = self._run
        assert run is not None
        try:
            run.ready.result(timeout=self.start_timeout_s)
        except FutureTimeout:
            tail = run.stderr_tail()
            self._kill(run.process)
            raise EnvironmentProblem(
                f"{self.name} did not start in {self.start_timeout_s:.0f} s: {tail}"
            ) from None
        return run

    def _spawn(self) -> None:
        self._close_run()
        # Lives as long as the process: its last words, for the message when it dies.
        stderr = tempfile.TemporaryFile(prefix="parity-warm-stderr-")  # noqa: SIM115
        try:
            process = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                text=True, encoding="utf-8", errors="replace", env=self.env, bufsize=1,
            )  # fmt: skip
        except OSError as err:
            stderr.close()
            raise EnvironmentProblem(f"{self.name} could not start ({self.command[0]}): {err}.") from err
        self._run = run = _Run(process, stderr)
        threading.Thread(target=self._read, args=(run,), name=f"warm-{process.pid}", daemon=True).start()

    def _read(self, run: _Run) -> None:
        """Deliver every reply line to its waiting job; when the output ends, fail whatever still waits."""
        process = run.process
        assert process.stdout is not None
        try:
            self._deliver(run, process.stdout)
        except (OSError, ValueError):  # an unreadable reply: the process is of no use any more
            self._kill(process)
        self._end(run)

    def _deliver(self, run: _Run, lines: IO[str]) -> None:
        for raw in lines:
            line = raw.rstrip("\n")
            if not run.ready.done():
                if line == READY:
                    run.ready.set_result(None)
                continue  # anything before READY is start-up noise
            job, _, rest = line.partition("\t")
            status, _, payload = rest.partition("\t")
            with self._lock:
                reply = run.waiting.get(job)
            if reply is None or reply.done():
                continue
            if status == "ok":
                reply.set_result(payload.split("\t") if payload else [])
            else:
                reply.set_exception(JobFailed(payload or status))

    def _end(self, run: _Run) -> None:
        process = run.process
        process.wait()
        gone = EnvironmentProblem(
            f"{self.name} exited with code {process.returncode}: {run.stderr_tail()}. The next job "
            "starts it afresh."
        )
        for stream in (process.stdout, process.stdin, run.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.close()  # type: ignore[union-attr]
        with self._lock:
            run.gone = gone
            waiting = [reply for reply in run.waiting.values() if not reply.done()]
        if not run.ready.done():
            run.ready.set_exception(gone)
        for reply in waiting:
            with contextlib.suppress(Exception):  # a reply that completed meanwhile
                reply.set_exception(gone)

    def _kill(self, process: subprocess.Popen[str]) -> None:
        """Kill ``process`` and wait for it, so the next job starts a fresh one rather than reach the dying
        one; its reader then fails every job still waiting on it."""
        with contextlib.suppress(OSError):
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=KILL_WAIT_S)

    def _close_run(self) -> None:
        run, self._run = self._run, None
        if run is None:
            return
        process = run.process
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()  # the server exits at the end of its input
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # Its reader closes its streams once it has read the last of them.

    def close(self) -> None:
        """Stop the server (a later call starts it again)."""
        with self._lock:
            self._close_run()


_SERVERS: dict[tuple, WarmProcess] = {}
_SERVERS_LOCK = threading.Lock()


def warm_process(key: tuple, make: Callable[[], WarmProcess]) -> WarmProcess:
    """The process of this ``key`` (one per target and settings), made by ``make`` on first use.

    Every process made here is stopped at interpreter exit (and, its input closing, whenever this
    process dies).
    """
    with _SERVERS_LOCK:
        if key not in _SERVERS:
            _SERVERS[key] = make()
        return _SERVERS[key]


@atexit.register
def close_all() -> None:
    """Stop every process :func:`warm_process` made."""
    with _SERVERS_LOCK:
        servers = list(_SERVERS.values())
    for server in servers:
        server.close()


def pid_of(key: tuple) -> int | None:
    """The process id of the running server of ``key``, None when none runs (for tests and benchmarks)."""
    with _SERVERS_LOCK:
        server = _SERVERS.get(key)
    return server.pid if server is not None else None


__all__ = ["READY", "JobFailed", "WarmProcess", "check_field", "close_all", "pid_of", "warm_process"]
