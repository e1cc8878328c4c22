"""What ``parity run`` and ``parity demo`` share: check the toolchain, run the sweep flow on Prefect (a
temporary local server when none is configured), show progress, then the verdict table (a summary per model
first, then the detail: :func:`parity.cli.table.print_verdicts`)."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from parity.core.defaults import PROGRESS_LOGGER
from parity.core.reaper import start_reaper
from parity.core.records import Outcome

from .exits import EXIT_FAILED, EXIT_OK
from .prefect_console import prefect_console
from .table import print_verdicts

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State


def check_targets(path: str | None) -> str | None:
    """Read the targets table now, so that a bad file is a usage error before any work (whether its
    targets are ready is :func:`parity.cli.doctor.preflight`'s check).

    Parameters
    ----------
    path : str, optional
        A targets file; default ``$PARITY_TARGETS``, else the built-in table.

    Returns
    -------
    str or None
        ``path`` made absolute, to hand to the flows; None when none was given.

    Raises
    ------
    InvalidInputError
        The file is unreadable or not a valid targets table.
    """
    from parity.validators.targets.table import load_targets

    resolved = str(Path(path).resolve()) if path else None
    load_targets(resolved)
    return resolved


def warm_up_jvms() -> None:
    """Start the JVMs (the PMML converter's, and each runtime's that has one) in the background while
    Prefect's temporary server boots: each takes seconds, and they would otherwise start one after another
    inside the first model's flow."""

    def start() -> None:
        from parity.converters import shared_pmml_converter
        from parity.validators import RUNTIMES
        from parity.validators.runtimes import exclusive

        try:
            shared_pmml_converter().start()
            for runtime in RUNTIMES.values():
                with exclusive(runtime):  # a flow may already be using it
                    runtime.start()
        except Exception:  # the first real use reports the problem properly
            return

    threading.Thread(target=start, name="parity-jvm-warm-up", daemon=True).start()


def local_run_settings() -> contextlib.AbstractContextManager[Any]:
    """Settings for a run on Prefect's temporary server: no flow-run heartbeats.

    Heartbeats let a long-lived server notice crashed runs; a temporary server dies with this process, and
    each flow run would otherwise wait up to a second for its heartbeat thread to stop.

    Returns
    -------
    context manager
        Prefect's ``temporary_settings``, or a no-op when a Prefect API is configured.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    if PREFECT_API_URL.value():
        return contextlib.nullcontext()
    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


class ProgressLines(logging.Handler):
    """Each record of the progress logger (one per finished model) as a line on stderr, above a bar
    counting the models when stderr is a terminal."""

    def __init__(self, bar: Progress, task: TaskID) -> None:
        super().__init__(logging.INFO)
        self.bar, self.task = bar, task

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.bar.console.print(Text("  " + self.format(record)), soft_wrap=True)
            self.bar.advance(self.task)
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def progress_on_stderr(total: int) -> Iterator[None]:
    """Within the block, the progress logger's lines go to stderr (and not to Prefect's console).

    Parameters
    ----------
    total : int
        How many models the sweep validates: the bar's length.
    """
    console = Console(stderr=True, highlight=False)
    columns = (TextColumn("validating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    logger = logging.getLogger(PROGRESS_LOGGER)
    level, propagate = logger.level, logger.propagate
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        handler = ProgressLines(bar, bar.add_task("models", total=total))
        logger.setLevel(logging.INFO)
        logger.propagate = False
        logger.addHandler(handler)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


def run_pipeline(
    registry: str, archive: str, models: list[str] | None, verbose: bool = False, targets: str | None = None
) -> int:
    """Validate the registry with Prefect and print the verdict table (a summary per model, then the
    detail) and the sweep's own line.

    Parameters
    ----------
    registry, archive : str
        The registry and archive folders.
    models : list of str, optional
        ``NAME[:VERSION]`` to validate; default every version not archived yet.
    verbose : bool
        Show Prefect's own log lines on the terminal.
    targets : str, optional
        A targets file for the flows; default ``$PARITY_TARGETS``, else the built-in table.

    Returns
    -------
    int
        ``EXIT_OK`` when every model passed (or there was nothing to do), else ``EXIT_FAILED``.

    Notes
    -----
    Call :func:`parity.cli.doctor.preflight` first: it checks the toolchain, the Prefect API, the targets and
    the archive, and applies Prefect's defaults before Prefect is first imported.
    """
    start_reaper()  # before any child: JVMs, qemu and Prefect's temporary server end with this process
    from parity.flows.validate import result_data, selected_versions, validate_registry

    todo = selected_versions(str(registry), str(archive), models or None)
    if todo:
        warm_up_jvms()
    print(f"validating {registry} -> {archive}", file=sys.stderr)
    with prefect_console(verbose), progress_on_stderr(len(todo)), local_run_settings():
        # a sync flow called with return_state gives its State; Prefect's overloads cannot tell (R is Any)
        state = cast(
            "State[Any]",
            validate_registry(str(registry), str(archive), models or None, targets, return_state=True),
        )
    reports = result_data(state)
    if isinstance(reports, BaseException):
        raise reports
    print_verdicts(reports)
    print()
    print(state.message or "")
    if not reports:
        return EXIT_OK
    return EXIT_OK if all(r.outcome is Outcome.PASSED for r in reports) else EXIT_FAILED
