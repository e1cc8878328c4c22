"""``parity models``: list the registry, each version with its archive state."""

from __future__ import annotations

from parity.core.defaults import DEFAULT_ARCHIVE, DEFAULT_REGISTRY

from .exits import EXIT_OK
from .options import ArchiveOption, RegistryOption
from .table import print_table

COLUMNS = ("name", "version", "estimator", "registered_at", "archived")


def models(registry: RegistryOption = DEFAULT_REGISTRY, archive: ArchiveOption = DEFAULT_ARCHIVE) -> int:
    """Print one row per registered version: archived, rejected (how often) or not yet.

    Returns
    -------
    int
        ``EXIT_OK``, also for an empty registry (which is said in words).
    """
    from parity.archive import Archive
    from parity.registry import FileRegistry

    store, shelf = FileRegistry(registry), Archive(archive)
    rows = []
    for ref in store.refs():
        record = store.record(ref)
        rejected = len(shelf.rejected(ref.name, ref.version))
        state = "archived" if shelf.is_archived(ref.name, ref.version) else ("rejected" if rejected else "no")
        rows.append(
            {
                "name": ref.name,
                "version": ref.version,
                "estimator": record.estimator_summary,
                "registered_at": record.registered_at,
                "archived": state + (f" ({rejected} rejected)" if rejected and state == "archived" else ""),
            }
        )
    if not rows:
        print(f"no models registered in {registry}")
    print_table(rows, COLUMNS)
    return EXIT_OK
