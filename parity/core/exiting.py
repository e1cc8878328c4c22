"""Ending a process that may hold an in-process JVM, without the crash Python's finalization causes there."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from typing import NoReturn


def end_process(code: int) -> NoReturn:
    """Run the exit handlers, flush, and end the process with ``code``, skipping Python's finalization.

    JPype's JVM (jpmml_evaluator) lives inside the process and keeps threads that wait for the GIL. During
    finalization Python ends such threads with ``pthread_exit``, whose unwinding JPype's C++ frames catch
    and do not rethrow: glibc then aborts the finished process ("FATAL: exception not rethrown", exit 134;
    jpype#765, #1144), about 1 process in 10 after JPype was used from several threads. Everything a
    process must do at exit is in its exit handlers (Prefect stops its temporary server and drains its
    events, logging flushes), so they run first; then the process ends as the handlers left it.

    Parameters
    ----------
    code : int
        The exit status.
    """
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed, or a broken pipe: nothing more to say
            stream.flush()
    os._exit(code)
