"""``parity archive ...`` (``ls``, ``show``, ``migrate``) and ``parity export --bagit``: look into the
archive, turn legacy bundles into OCFL objects, hand a bundle on as a BagIt bag."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from parity.core.defaults import DEFAULT_ARCHIVE
from parity.core.errors import IntegrityError, InvalidInputError

from .exits import EXIT_FAILED, EXIT_OK
from .options import ArchiveOption
from .table import print_table

ARCHIVE_HELP = "look into the archive (ls, show) and migrate legacy bundles to OCFL objects"
LS_HELP = "one row per archived version: verdict, size, formats, last audit"
SHOW_HELP = "print a bundle's card (or, without one, a summary of its report)"
MIGRATE_HELP = "turn every legacy bundle into an OCFL object, checking every file's hash first"
EXPORT_HELP = "export an archived bundle as a BagIt bag (RFC 8493)"
MIGRATE_COLUMNS = ("name", "version", "files", "result")

RefArgument = Annotated[str, typer.Argument(metavar="NAME:VERSION", help="an archived model version")]


def ls(archive: ArchiveOption = DEFAULT_ARCHIVE) -> int:
    """Print one row per archived version (nothing but a line when the archive is empty).

    Returns
    -------
    int
        ``EXIT_OK``.
    """
    from parity.archive import Archive
    from parity.archive.listing import COLUMNS, entries

    shelf = Archive(archive)
    shelf.store.require()
    rows = [e.row() for e in entries(shelf)]
    print_table(rows, COLUMNS)
    if not rows:
        print(f"no bundles in {archive}")
    return EXIT_OK


def show(ref: RefArgument, archive: ArchiveOption = DEFAULT_ARCHIVE) -> int:
    """Print a bundle's ``card.md`` and its last audit, or a summary built from its report and metadata (and
    say which).

    Returns
    -------
    int
        ``EXIT_OK``; a bad or unknown ``NAME:VERSION`` raises ``InvalidInputError`` (exit 2).
    """
    from parity.archive import Archive
    from parity.archive.listing import CARD, card, last_audit, parse_ref

    name, version = parse_ref(ref)
    shelf = Archive(archive)
    shelf.store.require()
    text, own = card(shelf, name, version)
    if not own:
        print(f"({name}:{version} has no {CARD}: a summary from report.json and metadata.json)\n")
    print(text, end="" if text.endswith("\n") else "\n")
    if own:  # the card is as validated; what the archive knows since comes after it
        print(
            f"\n---\nlast audit: {last_audit(shelf, name, version)}\nlocation: {shelf.object_url(name, version)}"
        )
    return EXIT_OK


def migrate(archive: ArchiveOption = DEFAULT_ARCHIVE) -> int:
    """Migrate every legacy bundle and rejected attempt to an OCFL object; print what became of each.

    Returns
    -------
    int
        ``EXIT_OK`` when every legacy bundle was migrated (or there was none), ``EXIT_FAILED`` when one is
        damaged and was left as it is.
    """
    from parity.archive import Archive
    from parity.archive.migrate import Result, label
    from parity.archive.migrate import migrate as run_migration

    shelf = Archive(archive)
    shelf.store.require()
    done = run_migration(shelf)
    rows = []
    for m in done:
        name, version = label(m.key)
        result = str(m.result) + (f": {'; '.join(m.problems)}" if m.problems else "")
        rows.append({"name": name, "version": version, "files": str(m.files), "result": result})
    print_table(rows, MIGRATE_COLUMNS)
    damaged = sum(1 for m in done if m.result is Result.DAMAGED)
    migrated = sum(1 for m in done if m.result is Result.MIGRATED)
    print(f"{migrated} migrated, {damaged} damaged (left as they are)" if done else "nothing to migrate")
    return EXIT_FAILED if damaged else EXIT_OK


def export(
    ref: RefArgument,
    dest: Annotated[Path, typer.Argument(metavar="DEST", help="the bag's folder (must not exist)")],
    bagit: Annotated[
        bool, typer.Option("--bagit", help="write a BagIt bag (the only format so far)")
    ] = False,
    archive: ArchiveOption = DEFAULT_ARCHIVE,
) -> int:
    """Export an archived bundle's head state (validated files and audits) as a BagIt bag at ``DEST``.

    Returns
    -------
    int
        ``EXIT_OK``; ``EXIT_FAILED`` when the bundle is damaged (it is not exported: a bundle that needs
        action, like ``parity audit``'s); ``DEST`` existing, a bad ``NAME:VERSION`` or a missing ``--bagit``
        exits 2.
    """
    from parity.archive import Archive
    from parity.archive.export import export_bagit
    from parity.archive.listing import parse_ref

    if not bagit:
        raise InvalidInputError("parity export: say which format: --bagit (a BagIt bag, RFC 8493)")
    name, version = parse_ref(ref)
    shelf = Archive(archive)
    shelf.store.require()
    try:
        bag = export_bagit(shelf, name, version, dest)
    except IntegrityError as err:
        print(f"parity: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{name}:{version} exported as a BagIt bag: {bag}")
    return EXIT_OK


#: ``parity archive`` subcommands: name → (command, one-line help), in the order its help lists them.
ARCHIVE_COMMANDS: dict[str, tuple[Callable[..., int], str]] = {
    "ls": (ls, LS_HELP),
    "show": (show, SHOW_HELP),
    "migrate": (migrate, MIGRATE_HELP),
}
