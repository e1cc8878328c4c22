"""``parity archive migrate``: every legacy bundle (the layout of before issue 12) becomes an OCFL object.

A legacy bundle is a folder of files with ``manifest.json`` beside them. Migrating it makes an OCFL object
whose v1 content is exactly those files (the manifest included), byte for byte, and nothing else. Before the
old folder is replaced, every file is checked three ways: its SHA-256 in the legacy manifest, the bytes of
the copy in the new object, and the new inventory's SHA-512 of that copy. A bundle whose manifest disagrees
with its files is damaged: it is reported and left exactly as it is.

How the swap survives a crash:

- **folder**: the object is built in the staging area (``extensions/parity-staging``, swept when its writer
  is gone); the old folder is renamed aside to ``extensions/parity-migration/<key>``, the object renamed in,
  the aside folder removed. Before the first rename the old bundle is in place; after the second the new
  object is. Between the two (a crash there) the old bundle sits whole in the aside folder, and the next
  ``migrate`` puts it back (no object in place) or removes it (the object is in place), before anything else.
- **object store** (no rename): under the object's lock, ``v1/content/*`` copies are written, then the
  inventories, the root sidecar last; only then are the legacy top-level files deleted. Until the sidecar
  exists the bundle reads as legacy (a migration killed before it leaves object files the next one ignores
  and writes again); once it does, as the object (the legacy files are then leftovers, any subset of them
  when the deletions were cut short: the next ``migrate`` deletes each one whose digest is its v1 copy's,
  once the object checks out against its inventory, and reports any other, which it keeps).

Readers during a folder swap: between the two renames (microseconds, or until the next ``migrate`` after a
crash there) the version is not at its place, so a reader sees it as not archived. Run ``migrate`` when no
``parity run`` writes to the archive: a bundle written into that gap makes the rename in fail, the old
bundle is put back where possible, and otherwise kept aside and reported.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from parity.core.durable import fsync_dir, fsync_tree
from parity.core.errors import ArchiveError, RecordError
from parity.core.numbers import decimal_int
from parity.core.records import Manifest
from parity.core.staging import staging_folder
from parity.registry.store import is_model_name

from . import ocfl
from .bundle import CONTENT, MANIFEST, REJECTED, STAGING, Archive, object_id, sha256_of_bytes

#: Where a folder archive keeps a legacy bundle during the swap (see the module's docstring).
ASIDE = "extensions/parity-migration"
_VERSION = re.compile(r"v[0-9]+")
MESSAGE = "migrated from the legacy layout (before issue 12)"


class Result(StrEnum):
    """What became of one legacy bundle."""

    MIGRATED = "migrated"
    #: its files disagree with its manifest: left as it is
    DAMAGED = "damaged"
    #: an interrupted migration was finished (object store leftovers removed, or an aside folder restored)
    RECOVERED = "recovered"


@dataclass(frozen=True)
class Migration:
    """One legacy bundle (or rejected attempt) and what ``migrate`` did with it."""

    key: str
    files: int
    result: Result
    problems: tuple[str, ...] = ()


def object_keys(archive: Archive) -> list[str]:
    """Every key that may hold a bundle: ``name/version`` keys, then rejected attempts' keys, each sorted."""
    store = archive.store
    bundles: list[str] = []
    attempts: list[str] = []
    for name in store.children():
        if name != REJECTED and is_model_name(name):
            bundles.extend(f"{name}/{v}" for v in store.children(name) if decimal_int(v) is not None)
    for name in filter(is_model_name, store.children(REJECTED)):
        for version in (v for v in store.children(f"{REJECTED}/{name}") if decimal_int(v) is not None):
            folder = f"{REJECTED}/{name}/{version}"
            attempts.extend(f"{folder}/{attempt}" for attempt in store.children(folder))
    return sorted(bundles) + sorted(attempts)


def legacy_keys(archive: Archive) -> list[str]:
    """The keys of every legacy bundle and legacy rejected attempt (in :func:`object_keys`' order).

    Parameters
    ----------
    archive : Archive

    Returns
    -------
    list of str
        The keys whose folder has a ``manifest.json`` at its top and no inventory sidecar.
    """
    return [key for key in object_keys(archive) if _is_legacy(archive, key)]


def _is_legacy(archive: Archive, key: str) -> bool:
    return not archive.store.exists(f"{key}/{ocfl.SIDECAR}") and archive.store.exists(f"{key}/{MANIFEST}")


def object_id_of(key: str) -> str:
    """The OCFL id a migrated object gets: the one :class:`Archive` gives a new object at that key."""
    parts = key.split("/")
    if parts[0] == REJECTED:
        return object_id(parts[1], int(parts[2]), parts[3])
    return object_id(parts[0], int(parts[1]))


def label(key: str) -> tuple[str, str]:
    """A key as ``(name, version)`` for a table: ``("iris-lr", "1 (rejected attempt 2026...)")``."""
    parts = key.split("/")
    if parts[0] == REJECTED:
        return parts[1], f"{parts[2]} (rejected attempt {parts[3]})"
    return parts[0], parts[1]


def manifest_problems(files: dict[str, bytes], where: str) -> list[str]:
    """What disagrees between a legacy bundle's files and its manifest (empty when they agree).

    Parameters
    ----------
    files : dict of str to bytes
        Every file of the bundle (relative paths), ``manifest.json`` included.
    where : str
        The bundle's location, for messages.
    """
    raw = files.get(MANIFEST)
    if raw is None:
        return [f"{MANIFEST}: missing"]
    try:
        manifest = Manifest.from_bytes(raw, f"{where}/{MANIFEST}")
    except RecordError as err:
        return [f"{MANIFEST}: unreadable ({err})"]
    problems = []
    for file, digest in sorted(manifest.files.items()):
        if file not in files:
            problems.append(f"{file}: missing")
        elif sha256_of_bytes(files[file]) != digest:
            problems.append(f"{file}: SHA-256 differs from the manifest")
    extra = sorted(set(files) - set(manifest.files) - {MANIFEST})
    problems.extend(f"{file}: not in the manifest" for file in extra)
    return problems


def object_problems(
    old: dict[str, bytes], read: Callable[[str], bytes | None], listing: list[str]
) -> list[str]:
    """Hash by hash, whether a new object holds exactly ``old`` as its v1 content (empty when it does).

    Parameters
    ----------
    old : dict of str to bytes
        The legacy bundle's files, as read from it (already checked against its manifest).
    read : callable
        Reads a file of the new object (relative to its root); None when absent.
    listing : list of str
        Every file of the new object, relative to its root.

    Returns
    -------
    list of str
        Each file whose copy is missing or differs (SHA-256 against the legacy manifest and the old bytes,
        SHA-512 against the new inventory), every content file the bundle did not have, and what
        :func:`ocfl.verify` finds (the inventory's SHA-512 against its sidecar included).
    """
    digests = Manifest.from_bytes(old[MANIFEST], MANIFEST).files
    raw = read(ocfl.INVENTORY)
    if raw is None:
        return [f"{ocfl.INVENTORY}: missing"]
    inventory = ocfl.Inventory.from_bytes(raw)
    state = inventory.state(1)
    problems = []
    for file, data in sorted(old.items()):
        copy = read(f"{CONTENT}/{file}")
        expected = digests.get(file, sha256_of_bytes(data))  # the manifest has no digest of itself
        if copy is None or state.get(file) != f"{CONTENT}/{file}":
            problems.append(f"{file}: not copied into {CONTENT}")
        elif sha256_of_bytes(copy) != expected or sha256_of_bytes(copy) != sha256_of_bytes(data):
            problems.append(f"{file}: the copy's SHA-256 differs from the legacy bundle's")
        elif inventory.digest_of(f"{CONTENT}/{file}") != ocfl.sha512(copy):
            problems.append(f"{file}: the copy's SHA-512 differs from {ocfl.INVENTORY}")
    problems.extend(f"{file}: not in the legacy bundle" for file in sorted(set(state) - set(old)))
    return problems + ocfl.verify(read, listing)


def migrate(archive: Archive) -> list[Migration]:
    """Migrate every legacy bundle and legacy rejected attempt of ``archive``; idempotent.

    Parameters
    ----------
    archive : Archive

    Returns
    -------
    list of Migration
        One per legacy bundle found (and per interrupted migration finished); empty when there is none.
    """
    with _one_migration(archive):
        done = _recover(archive)
        for key in legacy_keys(archive):
            done.append(migrate_one(archive, key))
    return done


@contextlib.contextmanager
def _one_migration(archive: Archive) -> Iterator[None]:
    """One ``migrate`` at a time on a folder archive (an ``flock``, dropped however the process ends).

    Object stores need none: each object's swap runs under that object's own lock.
    """
    if not archive.local:
        yield
        return
    lock = archive.root / ASIDE / "migrate.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ArchiveError(
                f"{archive.root}: another `parity archive migrate` is running (it holds {lock}); wait for it"
            ) from None
        yield


def migrate_one(archive: Archive, key: str) -> Migration:
    """Migrate the legacy bundle at ``key`` (see the module's docstring for the order of writes).

    Returns
    -------
    Migration
        ``damaged`` (with the problems) when its files disagree with its manifest or the new object's copy
        is not exact; then the legacy bundle is left as it was.
    """
    store = archive.store
    # on an object store, a migration killed before its sidecar leaves object files beside the legacy ones
    partial = set() if archive.local else set(_object_listing(archive, key))
    old = {rel: store.read(f"{key}/{rel}") or b"" for rel in store.files(key) if rel not in partial}
    problems = manifest_problems(old, store.url(key))
    if problems:
        return Migration(key, len(old), Result.DAMAGED, tuple(problems))
    _, out = ocfl.new_version(old, object_id_of(key), MESSAGE)
    archive.declare_root()
    problems = _swap_folder(archive, key, old, out) if archive.local else _swap_store(archive, key, old, out)
    return Migration(key, len(old), Result.DAMAGED if problems else Result.MIGRATED, tuple(problems))


def _swap_folder(archive: Archive, key: str, old: dict[str, bytes], out: dict[str, bytes]) -> list[str]:
    root = archive.root
    final, aside = root / key, root / ASIDE / key
    with staging_folder(root / STAGING, "") as staged:
        for rel, data in out.items():
            target = staged / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        fsync_tree(staged)
        problems = object_problems(old, _reader(staged), _listing(staged))
        if problems:
            return problems
        aside.parent.mkdir(parents=True, exist_ok=True)
        os.rename(final, aside)
        try:
            os.rename(staged, final)
        except OSError as err:  # another writer put something there in between: the old bundle goes back
            with contextlib.suppress(OSError):
                os.rename(aside, final)
            raise ArchiveError(
                f"{final}: could not rename the migrated object into place ({err}); the legacy bundle is at "
                f"{final if final.joinpath(MANIFEST).is_file() else aside}. Run `parity archive migrate` again."
            ) from None
        fsync_dir(final.parent)
    _remove_aside(root, aside)
    return []


def _remove_aside(root: Path, aside: Path) -> None:
    """Remove an aside folder and the empty folders above it, up to the aside area (which keeps the lock)."""
    shutil.rmtree(aside)
    for parent in aside.parents:
        if parent == root / ASIDE:
            break
        with contextlib.suppress(OSError):  # not empty: another bundle's aside is there
            parent.rmdir()


def _swap_store(archive: Archive, key: str, old: dict[str, bytes], out: dict[str, bytes]) -> list[str]:
    store = archive.store
    with store.locked(key, done=f"{key}/{ocfl.SIDECAR}") as held:
        if held is None:
            return []  # another migration completed it while this one waited
        *body, (last, sidecar) = out.items()
        archive.write_files(key, dict(body))

        # the sidecar, the commit point, is not written yet: checked as the bytes about to be written
        def read(rel: str) -> bytes | None:
            return sidecar if rel == last else store.read(f"{key}/{rel}")

        problems = object_problems(old, read, [*_object_listing(archive, key), last])
        if problems or not held.intact():
            for rel, _ in body:  # nothing reads these before the sidecar exists
                if rel.startswith("v1/") or rel in (ocfl.INVENTORY, ocfl.OBJECT_DECLARATION):
                    store.remove(f"{key}/{rel}")
            return problems or [f"{store.url(key)}: another writer took the lock over; run migrate again"]
        store.write(f"{key}/{last}", sidecar)
        for rel in old:
            store.remove(f"{key}/{rel}")
    return []


def _object_listing(archive: Archive, key: str) -> list[str]:
    """The files of the object at ``key``: on an object store the legacy files still beside it are not its."""
    return [
        rel
        for rel in archive.store.files(key)
        if _VERSION.fullmatch(rel.split("/")[0])
        or rel in (ocfl.INVENTORY, ocfl.SIDECAR, ocfl.OBJECT_DECLARATION)
    ]


def _reader(folder: Path) -> Callable[[str], bytes | None]:
    def read(rel: str) -> bytes | None:
        target = folder / rel
        return target.read_bytes() if target.is_file() else None

    return read


def _files_of(folder: Path) -> dict[str, bytes]:
    return {rel: (folder / rel).read_bytes() for rel in _listing(folder)}


def _listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _recover(archive: Archive) -> list[Migration]:
    """Finish what an interrupted migration left (see the module's docstring)."""
    return _recover_folder(archive) if archive.local else _recover_store(archive)


def _recover_folder(archive: Archive) -> list[Migration]:
    archive.sweep_staging()  # objects a killed migration was building: never in place, so never read
    root, done = archive.root, list[Migration]()
    base = root / ASIDE
    if not base.is_dir():
        return done
    for manifest in sorted(base.rglob(MANIFEST)):
        aside = manifest.parent
        key = aside.relative_to(base).as_posix()
        final = root / key
        if (final / ocfl.SIDECAR).is_file():
            old = _files_of(aside)
            problems = object_problems(old, _reader(final), _listing(final))
            if problems:  # not provably the same files: keep both
                kept = (*problems, f"the legacy bundle is kept at {aside}")
                done.append(Migration(key, len(old), Result.DAMAGED, kept))
                continue
            _remove_aside(root, aside)  # the object in place holds exactly these files
            done.append(Migration(key, len(old), Result.RECOVERED))
            continue
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(aside, final)  # crashed between the renames: the old bundle goes back
        fsync_dir(final.parent)
        done.append(Migration(key, len(_listing(final)), Result.RECOVERED))
    return done


def _recover_store(archive: Archive) -> list[Migration]:
    """Delete the legacy files left beside a complete migrated object, each once it matches its v1 copy.

    A migration killed while it deleted the legacy files leaves any subset of them; each leftover is
    compared by digest with the object's own copy (the object checked against its inventory first), and
    deleted when they agree. A leftover that does not agree is kept and reported.
    """
    store, done = archive.store, list[Migration]()
    for key in object_keys(archive):
        if not store.exists(f"{key}/{ocfl.SIDECAR}") or not _leftovers(archive, key):
            continue
        with store.locked(key):  # a live migration of this key finishes its own deletions first
            leftovers = _leftovers(archive, key)
            if leftovers:
                done.append(_recover_leftovers(archive, key, leftovers))
    return done


def _leftovers(archive: Archive, key: str) -> list[str]:
    """The files at ``key`` that are not the object's: what a legacy bundle's deletion left."""
    listing = set(_object_listing(archive, key))
    return [rel for rel in archive.store.files(key) if rel not in listing]


def _recover_leftovers(archive: Archive, key: str, leftovers: list[str]) -> Migration:
    """Delete each leftover whose bytes are the object's v1 copy of it; report the others (kept)."""
    store = archive.store

    def read(rel: str) -> bytes | None:
        return store.read(f"{key}/{rel}")

    try:
        problems = ocfl.verify(read, _object_listing(archive, key))
        inventory = ocfl.Inventory.from_bytes(read(ocfl.INVENTORY) or b"")
        copies = inventory.state(1)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        problems = [f"{ocfl.INVENTORY}: malformed ({type(err).__name__}: {err})"]
    # the copies cannot vouch for anything then: keep the leftovers, `parity audit` reports the object
    if problems:
        kept = f"{len(leftovers)} legacy files kept beside it: {', '.join(leftovers)}"
        return Migration(key, len(leftovers), Result.DAMAGED, (*problems, kept))
    for rel in leftovers:
        data, copy = read(rel), copies.get(rel)
        if data is None:
            continue  # removed meanwhile
        if copy != f"{CONTENT}/{rel}" or inventory.digest_of(copy) != ocfl.sha512(data):
            problems.append(
                f"{rel}: left beside the object, differs from its v1 copy ({copy or 'none'}); kept"
            )
            continue
        store.remove(f"{key}/{rel}")
    return Migration(key, len(leftovers), Result.DAMAGED if problems else Result.RECOVERED, tuple(problems))
