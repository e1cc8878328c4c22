"""``parity serve``: serve the deployments' schedules and triggers from this process (no work pools)."""

from __future__ import annotations

from typing import Annotated

import typer

from parity.core.defaults import DEFAULT_ARCHIVE, DEFAULT_REGISTRY

from .exits import EXIT_OK
from .options import ArchiveOption, RegistryOption


def serve(
    registry: RegistryOption = DEFAULT_REGISTRY,
    archive: ArchiveOption = DEFAULT_ARCHIVE,
    limit: Annotated[
        int | None,
        typer.Option("--limit", metavar="LIMIT", help="most flow runs at once (default: no limit)"),
    ] = None,
) -> int:
    """Serve until interrupted.

    Returns
    -------
    int
        ``EXIT_OK`` once serving stops.
    """
    from parity.core.prefect_env import configure

    configure()  # defaults for Prefect itself, set before it is first imported (it freezes them then)
    from parity.deployments.deploy import serve as serve_flows

    serve_flows(registry, archive, limit=limit)
    return EXIT_OK
