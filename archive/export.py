"""``parity export --bagit``: a bundle as a BagIt bag (RFC 8493), for a repository that takes bags.

The payload (``data/``) is the bundle's head state: its validated files and the audits appended since, under
their logical names (``report.json``, ``audits/<when>.json``...). ``bag-info.txt`` names Parity, the OCFL
object's id and what the bundle is; the bag has SHA-512 and SHA-256 manifests. Files are read through the
archive's store, one at a time, so a bundle on object storage is exported the same way.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import bagit

from parity.core.errors import ArchiveError, InvalidInputError, RecordError
from parity.core.records import Report

from .bundle import REPORT, Archive, object_id

ORGANIZATION = "Parity"
CHECKSUMS = ("sha512", "sha256")


def head_files(archive: Archive, name: str, version: int) -> dict[str, bytes]:
    """The files of a bundle's head state, by logical path (a legacy bundle: its files).

    Raises
    ------
    InvalidInputError
        ``name:version`` is not archived.
    """
    if not archive.is_archived(name, version):
        raise InvalidInputError(
            f"{name}:{version}: no bundle in {archive.location}; `parity archive ls` lists what is archived"
        )
    key, store = archive.key(name, version), archive.store
    inventory = archive.inventory(name, version)
    paths = {rel: rel for rel in store.files(key)} if inventory is None else inventory.state()
    files = {}
    for logical, content_path in sorted(paths.items()):
        data = store.read(f"{key}/{content_path}")
        if data is None:
            raise ArchiveError(f"{store.url(key)}/{content_path}: missing; run `parity audit`")
        files[logical] = data
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
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        bag = bagit.make_bag(str(scratch), bag_info(archive, name, version), checksums=list(CHECKSUMS))
        bag.validate()
        os.rename(scratch, dest)  # fails when dest appeared meanwhile: never merged into
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return dest
