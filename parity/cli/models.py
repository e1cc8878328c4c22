"""``parity models``: list the registry, each version with what its latest validation found."""

from __future__ import annotations

from parity.core.defaults import DEFAULT_ARCHIVE, DEFAULT_REGISTRY

from .exits import EXIT_OK
from .options import ArchiveOption, RegistryOption
from .table import print_table

COLUMNS = ("name", "version", "estimator", "registered_at", "outcome", "archived", "attempts")


def models(registry: RegistryOption = DEFAULT_REGISTRY, archive: ArchiveOption = DEFAULT_ARCHIVE) -> int:
    """Print one row per registered version: the outcome of its newest validation (passed, failed,
    unsupported, error, or not validated), whether it is archived, and how many validations left files.

    Returns
    -------
    int
        ``EXIT_OK``, also for an empty registry (which is said in words).
    """
    from parity.archive import Archive, attempts
    from parity.registry import open_registry

    store, shelf = open_registry(registry), Archive(archive)
    rows = []
    for ref in store.refs():
        listed = store.listing(ref)
        tried = attempts(shelf, ref.name, ref.version)
        rows.append(
            {
                "name": ref.name,
                "version": ref.version,
                **listed,
                "outcome": tried[-1].outcome if tried else "not validated",
                "archived": "yes" if any(a.archived for a in tried) else "no",
                "attempts": len(tried),
            }
        )
    if not rows:
        print(f"no models registered in {registry}")
    print_table(rows, COLUMNS)
    return EXIT_OK
