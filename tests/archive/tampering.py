"""What a tamperer with write access to a folder archive does after changing a bundle's files: reseal its OCFL
inventory (SHA-512 digests and sidecars) so that the object's own checksums cannot tell."""

from __future__ import annotations

import shutil
from pathlib import Path

from parity.archive import CONTENT, ocfl


def reseal_inventory(folder: Path) -> None:
    """Rewrite the inventory of the object whose ``v1/content`` is ``folder`` to match the files there, and drop
    the versions recorded since (the audits)."""
    root = folder.parents[1]
    old = ocfl.Inventory.from_bytes((root / ocfl.INVENTORY).read_bytes())
    _, out = ocfl.new_version({p.name: p.read_bytes() for p in folder.iterdir()}, old.id, "tampered")
    for rel, data in out.items():
        if not rel.startswith(CONTENT):
            (root / rel).write_bytes(data)
    for later in root.glob("v[2-9]*"):
        shutil.rmtree(later)
