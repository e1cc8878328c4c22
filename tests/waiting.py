"""Waiting in tests on a condition, never on a fixed window of wall-clock time.

A test that sleeps for N seconds, or gives up after a short N, fails for timing alone on a loaded machine (a
2-core machine at load 10 made the suite flaky: issue 9). Every wait here polls a condition and stops as
soon as it holds; the deadline only bounds a hang, so it is generous, named, and says why it has its value.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

#: What a real Prefect server does after a call has returned (an event a flow emitted becoming readable, an
#: artifact listed): under 2 s on a quiet machine; its event persister flushes every few seconds, and at
#: load 10 one flush can wait tens of seconds for the CPU and for SQLite's lock. 180 s is some 20x the
#: slowest seen under load and still fails well inside the per-test limit of ``prefect_server`` tests.
SERVER_SIDE_DEADLINE_S = 180.0


def wait_for(
    check: Callable[[], Any], timeout: float, what: str | Callable[[], str], every: float = 1.0
) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test naming ``what`` after ``timeout``.

    Parameters
    ----------
    check : callable
        Called with no arguments, first at once, then every ``every`` seconds.
    timeout : float
        Seconds after which the wait fails: bounds a hang, never paces a test.
    what : str or callable
        What was awaited, for the failure message; a callable is called on failure, so a log it quotes is
        the log at the end of the wait.
    every : float
        Seconds between two checks.

    Returns
    -------
    Any
        The first truthy value ``check`` returned.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:.0f} s waiting for {what() if callable(what) else what}")
        time.sleep(every)
