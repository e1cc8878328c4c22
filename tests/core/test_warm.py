"""``parity.core.warm`` against a tiny real server: a Python script speaking the protocol."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from parity.core import warm
from parity.core.errors import EnvironmentProblem, InvalidInputError
from parity.core.warm import JobFailed, WarmProcess, check_field
from tests.waiting import wait_for

# Each job on a thread of its own, so replies can overtake each other; verbs:
# echo ARG... | pid | fail MSG | block KEY (answers once "free KEY" came) | arrived KEY (answers once
# "block KEY" came) | free KEY | hang | die
SERVER = r"""
import os, sys, threading, time
print("starting up")  # noise before READY is ignored
print("READY", flush=True)
lock, events = threading.Lock(), {}

def event(key):
    with lock:
        return events.setdefault(key, threading.Event())

def reply(*fields):
    with lock:
        sys.stdout.write("\t".join(fields) + "\n")
        sys.stdout.flush()

def handle(line):
    job, verb, *args = line.rstrip("\n").split("\t")
    if verb == "echo":
        reply(job, "ok", *args)
    elif verb == "pid":
        reply(job, "ok", str(os.getpid()))
    elif verb == "fail":
        reply(job, "error", args[0])
    elif verb == "block":
        event("arrived " + args[0]).set()
        event("free " + args[0]).wait()
        reply(job, "ok", "unblocked", args[0])
    elif verb == "arrived":
        event("arrived " + args[0]).wait()
        reply(job, "ok", "arrived", args[0])
    elif verb == "free":
        event("free " + args[0]).set()
        reply(job, "ok", "freed", args[0])
    elif verb == "hang":
        time.sleep(3600)
    elif verb == "die":
        sys.stderr.write("dying on purpose\n")
        sys.stderr.flush()
        os._exit(3)

for line in sys.stdin:
    threading.Thread(target=handle, args=(line,), daemon=True).start()
"""
# Never says READY: says why on stderr and exits.
BROKEN = "import sys; sys.stderr.write('cannot find my engine\\n'); sys.exit(7)"
JOB_S = 120.0  # a deadline no healthy job here comes near
REAPED_S = 120.0  # SIGKILL cannot be ignored: only a process stuck in the kernel takes long to go


@pytest.fixture
def server(tmp_path: Path):
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    process = WarmProcess("the test server", [sys.executable, str(script)])
    yield process
    process.close()


def test_jobs_share_one_process_and_fields_come_back(server):
    first = server.call("pid", [], timeout_s=JOB_S)
    assert server.call("echo", ["a b", "c"], timeout_s=JOB_S) == ["a b", "c"]
    assert server.call("echo", [], timeout_s=JOB_S) == []
    assert server.call("pid", [], timeout_s=JOB_S) == first == [str(server.pid)]


def test_two_jobs_in_flight_are_answered_out_of_order(server):
    server.start()
    answered: list[str] = []
    blocked = threading.Thread(target=lambda: answered.append(server.call("block", ["k"], JOB_S)[0]))
    blocked.start()
    # "arrived k" is answered once the server holds "block k"; that one still waits, so it is overtaken.
    assert server.call("arrived", ["k"], timeout_s=JOB_S) == ["arrived", "k"]
    assert blocked.is_alive() and answered == []
    assert server.call("free", ["k"], timeout_s=JOB_S) == ["freed", "k"]
    blocked.join(timeout=JOB_S)
    assert answered == ["unblocked"]


def test_an_error_reply_fails_that_job_only(server):
    pid = server.call("pid", [], timeout_s=JOB_S)
    with pytest.raises(JobFailed, match="model is broken"):
        server.call("fail", ["model is broken"], timeout_s=JOB_S)
    assert server.call("pid", [], timeout_s=JOB_S) == pid


def test_a_job_past_its_deadline_stops_the_server_and_the_next_call_restarts_it(server):
    before = server.call("pid", [], timeout_s=JOB_S)
    with pytest.raises(
        EnvironmentProblem, match=r"the test server did not finish hang in 0 s and was stopped"
    ):
        server.call("hang", [], timeout_s=0.2)
    after = server.call("pid", [], timeout_s=JOB_S)
    assert after != before


def test_death_mid_job_fails_it_with_the_stderr_tail_and_the_next_call_restarts(server):
    before = server.call("pid", [], timeout_s=JOB_S)
    with pytest.raises(EnvironmentProblem, match=r"exited with code 3: dying on purpose\. The next job"):
        server.call("die", [], timeout_s=JOB_S)
    after = server.call("pid", [], timeout_s=JOB_S)
    assert after != before


def test_a_server_killed_between_jobs_is_restarted(server):
    before = int(server.call("pid", [], timeout_s=JOB_S)[0])
    os.kill(before, signal.SIGKILL)
    wait_for(lambda: server.pid is None, REAPED_S, "the killed server to be reaped", every=0.01)
    assert int(server.call("pid", [], timeout_s=JOB_S)[0]) != before


def test_jobs_waiting_when_the_server_dies_all_fail(server):
    server.start()
    failures: list[BaseException] = []

    def blocked() -> None:
        try:
            server.call("block", ["never"], timeout_s=JOB_S)
        except EnvironmentProblem as err:
            failures.append(err)

    waiter = threading.Thread(target=blocked)
    waiter.start()
    with pytest.raises(EnvironmentProblem, match="exited with code 3"):
        server.call("die", [], timeout_s=JOB_S)
    waiter.join(timeout=JOB_S)
    assert len(failures) == 1
    assert "dying on purpose" in str(failures[0])


def test_a_server_that_never_says_ready_fails_with_its_stderr():
    broken = WarmProcess("the broken server", [sys.executable, "-c", BROKEN])
    with pytest.raises(
        EnvironmentProblem, match=r"the broken server exited with code 7: cannot find my engine"
    ):
        broken.call("echo", ["x"], timeout_s=JOB_S)
    broken.close()


def test_a_missing_program_is_an_environment_problem(tmp_path):
    missing = WarmProcess("the missing server", [str(tmp_path / "no-such-program")])
    with pytest.raises(EnvironmentProblem, match=r"the missing server could not start \(.*no-such-program\)"):
        missing.start()


@pytest.mark.parametrize("bad", ["a\tb", "a\nb", "a\rb"], ids=["tab", "newline", "return"])
def test_fields_with_tabs_or_line_breaks_are_refused_before_anything_is_sent(server, bad):
    with pytest.raises(InvalidInputError, match="must not hold tabs or line breaks"):
        server.call("echo", ["fine", bad], timeout_s=JOB_S)
    assert server.pid is None  # refused before the server was even started
    assert check_field("plain / path with spaces") == "plain / path with spaces"


def test_warm_process_keeps_one_per_key_and_pid_of_follows_it(tmp_path):
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    key = ("test-warm", str(tmp_path))
    made: list[WarmProcess] = []

    def make() -> WarmProcess:
        made.append(WarmProcess("the keyed server", [sys.executable, str(script)]))
        return made[-1]

    try:
        first = warm.warm_process(key, make)
        assert warm.warm_process(key, make) is first and len(made) == 1
        assert warm.pid_of(key) is None  # made, not started
        pid = first.call("pid", [], timeout_s=JOB_S)[0]
        assert warm.pid_of(key) == int(pid)
        assert warm.pid_of(("test-warm", "no such key")) is None
    finally:
        first.close()
    assert warm.pid_of(key) is None
