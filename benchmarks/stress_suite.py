"""The test suite (or part of it) on a machine kept busy by stress-ng: do the tests hold under load?

Starts ``stress-ng --cpu N`` (and ``--vm``/``--io`` workers if asked), runs pytest alongside, samples the
1-minute load average every few seconds, stops the stressors, and reports pass / fail / error / skip counts,
the slowest tests and the load seen. A test that fails here but passes on a quiet machine depends on a
wall-clock window: make it wait on a condition with a generous, documented deadline (tests/waiting.py).

Run: ``.venv/bin/python benchmarks/stress_suite.py [--cpu 8] [--vm 0] [--io 0] [--out F.json] [-- PYTEST ARGS]``
(default pytest arguments: the whole suite, ``tests``; e.g. ``-- tests/deployments tests/flows -m slow``).
Exits with pytest's status. stress-ng is installed with apt-get when missing (as root), like Java in the
Makefile.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from _common import PYTHON, ROOT, machine, markdown_table, write_json

#: Seconds between two samples of /proc/loadavg.
SAMPLE_EVERY_S = 5.0
#: How many of the slowest tests the report lists.
SLOWEST = 10
#: stress-ng's own time limit: far above any run of the suite, so stressors orphaned by a killed script end
#: by themselves (this script stops them as soon as pytest exits).
STRESS_MAX_S = 4 * 3600


def ensure_stress_ng() -> str:
    """The path of stress-ng, installing Debian's package first when it is missing and we are root."""
    found = shutil.which("stress-ng")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("stress-ng not found: installing it with apt-get", file=sys.stderr)
        install = (
            "apt-get install -y -qq stress-ng || { apt-get update -qq && apt-get install -y -qq stress-ng; }"
        )
        subprocess.run(
            ["sh", "-c", install], check=False, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        )
        found = shutil.which("stress-ng")
    if not found:
        sys.exit(
            "stress_suite: stress-ng is not installed. Install it (Debian/Ubuntu: `apt-get install -y stress-ng`)."
        )
    return found


class LoadSampler:
    """Samples the 1-minute load average in a thread until stopped."""

    def __init__(self, every: float = SAMPLE_EVERY_S) -> None:
        self.every, self.samples = every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.samples.append(float(Path("/proc/loadavg").read_text().split()[0]))
            if self._stop.wait(self.every):
                return

    def figures(self) -> dict:
        values = sorted(self.samples) or [0.0]
        return {
            "samples": len(self.samples),
            "min": values[0],
            "median": values[len(values) // 2],
            "mean": round(sum(values) / len(values), 2),
            "max": values[-1],
        }


def start_stress(stress_ng: str, cpu: int, vm: int, io: int) -> subprocess.Popen:
    """stress-ng in its own process group, running until stopped."""
    command = [stress_ng, "--cpu", str(cpu), "--timeout", f"{STRESS_MAX_S}s", "--quiet"]
    command += ["--vm", str(vm), "--vm-bytes", "256M"] if vm else []
    command += ["--io", str(io)] if io else []
    return subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop_stress(process: subprocess.Popen) -> None:
    """Stop the stressors' whole group: SIGTERM, then SIGKILL if they linger."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def read_junit(path: Path) -> dict:
    """Counts, failures and the slowest tests from pytest's JUnit XML."""
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
        name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        cases.append({"test": name, "outcome": outcome, "seconds": float(case.get("time") or 0)})
    counts = {
        kind: sum(c["outcome"] == kind for c in cases) for kind in ("passed", "failed", "error", "skipped")
    }
    slowest = sorted(cases, key=lambda c: c["seconds"], reverse=True)[:SLOWEST]
    return {
        "counts": counts,
        "not_passed": [c for c in cases if c["outcome"] in ("failed", "error")],
        "slowest": slowest,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cpu", type=int, default=8, help="stress-ng CPU workers (default 8: load ~10 on 2 cores)"
    )
    parser.add_argument(
        "--vm", type=int, default=0, help="stress-ng memory workers, 256 MiB each (default 0)"
    )
    parser.add_argument("--io", type=int, default=0, help="stress-ng I/O (sync) workers (default 0)")
    parser.add_argument("--out", help="write every figure as JSON here")
    parser.add_argument("pytest_args", nargs="*", help="after --: what pytest runs (default: tests)")
    args = parser.parse_args(argv)

    stress_ng = ensure_stress_ng()
    junit = Path(tempfile.mkdtemp(prefix="parity-stress-")) / "junit.xml"
    command = [
        str(PYTHON),
        "-m",
        "pytest",
        *(args.pytest_args or ["tests"]),
        f"--junitxml={junit}",
        "-p",
        "no:cacheprovider",
    ]
    print(
        f"stress-ng --cpu {args.cpu} --vm {args.vm} --io {args.io}; then: {' '.join(command)}",
        file=sys.stderr,
    )
    started = time.monotonic()
    with LoadSampler() as load:
        stress = start_stress(stress_ng, args.cpu, args.vm, args.io)
        try:
            code = subprocess.run(command, cwd=ROOT, check=False).returncode
        finally:
            stop_stress(stress)
    seconds = round(time.monotonic() - started, 1)
    results = read_junit(junit) if junit.is_file() else {"counts": {}, "not_passed": [], "slowest": []}
    shutil.rmtree(junit.parent, ignore_errors=True)
    figures = {
        "machine": machine(),
        "stress": {"cpu": args.cpu, "vm": args.vm, "io": args.io},
        "pytest": command[3:],
        "exit_code": code,
        "seconds": seconds,
        "load_1min": load.figures(),
        **results,
    }
    print(f"\n## Suite under load ({seconds:.0f} s, pytest exit {code})\n")
    print(markdown_table([figures["counts"]], ["passed", "failed", "error", "skipped"]))
    print("\n1-minute load average: " + ", ".join(f"{k} {v}" for k, v in figures["load_1min"].items()))
    if results["not_passed"]:
        print("\nnot passed:\n" + "\n".join(f"- {c['test']} ({c['outcome']})" for c in results["not_passed"]))
    print("\nslowest:\n" + markdown_table(results["slowest"], ["test", "outcome", "seconds"]))
    write_json(args.out, figures)
    return code


if __name__ == "__main__":
    sys.exit(main())
