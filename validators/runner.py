"""One runner everywhere: run a model on arrays read from a file, write the outputs and where it ran.

This script runs on every target, natively or inside an emulated sysroot that holds only the standard
library, numpy and onnxruntime. It must therefore import nothing else: not pandas, not scikit-learn, not
Prefect, nothing from this repository.

Usage::

    python runner.py onnx --model M.onnx --inputs in.npz --outputs out.npz [--threads N]
                          [--graph-opt {disable,basic,extended,all}]
    python runner.py serve [--workers N] [--sessions N]

``in.npz`` holds one array per ONNX input name (strings as numpy unicode arrays). ``out.npz`` receives
one array per ONNX output name, plus ``__where__``: a 0-d unicode array holding a JSON object that says
where the run really happened (machine, CPU model and features, library versions, thread settings,
graph optimisation level, execution providers). Numbers never travel as text.

``serve`` keeps one process warm for many jobs, speaking the line protocol of ``parity/core/warm.py``
(written out here in plain stdlib, since this script cannot import Parity): it prints ``READY``, then reads
``ID<TAB>onnx<TAB>MODEL<TAB>INPUTS<TAB>OUTPUTS<TAB>THREADS<TAB>GRAPH_OPT`` lines and answers each with
``ID<TAB>ok`` once ``OUTPUTS`` is written, or ``ID<TAB>error<TAB>MESSAGE``; it exits when its input ends.
Jobs run on a few threads (onnxruntime releases the GIL); sessions are kept in a small LRU keyed by the
model file's identity and the session settings, and the description of the machine is computed once.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import tempfile
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

WHERE_KEY = "__where__"
SCHEMA = 1
READY = "READY"  # what ``serve`` prints once it takes jobs (parity/core/warm.py's READY)
GRAPH_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
# /proc/cpuinfo keys worth keeping: x86 names its model and flags, arm64 its implementer/part and features.
CPUINFO_KEYS = (
    "model name", "vendor_id", "flags",
    "CPU implementer", "CPU architecture", "CPU variant", "CPU part", "CPU revision", "Features",
)  # fmt: skip


class RunnerError(ValueError):
    """The model, the inputs or the arguments do not fit together."""


def read_cpuinfo(path: str = "/proc/cpuinfo") -> dict[str, str | int]:
    """Return the first processor's model and features from ``path``, and how many processors it lists."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as err:
        return {"error": f"{path}: {err}"}
    info: dict[str, str | int] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key in CPUINFO_KEYS and key not in info:
            info[key] = value.strip()
    info["processors"] = sum(1 for line in text.splitlines() if line.split(":")[0].strip() == "processor")
    return info


def make_session(model: Path, threads: int, graph_opt: str) -> ort.InferenceSession:
    """Open ``model`` on the CPU with pinned thread counts and optimisation level."""
    if graph_opt not in GRAPH_OPT_LEVELS:
        raise RunnerError(f"graph_opt={graph_opt!r}: expected one of {', '.join(GRAPH_OPT_LEVELS)}.")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = GRAPH_OPT_LEVELS[graph_opt]
    return ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])


def feed_from(session: ort.InferenceSession, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Match ``arrays`` to the session's inputs; unicode arrays become object arrays, as ORT wants."""
    expected = [i.name for i in session.get_inputs()]
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        raise RunnerError(
            f"inputs: expected {expected}, got {sorted(arrays)} (missing {missing}, extra {extra})."
        )
    return {name: arrays[name].astype(object) if arrays[name].dtype.kind == "U" else arrays[name]
            for name in expected}  # fmt: skip


def to_storable(name: str, value: object) -> np.ndarray:
    """Turn one ORT output into an array that npz stores without pickling."""
    if not isinstance(value, np.ndarray):
        raise RunnerError(f"output {name!r}: got {type(value).__name__}, expected a tensor. "
                          "Convert classifiers with options={'zipmap': False}.")  # fmt: skip
    if value.dtype == object:
        return value.astype(str)
    return value


@functools.cache
def machine_info() -> dict[str, object]:
    """Describe the machine and libraries of this process (the same for every job it runs)."""
    return {
        "schema": SCHEMA,
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpuinfo": read_cpuinfo(),
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
    }


def where_info(session: ort.InferenceSession, threads: int, graph_opt: str) -> dict[str, object]:
    """Describe the machine, libraries and session settings this run really used."""
    return {
        **json.loads(json.dumps(machine_info())),  # a copy: callers add to it
        "intra_op_num_threads": threads,
        "inter_op_num_threads": threads,
        "execution_mode": "sequential",
        "graph_optimization_level": graph_opt,
        "providers": session.get_providers(),
    }


def write_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` through a temporary file, so readers never see half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SessionCache:
    """The last few sessions opened, by model file identity (path, inode, mtime, size) and settings."""

    def __init__(self, size: int = 8, make: Callable[[Path, int, str], ort.InferenceSession] = make_session):
        self.size, self.make = size, make
        self._sessions: OrderedDict[tuple, ort.InferenceSession] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model: Path, threads: int, graph_opt: str) -> ort.InferenceSession:
        """A session for ``model`` with these settings: the cached one while the file is unchanged."""
        try:
            stat = model.stat()
        except OSError as err:
            raise RunnerError(f"{model}: cannot read the model ({err.strerror}).") from err
        key = (str(model), stat.st_ino, stat.st_mtime_ns, stat.st_size, threads, graph_opt)
        with self._lock:  # one session opened at a time: opening is quick next to an emulated start
            session = self._sessions.pop(key, None) or self.make(model, threads, graph_opt)
            self._sessions[key] = session
            while len(self._sessions) > self.size:
                self._sessions.popitem(last=False)
        return session


def run_onnx(
    model: Path,
    inputs: Path,
    outputs: Path,
    threads: int = 1,
    graph_opt: str = "all",
    sessions: SessionCache | None = None,
) -> None:
    """Run ``model`` on the arrays in ``inputs`` and write its outputs and ``__where__`` to ``outputs``."""
    started = time.perf_counter()
    if sessions is None:
        session = make_session(model, threads, graph_opt)
    else:
        session = sessions.get(model, threads, graph_opt)
    with np.load(inputs, allow_pickle=False) as data:
        feed = feed_from(session, {name: data[name] for name in data.files})
    loaded = time.perf_counter()
    names = [o.name for o in session.get_outputs()]
    if WHERE_KEY in names:
        raise RunnerError(f"{model}: an output is named {WHERE_KEY!r}, which the runner reserves.")
    values = session.run(names, feed)
    ran = time.perf_counter()
    result = {name: to_storable(name, value) for name, value in zip(names, values, strict=True)}
    where = where_info(session, threads, graph_opt)
    where["seconds"] = {"load": loaded - started, "run": ran - loaded}
    result[WHERE_KEY] = np.array(json.dumps(where, sort_keys=True))
    write_npz_atomic(outputs, result)


class Server:
    """The ``serve`` loop: jobs from ``stdin``, replies to ``stdout`` (see the module docstring)."""

    def __init__(self, stdout, workers: int = 2, sessions: int = 8) -> None:
        self.stdout, self.workers = stdout, workers
        self.sessions = SessionCache(sessions)
        self._write = threading.Lock()

    def reply(self, job: str, *fields: str) -> None:
        line = "\t".join((job, *(" ".join(field.split()) for field in fields)))  # no tabs or line breaks
        with self._write:
            self.stdout.write(line + "\n")
            self.stdout.flush()

    def handle(self, line: str) -> None:
        job, _, rest = line.rstrip("\n").partition("\t")
        try:
            self.reply(job, "ok", *self.run(rest.split("\t")))
        except RunnerError as err:
            self.reply(job, "error", f"runner: {err}")
        except Exception as err:  # a model onnxruntime refuses, a file that is not npz: this job only
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
            self.reply(job, "error", f"{type(err).__name__}: {err}")

    def run(self, fields: list[str]) -> list[str]:
        verb, args = fields[0], fields[1:]
        if verb != "onnx" or len(args) != 5:
            raise RunnerError(f"job {fields!r}: expected onnx MODEL INPUTS OUTPUTS THREADS GRAPH_OPT.")
        model, inputs, outputs, threads, graph_opt = args
        run_onnx(Path(model), Path(inputs), Path(outputs), int(threads), graph_opt, self.sessions)
        return []

    def serve(self, stdin) -> None:
        machine_info()  # once, before READY: every job's description reuses it
        self.reply(READY)
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="job") as pool:
            for line in stdin:
                if line.strip():
                    pool.submit(self.handle, line)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run a model on npz inputs; write npz outputs.")
    sub = parser.add_subparsers(dest="format", required=True)
    onnx = sub.add_parser("onnx", help="run an ONNX model with onnxruntime on the CPU")
    onnx.add_argument("--model", type=Path, required=True)
    onnx.add_argument("--inputs", type=Path, required=True)
    onnx.add_argument("--outputs", type=Path, required=True)
    onnx.add_argument("--threads", type=int, default=1)
    onnx.add_argument("--graph-opt", choices=list(GRAPH_OPT_LEVELS), default="all")
    serve = sub.add_parser("serve", help="answer jobs on stdin until it closes (parity/core/warm.py)")
    serve.add_argument("--workers", type=int, default=2, help="jobs run at once")
    serve.add_argument("--sessions", type=int, default=8, help="sessions kept open")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.format == "serve":
        Server(sys.stdout, workers=args.workers, sessions=args.sessions).serve(sys.stdin)
        return 0
    try:
        run_onnx(args.model, args.inputs, args.outputs, threads=args.threads, graph_opt=args.graph_opt)
    except RunnerError as err:
        print(f"runner: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
