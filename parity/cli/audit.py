"""``parity audit``: re-check every archive bundle's checksums and replay it in today's runtimes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from parity.core.defaults import DEFAULT_ARCHIVE, DEFAULT_REGISTRY
from parity.core.records import AuditStatus

from .exits import EXIT_FAILED, EXIT_OK
from .options import ArchiveOption, RegistryOption, VerboseOption
from .prefect_console import prefect_console
from .table import print_table

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State


def audit(
    archive: ArchiveOption = DEFAULT_ARCHIVE,
    registry: RegistryOption = DEFAULT_REGISTRY,
    no_replay: Annotated[bool, typer.Option("--no-replay", help="check the checksums only")] = False,
    cv: Annotated[
        bool,
        typer.Option("--cv", help="also refit each model on its training snapshot and compare CV scores"),
    ] = False,
    verbose: VerboseOption = False,
) -> int:
    """Run the audit flow and print one row per bundle, then the counts.

    What a bundle's model may trust when it is replayed comes from ``registry``'s record of its registration,
    never from the bundle.

    Returns
    -------
    int
        ``EXIT_OK`` when every bundle is sound, ``EXIT_FAILED`` when one is corrupt, drifted or unreadable.
    """
    from parity.archive import Archive
    from parity.core.prefect_env import configure

    Archive(archive).store.require()  # an unreadable store is exit 2 before any flow starts
    configure()  # defaults for Prefect itself, set before it is first imported (it freezes them then)
    from parity.flows.audit import AUDIT_COLUMNS, audit_archive, audit_rows, audits_of

    with prefect_console(verbose):
        # a sync flow called with return_state gives its State; Prefect's overloads cannot tell (R is Any)
        state = cast(
            "State[Any]",
            audit_archive(
                str(archive), replay=not no_replay, registry=str(registry), cv=cv, return_state=True
            ),
        )
    audits = audits_of(state)
    print_table(audit_rows(audits), AUDIT_COLUMNS)
    print(state.message or "")
    return EXIT_OK if all(a.status is AuditStatus.OK for a in audits) else EXIT_FAILED
