"""The runtimes that evaluate a converted model file, as plain classes without Prefect.

Each runtime declares what it can do (:class:`Runtime`); nothing is probed with ``hasattr``. Runtimes are
listed in their format's spec (:data:`parity.validators.formats.FORMATS`), which is where
:data:`parity.validators.RUNTIMES` is gathered from.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from parity.core.records import Role

from ..targets.table import Target

Model = TypeVar("Model")


class Runtime(Protocol):
    """What every runtime offers.

    Attributes
    ----------
    name : str
        Unique across formats; shown in every report row.
    format : str
        The format whose artifacts it evaluates.
    sample_rows : int or None
        At most this many reference rows are evaluated (evenly spread); None for all. Slow runtimes set it.
    verifies : bool
        Whether :meth:`verify` replays the artifact's embedded verification rows.
    tuned_by : tuple of str
        Target settings that change its numerics (e.g. ``threads``); a process target whose settings differ
        from the primary one runs the runtimes tuned by them, obtained with :meth:`for_target`.
    role : Role
        ``deploy`` (its failures block the model) or ``witness`` (an independent engine: reported and
        explained, never blocking); a targets table's ``[roles]`` or a registration may change it.
    thread_safe : bool
        Whether two threads may call it at once. Callers use a runtime that is not under
        :func:`exclusive`, one call at a time per process.
    """

    name: str
    role: Role
    thread_safe: bool
    format: str
    sample_rows: int | None
    verifies: bool
    tuned_by: tuple[str, ...]

    def unavailable_reason(self) -> str | None:
        """Why this runtime cannot run here, with what to do; None when it can."""
        ...

    def evaluate(self, path: Path, inputs: Any) -> Any:
        """The runtime's raw outputs for ``inputs`` (fed as the format's spec prepares them)."""
        ...

    def verify(self, path: Path) -> tuple[bool, str]:
        """Replay the artifact's embedded verification rows: ``(passed, what happened)``."""
        ...

    def for_target(self, target: Target) -> Runtime:
        """This runtime with ``target``'s settings applied (itself when none of :attr:`tuned_by` apply)."""
        ...

    def start(self) -> None:
        """Start what the runtime needs (a JVM) now rather than on first use; a no-op for most."""
        ...


class BaseRuntime:
    """Defaults for the optional capabilities of :class:`Runtime`: all rows, no verification, no tuning."""

    name: str
    format: str
    sample_rows: int | None = None
    verifies: bool = False
    tuned_by: tuple[str, ...] = ()
    role: Role = Role.DEPLOY
    thread_safe: bool = True

    def verify(self, path: Path) -> tuple[bool, str]:
        raise NotImplementedError(
            f"runtime {self.name!r} does not replay embedded verification rows (verifies is False)."
        )

    def for_target(self, target: Target) -> Runtime:
        return self  # type: ignore[return-value]

    def start(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"<runtime {self.name} ({self.format})>"


_EXCLUSIVE: dict[str, threading.RLock] = {}
_EXCLUSIVE_GUARD = threading.Lock()


def exclusive(runtime: Runtime) -> contextlib.AbstractContextManager[object]:
    """What to hold while calling ``runtime``: its process-wide lock when it is not thread-safe.

    Parameters
    ----------
    runtime : Runtime
        Any runtime; the lock is per runtime name, so its :meth:`Runtime.for_target` copies share it.

    Returns
    -------
    context manager
        A re-entrant lock for a runtime whose ``thread_safe`` is False, else a no-op.
    """
    if runtime.thread_safe:
        return contextlib.nullcontext()
    with _EXCLUSIVE_GUARD:
        return _EXCLUSIVE.setdefault(runtime.name, threading.RLock())


class ModelCache(Generic[Model]):
    """A thread-safe LRU of loaded models, keyed by path and file state so that an edited file reloads."""

    def __init__(self, size: int, load: Callable[[Path], Model]) -> None:
        self._size = size
        self._load = load
        self._items: OrderedDict[tuple[str, int, int], Model] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path) -> Model:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        # Parse outside the lock: a large PMML takes seconds, and other models need not wait for it.
        model = self._load(path)
        with self._lock:
            self._items[key] = model
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return model
