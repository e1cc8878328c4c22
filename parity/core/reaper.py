"""Children die with their parent: a watcher ends every process a run started once the run is gone.

A parent-death signal (``PR_SET_PDEATHSIG``) fires when the *thread* that started a child ends, and Parity
starts JVMs from worker threads that end long before the run (the warm-up thread, Prefect's task threads);
Prefect's temporary server (``SubprocessASGIServer``: ``python -m uvicorn`` in a plain ``Popen``) takes no
options at all. So a run marks its environment with :data:`MARKER` before it starts anything — every child
inherits it (JVMs, qemu, uvicorn, their own children) — and starts a watcher in its own session that holds
the reading end of a pipe. When the run ends, however it ends (``kill -9`` of it alone, or of its whole
process group, which the watcher is not in), the pipe closes and the watcher ends every process whose
environment carries the run's mark: SIGTERM, then SIGKILL after :data:`GRACE_S`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from typing import Any

#: The environment variable that marks a run's descendants: ``<pid>-<random hex>``.
MARKER = "PARITY_RUN_MARK"
#: Seconds a marked process has to exit after SIGTERM before it is killed.
GRACE_S = 5.0

_pipe: int | None = None  # the writing end, held open for this process's lifetime


def start_reaper() -> str:
    """Mark this process's environment and start the watcher that ends its marked descendants after it.

    Idempotent: a process already marked (by itself, or as a run's child) keeps its mark and starts no
    second watcher.

    Returns
    -------
    str
        The mark, the value of :data:`MARKER` in this process's environment from now on.
    """
    global _pipe
    mark = os.environ.get(MARKER)
    if mark:
        return mark
    mark = f"{os.getpid()}-{uuid.uuid4().hex}"
    read_end, _pipe = os.pipe()  # both ends non-inheritable: no other child keeps the pipe open
    watcher_env = {k: v for k, v in os.environ.items() if k != MARKER}
    subprocess.Popen(
        [sys.executable, "-m", "parity.core.reaper", mark],
        stdin=read_end,
        # never the run's own output: whoever reads it to its end must not wait for the watcher too
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=watcher_env,
        start_new_session=True,  # survives a kill of the run's process group
    )
    os.close(read_end)
    os.environ[MARKER] = mark
    return mark


def marked(mark: str, variable: str = MARKER) -> list[Any]:
    """The live processes (``psutil.Process``) whose environment carries ``mark``, this one excluded.

    Parameters
    ----------
    mark : str
        A value of ``variable``.
    variable : str
        The environment variable that holds the mark; :data:`MARKER` by default.

    Returns
    -------
    list of psutil.Process
    """
    import psutil

    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if process.environ().get(variable) == mark:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def end_marked(mark: str, grace_s: float = GRACE_S) -> int:
    """End every process carrying ``mark``: SIGTERM, then SIGKILL for those still alive after ``grace_s``.

    Parameters
    ----------
    mark : str
        A value of :data:`MARKER`.
    grace_s : float
        Seconds to wait between the two signals.

    Returns
    -------
    int
        How many processes were signalled.
    """
    import psutil

    total = 0
    for _round in range(3):  # a dying parent may start a child while we look: look again
        targets = marked(mark)
        if not targets:
            break
        total += len(targets)
        for process in targets:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.terminate()
        _gone, alive = psutil.wait_procs(targets, timeout=grace_s)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(alive, timeout=grace_s)
    return total


def _watch(mark: str) -> None:
    sys.stdin.buffer.read()  # returns at EOF: the run has ended, one way or another
    end_marked(mark)


if __name__ == "__main__":
    _watch(sys.argv[1])
