"""How Parity reaches a target: one entry per reach in :data:`REACHES`, each carrying its own behaviour.

``process`` runs the format's in-process runtimes here; ``emulator`` runs the format's runner under qemu
user-mode emulation on this machine; ``work-pool`` ships a job to a Prefect work pool of machines of the
target's platform. Adding a reach is one entry here.
"""

from __future__ import annotations

import platform
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from parity.core.defaults import host_platform
from parity.core.records import Where
from parity.core.tables import table_of

from .aarch64 import aarch64_status, setup_aarch64
from .pool import pool_unavailable, run_on_pool
from .runners import RemoteResult, RemoteRunner
from .target import Target

#: How each runner spells a machine, mapped to the platform's machine name.
MACHINE_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}
#: Reference rows evaluated on a target that is not this process, unless the table says otherwise.
REMOTE_SAMPLE_ROWS = 200
#: Prefect global concurrency limit every emulated run takes a slot of, across all workers of a server
#: (``parity deploy`` creates it); without it, or without a Prefect API, emulated runs are not limited.
EMULATOR_LIMIT = "parity-emulator"
#: Seconds an emulated run may wait for a slot before it fails.
EMULATOR_WAIT_S = 1800


@contextmanager
def emulator_slot() -> Iterator[None]:
    """Hold one slot of :data:`EMULATOR_LIMIT` when a Prefect API is configured; nothing otherwise."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        yield
        return
    from prefect.concurrency.sync import concurrency

    with concurrency(EMULATOR_LIMIT, occupy=1, timeout_seconds=EMULATOR_WAIT_S, strict=False):
        yield


def describe_process() -> Where:
    """Where this process runs, in the runners' terms."""
    from ..runner import read_cpuinfo

    return Where(machine=platform.machine(), platform=platform.platform(), cpuinfo=read_cpuinfo())


def ran_on(where: Where) -> str:
    """The platform a runner's description names, e.g. ``linux/aarch64``."""
    machine = str(where.machine or "unknown")
    return f"linux/{MACHINE_ALIASES.get(machine, machine)}"


class Reach:
    """What every reach offers. The defaults are those of a reach that runs the format's runner away from
    this process; the process reach overrides them.

    Attributes
    ----------
    name : str
        The ``reach`` value of a target in ``targets.toml``.
    in_process : bool
        True when the target's outputs come from this process's runtimes rather than a runner.
    default_sample_rows : int or None
        Reference rows evaluated there unless the target says otherwise (None: all).
    """

    name: str
    in_process = False
    default_sample_rows: int | None = REMOTE_SAMPLE_ROWS

    def problem(self, target: Target) -> str | None:
        """What is wrong with ``target``'s entry for this reach (checked when the table is read)."""
        return None

    def unavailable(self, target: Target) -> str | None:
        """Why ``target`` cannot run here now, with the command that fixes it; None when it can."""
        return None

    def run(
        self, target: Target, fmt: str, runner: RemoteRunner, artifact: Path, inputs: Any
    ) -> RemoteResult:
        """Run ``runner`` on ``artifact`` with ``inputs`` on ``target``; its outputs and where it ran."""
        raise NotImplementedError(f"the {self.name} reach does not run runners")

    def rows_limit(self, target: Target) -> int | None:
        """How many reference rows ``target`` evaluates (None: all)."""
        return target.sample_rows if target.sample_rows is not None else self.default_sample_rows


class ProcessReach(Reach):
    """This Python process: the format's in-process runtimes, tuned to the target's settings."""

    name = "process"
    in_process = True
    default_sample_rows = None

    def problem(self, target: Target) -> str | None:
        if target.platform != host_platform():
            return f"a process target runs here, on {host_platform()}, not on {target.platform}"
        return None


class EmulatorReach(Reach):
    """qemu user-mode emulation on this machine (``parity targets setup aarch64``)."""

    name = "emulator"
    #: Platforms an emulator exists for, and the name its setup uses.
    PLATFORMS: ClassVar[dict[str, str]] = {"linux/aarch64": "aarch64"}

    def problem(self, target: Target) -> str | None:
        if target.platform not in self.PLATFORMS:
            return f"no emulator for {target.platform}; emulated platforms: {', '.join(self.PLATFORMS)}"
        return None

    def unavailable(self, target: Target) -> str | None:
        return aarch64_status()

    def run(
        self, target: Target, fmt: str, runner: RemoteRunner, artifact: Path, inputs: Any
    ) -> RemoteResult:
        env = setup_aarch64(log=lambda _line: None)  # returns at once once unavailable() said it is ready
        with tempfile.TemporaryDirectory(prefix="parity-emulated-") as scratch:
            given, made = Path(scratch) / runner.inputs_file, Path(scratch) / runner.outputs_file
            runner.write_inputs(given, inputs)
            with emulator_slot():
                runner.run_files(env, artifact, given, made, target.runner_settings())
            return runner.read_outputs(made)


class WorkPoolReach(Reach):
    """A Prefect work pool of machines of the target's platform (``deployment`` runs the runner there)."""

    name = "work-pool"

    def problem(self, target: Target) -> str | None:
        if not target.deployment:
            return "a work-pool target needs deployment = 'flow-name/deployment-name'"
        return None

    def unavailable(self, target: Target) -> str | None:
        return pool_unavailable(target)

    def run(
        self, target: Target, fmt: str, runner: RemoteRunner, artifact: Path, inputs: Any
    ) -> RemoteResult:
        return run_on_pool(target, fmt, runner, artifact, inputs)


#: Every reach, by the name targets use.
REACHES: dict[str, Reach] = table_of("reach", [ProcessReach(), EmulatorReach(), WorkPoolReach()])


def unavailable(target: Target) -> str | None:
    """Why ``target`` cannot run here now (with the fix), or None; see :meth:`Reach.unavailable`."""
    return REACHES[target.reach].unavailable(target)
