"""Helpers shared by the benchmarks: process-tree memory sampling, input tiling, tables, environment."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
PARITY = ROOT / ".venv" / "bin" / "parity"
GIB = 1024**3
MIB = 1024**2


# -- environment -----------------------------------------------------------------------------------------
def isolated_prefect_home(scratch: Path) -> None:
    """Point Prefect at a private home (its own SQLite) and apply Parity's settings, before importing it."""
    os.environ.setdefault("PREFECT_HOME", str(scratch / "prefect-home"))
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.setdefault("PARITY_CACHE_DIR", str(Path.home() / ".cache" / "parity"))
    from parity.core.prefect_env import configure

    configure()


HOST_ONLY_TARGETS = """# Written by Parity's benchmarks: this machine only, one onnxruntime thread (the naive baseline's work).
[[target]]
name = "{name}"
platform = "{platform}"
reach = "process"
required = true
threads = 1
"""


def targets_file(scratch: Path, choice: str | None) -> Path | None:
    """The targets table a benchmark runs with: "host" (this machine only), "default" (Parity's), or a file."""
    if choice == "default":
        return None
    if choice and choice != "host":
        return Path(choice).resolve()
    system, arch = platform.system().lower(), platform.machine()
    path = scratch / "targets-host-only.toml"
    path.write_text(HOST_ONLY_TARGETS.format(name=f"{system}-{arch}", platform=f"{system}/{arch}"))
    return path


def machine() -> dict:
    """What the figures were measured on."""
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024**2, 1),
        "python": platform.python_version(),
        "java": java.splitlines()[0] if java else None,
        "platform": platform.platform(),
    }


def scratch_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


# -- inputs ----------------------------------------------------------------------------------------------
def tile_rows(X, rows: int, seed: int = 0, noise: float = 0.05):
    """Resample ``X`` to ``rows`` rows; add Gaussian noise (``noise`` x column std) to float columns.

    Missing values stay missing and non-float columns (categories, integers) are resampled unchanged, so
    tree models see inputs between the reference rows rather than the same rows again.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    out = X.iloc[rng.integers(0, len(X), size=rows)].reset_index(drop=True)
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            std = float(X[column].std()) or 1.0
            jitter = rng.normal(0.0, noise * std, size=rows)
            out[column] = out[column] + np.where(out[column].isna(), 0.0, jitter)
    return out


# -- memory of a process tree ----------------------------------------------------------------------------
def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def _tree(root: int) -> list[tuple[int, int | None]]:
    """``(pid, parent pid)`` of ``root`` and all its descendants."""
    children, todo, found = _children_map(), [(root, None)], []
    while todo:
        pid, parent = todo.pop()
        found.append((pid, parent))
        todo.extend((child, pid) for child in children.get(pid, []))
    return found


def _cmdline(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return None


def _rss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return None


def _pss(pid: int) -> int | None:
    """Proportional set size: shared pages divided among the processes sharing them (costly to read)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _private(pid: int) -> int | None:
    """Pages only this process maps (USS): what a forked child adds beyond the pages it shares with its parent."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return sum(
                int(line.split()[1]) * 1024
                for line in f
                if line.startswith(("Private_Clean:", "Private_Dirty:"))
            )
    except (OSError, ValueError, IndexError):
        return None


def _kind(pid: int, root: int) -> str:
    """A readable name for a process of the tree."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    text = " ".join(argv)
    if pid == root:
        return "root (python; JPype JVM inside)" if "java" not in argv[0] else "root"
    if "qemu" in text:
        return "emulator: qemu-aarch64"
    if "ParityConverterServer" in text:
        return "jvm: warm PMML converter"
    if "com.sklearn2pmml.Main" in text:
        return "jvm: sklearn2pmml() converter"
    if "pmml4s" in text or "pypmml" in text or "py4j" in text:
        return "jvm: pypmml gateway"
    if argv[0].endswith("java"):
        return "jvm: other"
    if "uvicorn" in text or "prefect" in text:
        return "python: Prefect temporary server"
    return f"other: {Path(argv[0]).name}"


@dataclass
class TreeSampler:
    """Sample the summed RSS of a process and all its descendants every ``interval`` seconds (a thread).

    RSS summed over processes counts shared pages (libraries, libjvm) once per process, so it is an upper
    bound (a child forked but not yet exec'd, with its parent's command line, is left out: its pages are
    the parent's); PSS (shared pages split between sharers) is read every ``pss_every`` samples, as reading it costs
    milliseconds per process. With ``forks_private``, such a child counts its private pages instead (a forked
    child that works without exec'ing, e.g. a sandbox that tries a model, allocates memory of its own).
    """

    root: int
    interval: float = 0.1
    pss_every: int = 10
    forks_private: bool = False
    peak_total: int = 0
    peak_pss: int = 0
    peak_parts: dict[str, int] = field(default_factory=dict)
    peak_by_kind: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _kinds: dict[int, tuple[bytes | None, str]] = field(default_factory=dict)

    def __enter__(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        parts: dict[str, int] = {}
        tree = _tree(self.root)
        if self.samples % self.pss_every == 0:
            self.peak_pss = max(self.peak_pss, sum(_pss(pid) or 0 for pid, _ in tree))
        for pid, parent in tree:
            command = _cmdline(pid)
            forked = parent is not None and command == _cmdline(parent)
            if forked and not self.forks_private:
                continue  # forked, not yet exec'd: its pages are the parent's, shared copy-on-write
            rss = _private(pid) if forked else _rss(pid)
            if rss is None:
                continue
            if self._kinds.get(pid, (None,))[0] != command:
                self._kinds[pid] = (command, _kind(pid, self.root))
            kind = self._kinds[pid][1]
            parts[kind] = parts.get(kind, 0) + rss
            self.peak_by_kind[kind] = max(self.peak_by_kind.get(kind, 0), parts[kind])
        total = sum(parts.values())
        self.samples += 1
        if total > self.peak_total:
            self.peak_total, self.peak_parts = total, parts

    def summary(self) -> dict:
        return {
            "peak_rss_mib": round(self.peak_total / MIB, 1),
            "peak_pss_mib": round(self.peak_pss / MIB, 1),
            "at_peak_mib": {k: round(v / MIB, 1) for k, v in sorted(self.peak_parts.items())},
            "peak_by_process_kind_mib": {k: round(v / MIB, 1) for k, v in sorted(self.peak_by_kind.items())},
            "samples": self.samples,
        }


def run_measured(
    command: Sequence[str],
    log: Path,
    env: dict | None = None,
    timeout: float = 900,
    forks_private: bool = False,
) -> dict:
    """Run a command to completion; its wall seconds, exit code and the peak RSS of its process tree
    (``forks_private``: see :class:`TreeSampler`)."""
    start = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        with TreeSampler(process.pid, forks_private=forks_private) as sampler:
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "exit_code": code, "log": str(log), **sampler.summary()}


# -- output ----------------------------------------------------------------------------------------------
def markdown_table(rows: list[dict], columns: Sequence[str]) -> str:
    def cell(value: object) -> str:
        if value is None:
            return "—"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str | None, data: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")
        print(f"\nwrote {path}", file=sys.stderr)


def uptime() -> str:
    """The machine's load as ``uptime`` prints it (every figure is printed next to it)."""
    done = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
    if done.returncode == 0 and done.stdout.strip():
        return done.stdout.strip()
    one, five, fifteen = os.getloadavg()
    return f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f}"


@contextlib.contextmanager
def scratch_folder(prefix: str, keep: bool) -> Iterator[Path]:
    """A temporary folder for one benchmark run, removed afterwards unless ``keep`` (then its path is said)."""
    scratch = scratch_dir(prefix)
    try:
        yield scratch
    finally:
        if keep:
            print(f"kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
