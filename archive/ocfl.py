"""OCFL 1.1 objects (Oxford Common File Layout, https://ocfl.io/1.1/spec/): the layout every bundle is kept in.

An object is a folder (or a key prefix on object storage)::

    0=ocfl_object_1.1                   the declaration
    inventory.json                      every version's state, every content file's SHA-512
    inventory.json.sha512               its digest: written last, it is the commit point
    v1/inventory.json (+ .sha512)       the inventory as of v1, never rewritten
    v1/content/<file>                   the validated bundle's files
    v2/content/audits/<when>.json       an audit's findings, added as a new version

This module builds the bytes of a new object or of a new version and checks an object against its
inventory; where they are written, and in which order, is the storage's business (:mod:`.storage`). Any
preservation tool can verify these objects without Parity (the tests use ``ocfl-py``'s validator).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SPEC = "1.1"
OBJECT_DECLARATION = f"0=ocfl_object_{SPEC}"
OBJECT_DECLARATION_TEXT = f"ocfl_object_{SPEC}\n".encode()
ROOT_DECLARATION = f"0=ocfl_{SPEC}"
ROOT_DECLARATION_TEXT = f"ocfl_{SPEC}\n".encode()
INVENTORY = "inventory.json"
SIDECAR = "inventory.json.sha512"
CONTENT = "content"
INVENTORY_TYPE = f"https://ocfl.io/{SPEC}/spec/#inventory"


def sha512(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest()


def sidecar(inventory: bytes) -> bytes:
    """The sidecar of an inventory: its digest, two spaces, the file's name."""
    return f"{sha512(inventory)}  {INVENTORY}\n".encode()


def _created() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _version_name(number: int) -> str:
    return f"v{number}"


@dataclass(frozen=True)
class Inventory:
    """An object's inventory, as read (``data`` is the JSON document itself)."""

    data: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def head(self) -> int:
        return int(str(self.data["head"]).removeprefix("v"))

    @property
    def manifest(self) -> dict[str, list[str]]:
        return self.data["manifest"]

    def state(self, version: int | None = None) -> dict[str, str]:
        """Logical path → content path of one version (default: the head)."""
        entry = self.data["versions"][_version_name(version or self.head)]
        found = {}
        for digest, names in entry["state"].items():
            paths = self.manifest[digest]
            for logical in names:
                own = [p for p in paths if p.split("/", 2)[-1] == logical]  # stored under its own name
                found[logical] = own[0] if own else paths[0]
        return found

    def digest_of(self, content_path: str) -> str | None:
        for digest, paths in self.manifest.items():
            if content_path in paths:
                return digest
        return None

    def created(self, version: int | None = None) -> str:
        return str(self.data["versions"][_version_name(version or self.head)]["created"])

    def to_bytes(self) -> bytes:
        return (json.dumps(self.data, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Inventory:
        """Parse an inventory and check its structure and paths; ValueError when it is not one this module
        can read safely (every path it names is later joined to a folder or a key prefix)."""
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"not JSON ({err})") from None
        if not isinstance(data, dict) or data.get("type") != INVENTORY_TYPE:
            raise ValueError(f"not an OCFL {SPEC} inventory")
        _check_structure(data)
        return cls(data)


#: A version folder's name, and a content path: ``vN/content/<safe relative path>``.
_VERSION = re.compile(r"^v[1-9][0-9]*$")


def safe_relative(path: object) -> bool:
    """Whether ``path`` is a relative path of plain segments (no ``..``, ``.``, empty segment, backslash or
    control character), safe to join to a folder or a key prefix."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path:
        return False
    if any(ord(c) < 32 for c in path):
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def _check_structure(data: dict[str, Any]) -> None:
    """ValueError naming what is wrong with an inventory's structure."""
    manifest, versions, head = data.get("manifest"), data.get("versions"), data.get("head")
    if (
        not isinstance(data.get("id"), str)
        or not isinstance(manifest, dict)
        or not isinstance(versions, dict)
    ):
        raise ValueError("no id, manifest or versions")
    if not versions or not all(isinstance(v, str) and _VERSION.match(v) for v in versions):
        raise ValueError("versions must be named v1, v2, ...")
    numbers = sorted(int(v[1:]) for v in versions)
    if numbers != list(range(1, len(numbers) + 1)) or head != f"v{numbers[-1]}":
        raise ValueError(f"versions {sorted(versions)} with head {head!r}: expected v1..vN with head vN")
    for digest, paths in manifest.items():
        if not isinstance(paths, list) or not paths:
            raise ValueError(f"manifest entry {digest!r}: expected a list of content paths")
        for path in paths:
            parts = path.split("/", 2) if isinstance(path, str) else []
            if (
                len(parts) < 3
                or not _VERSION.match(parts[0])
                or parts[1] != CONTENT
                or not safe_relative(path)
            ):
                raise ValueError(f"content path {path!r}: expected vN/{CONTENT}/<relative path>")
    for name, version in versions.items():
        state = version.get("state") if isinstance(version, dict) else None
        if not isinstance(state, dict) or not isinstance(version.get("created"), str):
            raise ValueError(f"version {name}: no state or created")
        for digest, logical in state.items():
            if digest not in manifest:
                raise ValueError(f"version {name}: digest {digest[:16]}… is not in the manifest")
            if not isinstance(logical, list) or not all(safe_relative(p) for p in logical):
                raise ValueError(f"version {name}: logical paths {logical!r} are not plain relative paths")


def new_version(
    files: Mapping[str, bytes], object_id: str, message: str, previous: Inventory | None = None
) -> tuple[Inventory, dict[str, bytes]]:
    """The inventory of a new version and the files to write for it.

    Parameters
    ----------
    files : mapping of logical path to bytes
        What this version adds (or replaces) over the previous one; unchanged files are not stored again.
    object_id : str
    message : str
        The version's message (what it is: "validated bundle", "audit ...").
    previous : Inventory, optional
        The object's inventory so far; None for v1.

    Returns
    -------
    (Inventory, dict of str to bytes)
        The new inventory, and every file to write relative to the object root, in a safe order: content,
        then the version's inventory and sidecar, then (for v1) the declaration, then the root inventory,
        and the root sidecar last (the commit point).
    """
    number = 1 if previous is None else previous.head + 1
    version = _version_name(number)
    manifest = {} if previous is None else {d: list(p) for d, p in previous.manifest.items()}
    state: dict[str, list[str]] = {}
    if previous is not None:
        for digest, names in previous.data["versions"][_version_name(previous.head)]["state"].items():
            state[digest] = list(names)
    out: dict[str, bytes] = {}
    for logical, data in sorted(files.items()):
        digest = sha512(data)
        for names in state.values():  # a replaced logical path leaves its old digest's state
            if logical in names:
                names.remove(logical)
        state = {d: n for d, n in state.items() if n}
        state.setdefault(digest, []).append(logical)
        # stored unless an earlier version holds these bytes; within one version every file is stored under
        # its own name, so that a version's content folder holds all of its files
        if previous is None or digest not in previous.manifest:
            content_path = f"{version}/{CONTENT}/{logical}"
            manifest.setdefault(digest, []).append(content_path)
            out[content_path] = data
    versions = {} if previous is None else dict(previous.data["versions"])
    versions[version] = {
        "created": _created(),
        "message": message,
        "state": {d: sorted(n) for d, n in sorted(state.items())},
        "user": {"name": "Parity", "address": f"urn:parity:host:{socket.gethostname()}"},
    }
    inventory = Inventory(
        {
            "id": object_id,
            "type": INVENTORY_TYPE,
            "digestAlgorithm": "sha512",
            "head": version,
            "contentDirectory": CONTENT,
            "manifest": dict(sorted(manifest.items())),
            "versions": versions,
        }
    )
    raw = inventory.to_bytes()
    out[f"{version}/{INVENTORY}"] = raw
    out[f"{version}/{SIDECAR}"] = sidecar(raw)
    if previous is None:
        out[OBJECT_DECLARATION] = OBJECT_DECLARATION_TEXT
    out[INVENTORY] = raw
    out[SIDECAR] = sidecar(raw)  # last: dicts keep insertion order
    return inventory, out


def verify(read: Callable[[str], bytes | None], listing: list[str]) -> list[str]:
    """Problems of an object against its own inventory (empty when it is intact).

    Parameters
    ----------
    read : callable
        Reads a file relative to the object root; None when it is absent.
    listing : list of str
        Every file below the object root, relative to it.

    Returns
    -------
    list of str
        One line per problem, naming the file (a content file by its logical name where it has one).
    """
    raw = read(INVENTORY)
    if raw is None:
        return [f"{INVENTORY}: missing"]
    stored_sidecar = read(SIDECAR)
    problems = []
    if stored_sidecar is None:
        problems.append(f"{SIDECAR}: missing")
    elif stored_sidecar.split()[:1] != [sha512(raw).encode()]:
        problems.append(f"{INVENTORY}: its SHA-512 differs from {SIDECAR}")
    try:
        inventory = Inventory.from_bytes(raw)
    except ValueError as err:
        return [*problems, f"{INVENTORY}: unreadable ({err})"]
    if read(OBJECT_DECLARATION) != OBJECT_DECLARATION_TEXT:
        problems.append(f"{OBJECT_DECLARATION}: missing, or not the object's declaration")
    head = f"v{inventory.head}"
    head_raw, head_sidecar = read(f"{head}/{INVENTORY}"), read(f"{head}/{SIDECAR}")
    if head_raw != raw:
        problems.append(f"{head}/{INVENTORY}: missing, or not the root {INVENTORY}")
    elif head_sidecar is None or head_sidecar.split()[:1] != [sha512(raw).encode()]:
        problems.append(f"{head}/{SIDECAR}: missing, or not the digest of {head}/{INVENTORY}")
    allowed = {OBJECT_DECLARATION, INVENTORY, SIDECAR, "extensions", "logs", *inventory.data["versions"]}
    problems.extend(
        f"{path}: not part of the object" for path in sorted(listing) if path.split("/")[0] not in allowed
    )
    names: dict[str, str] = {}
    for version in inventory.data["versions"]:
        for logical, content_path in inventory.state(int(version[1:])).items():
            names.setdefault(content_path, logical)
    expected = set()
    for digest, paths in inventory.manifest.items():
        for content_path in paths:
            expected.add(content_path)
            data = read(content_path)
            label = names.get(content_path, content_path)
            if data is None:
                problems.append(f"{label}: missing ({content_path})")
            elif sha512(data) != digest:
                problems.append(f"{label}: SHA-512 differs from {INVENTORY} ({content_path})")
    for path in sorted(listing):
        parts = path.split("/")
        if len(parts) > 2 and parts[1] == CONTENT and path not in expected:
            problems.append(f"{path}: not in {INVENTORY}")
    return problems
