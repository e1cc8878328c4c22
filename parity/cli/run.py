"""``parity run`` and ``parity demo``: convert, validate and archive through :mod:`parity.cli.pipeline`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from parity.core.defaults import DEFAULT_ARCHIVE, DEFAULT_REGISTRY

from .doctor import preflight
from .options import ArchiveOption, RegistryOption, TargetsOption, VerboseOption
from .pipeline import check_targets, run_pipeline


def run(
    registry: RegistryOption = DEFAULT_REGISTRY,
    archive: ArchiveOption = DEFAULT_ARCHIVE,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", metavar="NAME[:VERSION]", help="only these (repeatable)"),
    ] = None,
    targets: TargetsOption = None,
    verbose: VerboseOption = False,
) -> int:
    """Validate every registered version not archived yet (or the ones named) on the targets table.

    Returns
    -------
    int
        ``EXIT_OK`` when every model passed, ``EXIT_FAILED`` when one did not.

    Raises
    ------
    InvalidInputError
        A bad ``--model`` or targets file.
    EnvironmentProblem
        A check of :func:`parity.cli.doctor.preflight` failed: nothing was validated.
    """
    from parity.registry import ModelRef

    for text in model or []:
        ModelRef.parse(text)  # a bad NAME[:VERSION] is bad usage, said before anything is checked
    table = check_targets(targets)
    preflight(archive, table)
    return run_pipeline(registry, archive, model, verbose, targets=table)


def demo(
    registry: RegistryOption = DEFAULT_REGISTRY,
    archive: ArchiveOption = DEFAULT_ARCHIVE,
    verbose: VerboseOption = False,
) -> int:
    """Fit and register the demo models (those not registered yet), then run the pipeline on them.

    Returns
    -------
    int
        As :func:`run`.
    """
    from .demo import build_demo_registry  # scikit-learn and the data sets: only when asked for

    check_targets(None)
    preflight(archive)
    build_demo_registry(Path(registry))
    return run_pipeline(registry, archive, None, verbose)
