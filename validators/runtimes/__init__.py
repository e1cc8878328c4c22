"""The runtimes that evaluate a converted model file, as plain classes without Prefect."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

Model = TypeVar("Model")


class Runtime(Protocol):
    """What every entry of :data:`validators.RUNTIMES` offers.

    ``evaluate`` takes ONNX feeds (a dict of arrays) or, for PMML, a DataFrame of rows, and returns the
    runtime's raw outputs (a dict of arrays, or a DataFrame).
    """

    name: str
    format: str

    def unavailable_reason(self) -> str | None: ...

    def evaluate(self, path: Path, inputs: Any) -> Any: ...


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
