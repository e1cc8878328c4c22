"""The two ONNX runtimes: onnxruntime, and onnx's pure-numpy ReferenceEvaluator (independent, slow)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from parity.core.records import Role

from ..targets.table import Target
from . import BaseRuntime, ModelCache, Runtime

if TYPE_CHECKING:
    from onnx.reference import ReferenceEvaluator
    from onnxruntime import InferenceSession


class OnnxruntimeRuntime(BaseRuntime):
    """onnxruntime on the CPU, with pinned threads and graph optimisation (both change numerics).

    Parameters
    ----------
    threads : int
        ``intra_op_num_threads``; 1 by default so results do not depend on the machine's core count.
    graph_optimization : {"disable", "basic", "extended", "all"}
    """

    name = "onnxruntime"
    format = "onnx"
    tuned_by: tuple[str, ...] = ("threads", "graph_optimization")

    def __init__(self, threads: int = 1, graph_optimization: str = "all") -> None:
        self.threads = threads
        self.graph_optimization = graph_optimization
        self._sessions: ModelCache[InferenceSession] = ModelCache(4, self._session)

    def unavailable_reason(self) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as err:
            return f"onnxruntime is not importable ({err}); run `make setup` to install the pinned set."
        return None

    def for_target(self, target: Target) -> Runtime:
        """The onnxruntime runtime with ``target``'s thread count and graph optimisation."""
        return _tuned(target.threads, target.graph_optimization)

    def settings(self) -> dict:
        import onnxruntime

        return {
            "onnxruntime": onnxruntime.__version__,
            "intra_op_num_threads": self.threads,
            "graph_optimization": self.graph_optimization,
            "providers": ["CPUExecutionProvider"],
        }

    def _session(self, path: Path) -> InferenceSession:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        levels = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        options.graph_optimization_level = levels[self.graph_optimization]
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def evaluate(self, path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on all rows; one array per ONNX output name."""
        session = self._sessions.get(path)
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(None, feeds), strict=True))


class OnnxReferenceRuntime(BaseRuntime):
    """onnx's ReferenceEvaluator: a second implementation of the same operators, in numpy.

    It evaluates tree ensembles row by row (hundreds of rows per second on a forest), so it runs on a
    sample of the reference rows; the report states the sample size.
    """

    name = "onnx-reference"
    format = "onnx"
    #: a second engine, not one models are served with: off by 0.117 on multiclass SVC probabilities
    #: where onnxruntime is within 4e-7 (FACTS.md)
    role = Role.WITNESS
    #: rows it evaluates at most per model
    sample_rows: int | None = 500

    def __init__(self) -> None:
        self._models: ModelCache[ReferenceEvaluator] = ModelCache(4, self._load)

    def unavailable_reason(self) -> str | None:
        try:
            from onnx.reference import ReferenceEvaluator  # noqa: F401
        except ImportError as err:
            return f"onnx.reference is not importable ({err}); run `make setup` to install the pinned set."
        return None

    def settings(self) -> dict:
        import onnx

        return {"onnx": onnx.__version__, "sample_rows": self.sample_rows}

    @staticmethod
    def _load(path: Path) -> ReferenceEvaluator:
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(str(path))

    def evaluate(self, path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model; one array per ONNX output name."""
        evaluator = self._models.get(path)
        return dict(zip(evaluator.output_names, evaluator.run(None, feeds), strict=True))


@functools.cache
def _tuned(threads: int, graph_optimization: str) -> OnnxruntimeRuntime:
    """One onnxruntime runtime per setting, so its session cache serves every model of a run."""
    return OnnxruntimeRuntime(threads, graph_optimization)
