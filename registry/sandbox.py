"""Model bytes not yet bound to a registration are tried in a child process first.

The child, forked from this process when it has no other thread (else from a warm fork server that has
already imported scikit-learn and skops), runs with a memory limit and no core dumps: it builds the model with the explicit trust list, runs the structural checks
(:mod:`parity.registry.structure`) and, when reference rows are given, every output method on them. Only when
the child reports success does the caller build the model in its own process. A file that crashes the child
(a signal), exhausts its memory, or hangs it is refused with a message saying so; Parity itself never goes
down with it.

The child answers with a few bytes of JSON, never a pickle: a child that ran hostile code must not be able to
send the parent objects to unpickle.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import resource
import signal
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

import pandas as pd

from parity.core.errors import ParityError, UntrustedModelError
from parity.core.numbers import decimal_int

#: Memory (MiB, address space beyond what the fork server already maps) a model may use while it is tried.
MEMORY_ENV = "PARITY_LOADER_MEMORY_MB"
DEFAULT_MEMORY_MB = 4096
#: How long a model may take to load and predict on its reference rows in the child. Generous: a large
#: forest on a million reference rows on a loaded two-core machine takes minutes; a hang is still refused.
DEADLINE_ENV = "PARITY_LOADER_DEADLINE_S"
DEFAULT_DEADLINE_S = 900.0

_lock = threading.Lock()
_context: Any = None


def _fork_server() -> Any:
    """The multiprocessing context whose fork server has scikit-learn, skops and this module imported."""
    global _context
    with _lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["parity.registry.sandbox"])
            _context = context
        return _context


def _single_threaded() -> bool:
    """Whether forking this very process is safe: no other Python thread (which could hold a lock the child
    would wait on forever) and no JVM started inside it."""
    jpype = sys.modules.get("jpype")
    return threading.active_count() == 1 and not (jpype is not None and jpype.isJVMStarted())


def _loader_context() -> Any:
    """A plain fork where that is safe (a command line registering a model: instant, everything is imported
    already), else the fork server (a flow's threads, an in-process JVM: seconds to start once)."""
    return multiprocessing.get_context("fork") if _single_threaded() else _fork_server()


def _memory_limit_bytes() -> int:
    text = os.environ.get(MEMORY_ENV, "")
    megabytes = decimal_int(text)
    megabytes = DEFAULT_MEMORY_MB if megabytes is None else megabytes
    return megabytes << 20


def _mapped_bytes() -> int:
    """This process's current address-space size (VmSize)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) << 10
    return 0


def _answer(conn: Connection, status: str, message: str = "") -> None:
    conn.send_bytes(json.dumps({"status": status, "message": message}).encode())


def _try_model(
    conn: Connection,
    payload: bytes,
    trusted: list[str],
    rows: pd.DataFrame | None,
    where: str,
    budget: int,
    path: list[str],
    deadline: float,
) -> None:
    """In the child: build, check and exercise the model within ``budget`` bytes of address space beyond what
    it maps already, with the caller's import path (a trusted type of the user's own must import here too),
    then answer ``ok`` or why not."""
    sys.path[:] = path
    importlib.invalidate_caches()
    _die_with_parent()
    limit = _mapped_bytes() + budget
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    cpu = int(deadline) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    # one thread for BLAS and OpenMP: a forked child must not wait on the parent's OpenMP pool (libgomp is not
    # fork-safe), and trying a model needs no parallelism
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        _build_and_exercise(conn, payload, trusted, rows, where)


def _die_with_parent() -> None:
    """Ask the kernel to kill this child when its parent ends (a killed run must not leave it holding the
    staging lock or the run's pipes); best effort where prctl is not available."""
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)
    except (OSError, AttributeError):
        pass


def _build_and_exercise(
    conn: Connection, payload: bytes, trusted: list[str], rows: pd.DataFrame | None, where: str
) -> None:
    import skops.io as sio

    from .predictions import reference_predictions
    from .structure import check_structure

    try:
        estimator = sio.loads(payload, trusted=trusted)
        check_structure(estimator, where)
    except ParityError as err:
        return _answer(conn, "refused", str(err))
    except MemoryError:
        return _answer(conn, "memory")
    except BaseException as err:  # what skops or a constructor raised: the parent would hit it too
        return _answer(conn, "refused", f"{where}: could not be loaded ({type(err).__name__}: {err})")
    if rows is not None:
        names = getattr(estimator, "feature_names_in_", None)
        if names is not None and all(name in rows.columns for name in names):
            rows = rows[list(names)]
        try:
            reference_predictions(estimator, rows)
        except MemoryError:
            return _answer(conn, "memory")
        except Exception:  # bad rows, not a bad file: the caller reports it with its own words
            pass
    _answer(conn, "ok")


def _deadline() -> float:
    text = os.environ.get(DEADLINE_ENV, "")
    try:
        return float(text) if text else DEFAULT_DEADLINE_S
    except ValueError:
        return DEFAULT_DEADLINE_S


def try_in_child(payload: bytes, trusted: list[str], where: str, rows: pd.DataFrame | None = None) -> None:
    """Build the model from ``payload`` in a memory-limited child, check it, and predict on ``rows``.

    Parameters
    ----------
    payload : bytes
        The skops file's bytes, already checked for untrusted types.
    trusted : list of str
        The explicit trust list to build with (the types these bytes hold, each one trusted).
    where : str
        The user's file, for messages.
    rows : pandas.DataFrame, optional
        Reference rows to run every output method on: a malformed model often crashes only when it predicts.

    Raises
    ------
    UntrustedModelError
        The child crashed, ran out of memory, hung, or found the model malformed.
    """
    context = _loader_context()
    receive, send = context.Pipe(duplex=False)
    deadline = _deadline()
    child = context.Process(
        target=_try_model,
        args=(send, payload, trusted, rows, where, _memory_limit_bytes(), list(sys.path), deadline),
        name="parity-model-loader",
        daemon=True,
    )
    try:
        child.start()
    except OSError as err:
        receive.close()
        send.close()
        raise UntrustedModelError(
            f"{where}: could not start the child process that tries a model first ({err}); nothing was "
            "loaded. Free memory or processes and try again."
        ) from err
    send.close()
    answer: dict[str, str] | None = None
    timed_out = False
    try:
        if receive.poll(deadline):
            try:
                answer = json.loads(receive.recv_bytes(1 << 20))
            except (EOFError, OSError, ValueError):
                answer = None  # the child died before answering, or answered nonsense
            if not isinstance(answer, dict):
                answer = None
        else:
            timed_out = True
    finally:
        receive.close()
        child.join(5 if answer is not None else 0)
        if child.is_alive():
            child.kill()
            child.join()
    fix = "Save the model again from the fitted estimator with skops.io.dump, and register that file."
    if timed_out:
        raise UntrustedModelError(
            f"{where}: loading the model did not finish within {deadline:g} s: refused. {fix} "
            f"(A model that really needs longer: raise ${DEADLINE_ENV}.)"
        )
    if answer is None:
        code = child.exitcode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            raise UntrustedModelError(f"{where}: the model file crashed the loader ({name}): refused. {fix}")
        raise UntrustedModelError(
            f"{where}: the loader exited with status {code} without an answer: refused. {fix}"
        )
    status, message = answer.get("status"), str(answer.get("message", ""))
    if status == "ok":
        return
    if status == "memory":
        raise UntrustedModelError(
            f"{where}: loading the model needed more than {_memory_limit_bytes() >> 20} MiB: refused. {fix} "
            f"(A model that really is that large: raise ${MEMORY_ENV}.)"
        )
    raise UntrustedModelError(message or f"{where}: refused by the loader. {fix}")
