"""A run's children end with it, however it ends; JVM crash logs land in the cache folder, not the cwd."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from parity.core.reaper import MARKER, end_marked, marked

#: How long the watcher may take to notice the run is gone and end its children on a loaded machine
#: (it wakes at once; SIGTERM then SIGKILL after 5 s): generous, and only reached when something is wrong.
REAP_DEADLINE_S = 120

_RUN = """
import os, subprocess, sys, time
from parity.core.reaper import start_reaper
mark = start_reaper()
assert start_reaper() == mark, "a second call starts no second watcher"
child = subprocess.Popen(["sleep", "3600"])
shell = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 3600 & wait"])  # ignores SIGTERM
time.sleep(0.5)  # let sh start its own child
print(mark, child.pid, shell.pid, flush=True)
time.sleep(3600)
"""


def _wait_until_gone(mark: str) -> list[object]:
    deadline = time.monotonic() + REAP_DEADLINE_S
    while marked(mark) and time.monotonic() < deadline:
        time.sleep(0.5)
    return marked(mark)


@pytest.mark.parametrize("whole_group", [False, True], ids=["main-process-alone", "whole-group"])
def test_children_end_when_the_run_is_killed(whole_group: bool):
    env = {k: v for k, v in os.environ.items() if k != MARKER}
    run = subprocess.Popen(
        [sys.executable, "-c", _RUN], stdout=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        line = run.stdout.readline() if run.stdout else ""
        assert line, f"the run printed nothing (exit {run.poll()})"
        mark, *pids = line.split()
        assert len(marked(mark)) >= 3, "sleep, sh and sh's sleep carry the mark"
        watchers = [p for p in psutil.process_iter(["cmdline"]) if mark in (p.info["cmdline"] or [])]
        assert len(watchers) == 1, "one watcher, which does not carry the mark itself"
        for fd in (1, 2):  # a caller reading the run's output to its end must not wait for the watcher
            assert os.readlink(f"/proc/{watchers[0].pid}/fd/{fd}") == os.devnull
        if whole_group:
            os.killpg(run.pid, signal.SIGKILL)
        else:
            run.kill()
        run.wait(timeout=60)
        left = _wait_until_gone(mark)
        assert not left, f"still running {REAP_DEADLINE_S} s after the run was killed: {left}"
        assert not any(psutil.pid_exists(int(pid)) and _is_ours(int(pid), mark) for pid in pids)
    finally:
        if run.stdout:
            run.stdout.close()
        if run.poll() is None:
            run.kill()
            run.wait(timeout=60)


def _is_ours(pid: int, mark: str) -> bool:
    try:
        return psutil.Process(pid).environ().get(MARKER) == mark
    except psutil.Error:
        return False


def test_end_marked_with_nothing_marked_signals_nothing():
    assert end_marked("no-such-mark", grace_s=0.1) == 0


@pytest.mark.slow
def test_jvm_crash_log_goes_to_the_cache_folder(tmp_path: Path):
    """A JPype JVM started by jpmml_evaluator's runtime crashes (out of memory, told to crash on it):
    its hs_err log is in ``$PARITY_CACHE_DIR/jvm-crashes``, and nothing is in the working folder."""
    crash = (
        "import jpype\n"
        "from parity.validators.runtimes.pmml import JpmmlRuntime\n"
        "JpmmlRuntime(max_heap='32m', jvm_options=('-XX:+CrashOnOutOfMemoryError',)).start()\n"
        "jpype.JArray(jpype.JLong)(10**9)\n"
    )
    cache = tmp_path / "cache"
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", crash], cwd=work, env={**os.environ, "PARITY_CACHE_DIR": str(cache)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0, "the JVM was expected to crash"
    logs = list((cache / "jvm-crashes").glob("hs_err_pid*.log"))
    assert logs, f"no crash log in the cache folder; stderr: {done.stderr[-1500:]}"
    assert list(work.iterdir()) == [], "the crash left files in the working folder"
