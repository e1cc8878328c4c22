"""``parity export --bagit``: a bundle as a BagIt bag (RFC 8493), for a repository that takes bags.

The payload (``data/``) is the bundle's head state: its validated files and the audits appended since, under
their logical names (``report.json``, ``audits/<when>.json``...). ``bag-info.txt`` names Parity, the OCFL
object's id and what the bundle is; the bag has SHA-512 and SHA-256 manifests. Files are read through the
archive's store, one at a time, so a bundle on object storage is exported the same way.

Nothing is bagged unverified: the inventory's paths are data, so each must be a plain relative path (a
content path under ``vN/content/``); each file's SHA-512 must be the inventory's and each validated file's
SHA-256 the one in ``manifest.json`` (a legacy bundle: its manifest). Bagging re-hashes what it is given, so
a damaged bundle would otherwise leave as a valid bag; it is refused with an :class:`IntegrityError` naming
each file (``parity export`` exits 1: a bundle that needs action, as ``parity audit`` would say).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import bagit

from parity.core.errors import IntegrityError, InvalidInputError, RecordError
from parity.core.records import Manifest, Report

from . import ocfl
from .bundle import CONTENT, MANIFEST, REPORT, Archive, object_id, sha256_of_bytes
from .storage import Store

ORGANIZATION = "Parity"
CHECKSUMS = ("sha512", "sha256")
_CONTENT_PATH = re.compile(rf"v[1-9][0-9]*/{ocfl.CONTENT}/.+")


def safe_path(path: str) -> bool:
    """Whether ``path`` is a plain relative path: no ``..`` or ``.``, no empty segment, not absolute.

    Inventory paths are data from the archive; one that is not plain could name a file outside the object
    (a content path) or outside the bag (a logical path).
    """
    parts = path.split("/")
    return (
        bool(path) and "\\" not in path and "\0" not in path and all(p not in ("", ".", "..") for p in parts)
    )


def content_path_ok(path: object) -> bool:
    """Whether ``path`` is a content path an inventory may give: ``vN/content/<plain relative path>``."""
    return isinstance(path, str) and _CONTENT_PATH.fullmatch(path) is not None and safe_path(path)


def _head_entries(inventory: ocfl.Inventory, where: str) -> dict[str, tuple[str, str]]:
    """Logical path → (content path, SHA-512 the inventory records) of the head state, paths checked.

    Every content path of the manifest and every logical path of the head state is checked, not only those
    the export reads: an inventory holding one unsafe path is not trusted for the others.

    Raises
    ------
    IntegrityError
        The inventory lacks a key, names a digest its manifest lacks, or holds a path that is not plain.
    """
    try:
        head = inventory.data["versions"][f"v{inventory.head}"]["state"]
        if not all(path_list(names) for names in (*head.values(), *inventory.manifest.values())):
            raise TypeError("a state or manifest entry is not a list of paths")
        state = inventory.state()
        digests = {logical: str(digest).lower() for digest, names in head.items() for logical in names}
        content_paths = [path for paths in inventory.manifest.values() for path in paths]
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise IntegrityError(
            f"{where}/{ocfl.INVENTORY}: malformed ({type(err).__name__}: {err}); not exported. "
            "Run `parity audit` and restore the object from a copy"
        ) from None
    bad = [
        f"{logical!r} -> {content!r}" for logical, content in sorted(state.items()) if not safe_path(logical)
    ]
    bad += [repr(path) for path in sorted(set(content_paths)) if not content_path_ok(path)]
    if bad:
        raise IntegrityError(
            f"{where}/{ocfl.INVENTORY}: paths that are not plain relative paths under vN/{ocfl.CONTENT}/: "
            f"{', '.join(bad)}; not exported. Restore the object from a copy"
        )
    return {logical: (content, digests[logical]) for logical, content in state.items()}


def path_list(value: object) -> bool:
    """Whether an inventory's state or manifest entry is what OCFL says: a list of paths (strings)."""
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _manifest_problems(files: dict[str, bytes], known: set[str], validated: set[str]) -> list[str]:
    """What disagrees with the bundle's ``manifest.json``: its files absent from ``known``, and those of
    ``validated`` (the v1 files) whose SHA-256 differs."""
    try:
        manifest = Manifest.from_bytes(files[MANIFEST], MANIFEST)
    except KeyError:
        return [] if MANIFEST in known else [f"{MANIFEST}: missing"]
    except RecordError as err:
        return [f"{MANIFEST}: unreadable ({err})"]
    problems = [f"{file}: missing" for file in sorted(set(manifest.files) - known)]
    problems += [
        f"{file}: SHA-256 differs from {MANIFEST}"
        for file, digest in sorted(manifest.files.items())
        if file in files and file in validated and sha256_of_bytes(files[file]) != digest
    ]
    return problems


def _damaged(where: str, problems: list[str]) -> IntegrityError:
    return IntegrityError(
        f"{where}: damaged, not exported: {'; '.join(problems)}. "
        "Run `parity audit` to record it, and restore the bundle from a copy"
    )


def head_files(archive: Archive, name: str, version: int) -> dict[str, bytes]:
    """The files of a bundle's head state, by logical path (a legacy bundle: its files), each verified.

    Every path the inventory gives is checked to be a plain relative path (a content path under
    ``vN/content/``), every file's SHA-512 against the inventory, and the validated files' SHA-256 against
    the bundle's ``manifest.json``; a legacy bundle's files against its manifest.

    Raises
    ------
    InvalidInputError
        ``name:version`` is not archived.
    IntegrityError
        The inventory is malformed or holds an unsafe path, or a file is missing or differs from its
        recorded digest (the message names each).
    """
    if not archive.is_archived(name, version):
        raise InvalidInputError(
            f"{name}:{version}: no bundle in {archive.location}; `parity archive ls` lists what is archived"
        )
    key, store = archive.key(name, version), archive.store
    where = store.url(key)
    inventory = archive.inventory(name, version)
    if inventory is None:
        return _legacy_files(store, key, where)
    files, problems, validated = {}, [], set()
    entries = _head_entries(inventory, where)
    for logical, (content_path, digest) in sorted(entries.items()):
        data = store.read(f"{key}/{content_path}")
        if data is None:
            problems.append(f"{logical}: missing ({content_path})")
            continue
        if ocfl.sha512(data) != digest:
            problems.append(f"{logical}: SHA-512 differs from {ocfl.INVENTORY} ({content_path})")
        files[logical] = data
        if content_path.startswith(f"{CONTENT}/"):
            validated.add(logical)
    problems += _manifest_problems(files, set(entries), validated)
    if problems:
        raise _damaged(where, problems)
    return files


def _legacy_files(store: Store, key: str, where: str) -> dict[str, bytes]:
    """A legacy bundle's files, checked against its ``manifest.json`` (every file must be in it)."""
    names = store.files(key)
    problems = [f"{rel!r}: not a plain relative path" for rel in names if not safe_path(rel)]
    files = {}
    for rel in filter(safe_path, sorted(names)):
        data = store.read(f"{key}/{rel}")
        if data is not None:
            files[rel] = data
    problems += _manifest_problems(files, set(files), set(files))
    manifest = files.get(MANIFEST)
    if manifest is not None and not problems:
        listed = set(Manifest.from_bytes(manifest, MANIFEST).files)
        problems += [f"{rel}: not in {MANIFEST}" for rel in sorted(set(files) - listed - {MANIFEST})]
    if problems:
        raise _damaged(where, problems)
    return files


def bag_info(archive: Archive, name: str, version: int) -> dict[str, str]:
    """What ``bag-info.txt`` says of a bundle (Bagging-Date and Payload-Oxum are bagit's own)."""
    inventory = archive.inventory(name, version)
    identifier = inventory.id if inventory is not None else object_id(name, version)
    try:
        report = archive.record_at(archive.key(name, version), REPORT, Report)
        what = f"estimator {report.estimator}, verdict {report.outcome}"
    except (OSError, RecordError) as err:
        what = f"report unreadable ({err})"
    return {
        "Source-Organization": ORGANIZATION,
        "External-Identifier": identifier,
        "External-Description": f"Parity bundle of model {name} version {version}: {what}",
    }


def export_bagit(archive: Archive, name: str, version: int, dest: Path) -> Path:
    """Write ``name:version``'s bundle as a BagIt bag at ``dest``, which must not exist.

    The bag is made in a sibling folder and renamed to ``dest`` once complete and valid: an interrupted
    export leaves no partial bag at ``dest``.

    Parameters
    ----------
    archive : Archive
    name, version : the archived model version
    dest : Path
        The bag's folder; its parent must exist.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    InvalidInputError
        ``dest`` exists, its parent does not, or ``name:version`` is not archived.
    """
    if dest.exists():
        raise InvalidInputError(f"{dest}: already exists; give a new folder for the bag")
    if not dest.parent.is_dir():
        raise InvalidInputError(f"{dest.parent}: no such folder; create it or give another DEST")
    files = head_files(archive, name, version)
    scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{uuid.uuid4().hex[:8]}-", dir=dest.parent))
    scratch.chmod(0o755)  # mkdtemp's 0700 is for secrets; a bag is to be handed on
    try:
        for logical, data in files.items():
            target = scratch / logical
            if not target.resolve().is_relative_to(scratch.resolve()):  # head_files checked: never here
                raise IntegrityError(f"{logical!r}: would be written outside the bag; not exported")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        bag = bagit.make_bag(str(scratch), bag_info(archive, name, version), checksums=list(CHECKSUMS))
        bag.validate()
        os.rename(scratch, dest)  # fails when dest appeared meanwhile: never merged into
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return dest
