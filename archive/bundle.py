"""Immutable, self-verifying bundles, each an OCFL 1.1 object: ``ARCHIVE/<name>/<version>/``.

The archive is an OCFL storage root (``0=ocfl_1.1``) on a folder or any fsspec URL (:mod:`.storage`). A
bundle's validated files are version 1 of its object (``v1/content/``); an audit's findings are appended as
later versions, and v1 is never rewritten. A bundle exists only once its inventory sidecar does.

Failed models go to ``ARCHIVE/_rejected/<name>/<version>/<attempt>/``, an object each, with their report:
nothing is lost, and nothing there is presented as validated. Model names cannot start with ``_``, so the two
never meet.

Bundles written before issue 12 (files and ``manifest.json`` directly in the version folder, the *legacy*
layout) are still read, and ``parity archive migrate`` turns them into objects.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from parity.core.durable import fsync_dir, fsync_tree
from parity.core.errors import ArchiveConflictError, ArchiveError, IntegrityError
from parity.core.numbers import decimal_int
from parity.core.records import Identity, Manifest
from parity.core.records.base import Document
from parity.core.staging import staging_folder, sweep_stale
from parity.registry.loading import sha256_of
from parity.registry.store import is_model_name

from . import ocfl
from .storage import Store, open_store

R = TypeVar("R", bound=Document)

MANIFEST = "manifest.json"
REPORT = "report.json"
#: The copy of the model version's registration record every bundle written since issue 9 holds.
REGISTRATION = "registration.json"
REJECTED = "_rejected"
#: Where a folder archive stages objects before renaming them into place (inside the OCFL extensions folder,
#: which validators do not take for objects).
STAGING = "extensions/parity-staging"
#: Where a folder archive keeps the lock files of its objects (``flock``, for adding versions).
LOCK_FOLDER = "extensions/parity-locks"
#: The folder of a bundle's validated files inside its object.
CONTENT = "v1/content"
#: Where an audit's findings go inside an object's logical state.
AUDITS = "audits"


@dataclass(frozen=True)
class BundleResult:
    """Where a bundle is and whether this call wrote it."""

    #: the object's location (a folder's path, or a URL)
    path: str
    written: bool  # False: an identical bundle was already there

    @property
    def content(self) -> str:
        """Where its validated files are (``<path>/v1/content``)."""
        return f"{self.path}/{CONTENT}"


def _as_bytes(source: Path | bytes) -> bytes:
    return source if isinstance(source, bytes) else Path(source).read_bytes()


def object_id(name: str, version: int, attempt: str | None = None) -> str:
    return f"parity:{name}:{version}" + (f":rejected:{attempt}" if attempt else "")


class Archive:
    """The archive: an OCFL storage root on a folder or at an fsspec URL.

    Parameters
    ----------
    root : path-like or str
        A folder, or a URL such as ``s3://bucket/prefix``.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.store: Store = open_store(root)

    # -- where things are ------------------------------------------------------------------------------

    @property
    def location(self) -> str:
        return self.store.url()

    @property
    def local(self) -> bool:
        return self.store.local is not None

    @property
    def root(self) -> Path:
        """The archive's folder (folder archives only)."""
        if self.store.local is None:
            raise ArchiveError(f"{self.location} is on object storage: it has no local folder")
        return self.store.local

    @staticmethod
    def key(name: str, version: int) -> str:
        return f"{name}/{version}"

    def object_url(self, name: str, version: int) -> str:
        """Where a version's object is (a folder's path, or a URL)."""
        return self.store.url(self.key(name, version))

    def is_legacy(self, name: str, version: int) -> bool:
        """Whether the version is archived in the layout of before issue 12 (no OCFL object)."""
        return self._legacy_at(self.key(name, version))

    def _legacy_at(self, key: str) -> bool:
        """Whether ``key`` holds a legacy bundle: a manifest beside its files, and no sidecar committing an
        object there."""
        return not self.store.exists(f"{key}/{ocfl.SIDECAR}") and self.store.exists(f"{key}/{MANIFEST}")

    def _complete_at(self, key: str) -> bool:
        """Whether ``key`` holds a bundle or attempt: a committed object, or a legacy one."""
        return self.store.exists(f"{key}/{ocfl.SIDECAR}") or self.store.exists(f"{key}/{MANIFEST}")

    def _content_key(self, key: str) -> str:
        return key if self._legacy_at(key) else f"{key}/{CONTENT}"

    def content_url(self, name: str, version: int) -> str:
        """Where a version's validated files are."""
        return self.store.url(self._content_key(self.key(name, version)))

    def bundle_path(self, name: str, version: int) -> Path:
        """The local folder of a bundle's validated files (folder archives only)."""
        return self.root / self._content_key(self.key(name, version))

    def is_archived(self, name: str, version: int) -> bool:
        """Whether ``name:version`` has a complete bundle (its inventory sidecar exists)."""
        return self._complete_at(self.key(name, version))

    def read(self, name: str, version: int, file: str) -> bytes | None:
        """One validated file of a bundle (``report.json``...), or None when absent."""
        return self.read_at(self.key(name, version), file)

    def read_at(self, key: str, file: str) -> bytes | None:
        """One validated file of the object at ``key`` (relative to the archive root)."""
        return self.store.read(f"{self._content_key(key)}/{file}")

    def record_at(self, key: str, file: str, kind: type[R]) -> R:
        """A record file (``report.json``, ``metadata.json``...) of the object at ``key``, validated.

        Raises
        ------
        FileNotFoundError, RecordError, RecordSchemaError
        """
        where = f"{self.store.url(self._content_key(key))}/{file}"
        raw = self.read_at(key, file)
        if raw is None:
            raise FileNotFoundError(f"{where}: missing")
        return kind.from_bytes(raw, where)

    def manifest(self, name: str, version: int) -> Manifest:
        """A bundle's manifest.

        Raises
        ------
        FileNotFoundError, RecordError, RecordSchemaError
        """
        return self.record_at(self.key(name, version), MANIFEST, Manifest)

    def inventory(self, name: str, version: int) -> ocfl.Inventory | None:
        """A bundle's OCFL inventory; None for a legacy bundle or none at all.

        Raises
        ------
        IntegrityError
            The inventory is not an OCFL inventory.
        """
        return self._inventory(self.key(name, version))

    def _inventory(self, key: str) -> ocfl.Inventory | None:
        raw = self.store.read(f"{key}/{ocfl.INVENTORY}")
        if raw is None:
            return None
        try:
            return ocfl.Inventory.from_bytes(raw)
        except ValueError as err:
            raise IntegrityError(f"{self.store.url(key)}/{ocfl.INVENTORY}: unreadable ({err})") from None

    def versions(self) -> list[tuple[str, int]]:
        """Every ``(name, version)`` with a bundle, sorted (the rejected area excluded).

        Raises
        ------
        ArchiveError
            The object store's bucket does not exist, or the store cannot be read.
        """
        self.store.require()
        found = []
        for name in self.store.children():
            if name == REJECTED or not is_model_name(name):
                continue
            for folder in self.store.children(name):
                number = decimal_int(folder)
                if number is not None and self.is_archived(name, number):
                    found.append((name, number))
        return sorted(found)

    def rejected(self, name: str, version: int) -> list[str]:
        """The keys of the rejected attempts of ``name:version`` that are complete, oldest first."""
        folder = f"{REJECTED}/{name}/{version}"
        keys = (f"{folder}/{attempt}" for attempt in self.store.children(folder))
        return [key for key in keys if self._complete_at(key)]

    # -- writing ---------------------------------------------------------------------------------------

    def write_bundle(
        self, name: str, version: int, files: Mapping[str, Path | bytes], identity: Identity | dict[str, str]
    ) -> BundleResult:
        """Write a bundle for a validated model version, once.

        Parameters
        ----------
        name, version : model version
        files : mapping of bundle file name to a source path or bytes
        identity : Identity or dict
            What makes this version this version (the original model's and reference data's SHA-256). A
            second call with the same identity leaves the bundle alone; a different one is refused.

        Returns
        -------
        BundleResult

        Raises
        ------
        ArchiveConflictError
            A bundle exists for this version with a different identity.
        IntegrityError
            The bundle there is damaged.
        """
        identity = Identity.model_validate(identity)
        key = self.key(name, version)
        if self.is_archived(name, version):
            self.repair(name, version)
            return self._existing(name, version, identity)
        payload = self._payload(files, identity)
        if self.local:
            written = self._rename_into_place(key, object_id(name, version), payload)
        else:
            written = self._write_locked(key, object_id(name, version), payload)
        if not written:
            return self._existing(name, version, identity)
        return BundleResult(self.store.url(key), True)

    def write_rejected(
        self, name: str, version: int, files: Mapping[str, Path | bytes], identity: Identity | dict[str, str]
    ) -> str:
        """Keep a failed attempt's report and artifacts, each attempt its own object; returns where."""
        identity = Identity.model_validate(identity)
        attempt = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}"
        key = f"{REJECTED}/{name}/{version}/{attempt}"
        payload = self._payload(files, identity)
        identifier = object_id(name, version, attempt)
        if self.local:
            self._rename_into_place(key, identifier, payload)
        else:  # a fresh key nobody else writes: no lock needed, the sidecar still goes last
            self.declare_root()
            self.write_files(key, ocfl.new_version(payload, identifier, "rejected attempt")[1])
        return self.store.url(key)

    def append_audit(self, name: str, version: int, findings: bytes, when: str | None = None) -> int | None:
        """Add an audit's findings to a bundle's object as a new OCFL version (v1 is never rewritten).

        Parameters
        ----------
        name, version : the archived model version
        findings : bytes
            The audit's record (JSON), kept as ``audits/<when>.json``.
        when : str, optional
            A UTC timestamp for the file's name; default now.

        Returns
        -------
        int or None
            The new OCFL version's number; None for a legacy bundle (migrate it first).
        """
        key = self.key(name, version)
        if self.is_legacy(name, version):
            return None
        stamp = when or datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        files = {f"{AUDITS}/{stamp}.json": findings}
        if self.local:
            with self._flock(key):
                return self._append_local(key, files)
        with self.store.locked(key) as held:
            assert held is not None
            self._roll_forward(key)
            previous = self._inventory(key)
            if previous is None:
                raise ArchiveError(f"{self.store.url(key)}: not an OCFL object")
            inventory, out = ocfl.new_version(files, previous.id, "audit", previous)
            if not held.intact():
                raise ArchiveError(
                    f"{self.store.url(key)}: another writer took the lock over; run the audit again"
                )
            self.write_files(key, out)
            return inventory.head

    def repair(self, name: str, version: int) -> None:
        """Finish what an interrupted audit left in a committed bundle's object (under its lock): a complete
        later version becomes the head, an incomplete one is removed, a root sidecar left stale by a crash
        between the two replacements is rewritten. v1 is never touched; an object that was never committed
        (no root sidecar) is left to its writer's protocol."""
        key = self.key(name, version)
        if not self.store.exists(f"{key}/{ocfl.SIDECAR}"):
            return
        if self.local:
            with self._flock(key):
                self._roll_forward(key)
            return
        with self.store.locked(key) as held:
            assert held is not None
            self._roll_forward(key)

    @contextlib.contextmanager
    def _flock(self, key: str) -> Iterator[None]:
        """An exclusive ``flock`` on the object ``key`` of a folder archive (released however the holder ends)."""
        path = self.root / LOCK_FOLDER / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def sweep_staging(self) -> list[Path]:
        """Remove the staging folders of writers that are gone (a killed or crashed run; folder archives).

        Returns
        -------
        list of Path
            The folders removed; a live writer's folder is never among them.
        """
        if not self.local:
            return []
        return sweep_stale(self.root / STAGING)

    # -- checking --------------------------------------------------------------------------------------

    @staticmethod
    def check(path: Path | str) -> list[str]:
        """Problems with a bundle's files against its manifest and its OCFL inventory (empty when intact).

        Parameters
        ----------
        path : Path or str
            The bundle's content folder (:meth:`bundle_path`), or a local copy of its object's root.

        Raises
        ------
        FileNotFoundError, RecordError, RecordSchemaError
            No manifest, or one this version of Parity cannot read.
        """
        path = Path(path)
        root = path.parents[1] if path.parent.name == "v1" and path.name == "content" else path
        # legacy only while no sidecar commits an object there (a migration killed before its sidecar leaves
        # object files beside a legacy bundle: they are not the bundle's, and not damage)
        legacy = (root / MANIFEST).is_file() and not (root / ocfl.SIDECAR).is_file()
        content = root if legacy else root / CONTENT
        manifest = Manifest.read(content / MANIFEST)
        problems = []
        for file, digest in manifest.files.items():
            target = content / file
            if not target.is_file():
                problems.append(f"{file}: missing")
            elif sha256_of(target) != digest:
                problems.append(f"{file}: SHA-256 differs from the manifest")
        extra = {p.name for p in content.iterdir()} - set(manifest.files) - {MANIFEST}
        if legacy:
            extra = {e for e in extra if not _ocfl_entry(e)}
        problems.extend(f"{file}: not in the manifest" for file in sorted(extra))
        if content == root:  # legacy: the manifest is all there is
            return problems
        named = {p.split(":")[0] for p in problems}

        def read(rel: str) -> bytes | None:
            target = root / rel
            return target.read_bytes() if target.is_file() else None

        listing = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        problems.extend(
            p
            for p in ocfl.verify(read, listing)
            if p.split(":")[0] not in named and not p.startswith(CONTENT)
        )
        return problems

    @contextlib.contextmanager
    def local_copy(self, name: str, version: int) -> Iterator[Path]:
        """A local folder of the bundle's validated files: the folder itself, or a copy of the object."""
        if self.local:
            yield self.bundle_path(name, version)
            return
        key = self.key(name, version)
        with tempfile.TemporaryDirectory(prefix="parity-bundle-") as scratch:
            root = self.store.download(key, Path(scratch) / "object")
            yield root / CONTENT if (root / ocfl.INVENTORY).is_file() else root

    # -- internals -------------------------------------------------------------------------------------

    def _existing(self, name: str, version: int, identity: Identity) -> BundleResult:
        manifest = self.manifest(name, version)
        where = self.object_url(name, version)
        if manifest.identity != identity:
            raise ArchiveConflictError(
                f"{where} already holds a bundle for a different model (archived identity "
                f"{manifest.identity.to_json()}, now {identity.to_json()}). Bundles are immutable: register the new model "
                "as a new version."
            )
        with self.local_copy(name, version) as content:
            problems = self.check(content)
        if problems:
            raise IntegrityError(f"{where}: the archived bundle is damaged: {'; '.join(problems)}.")
        return BundleResult(where, False)

    @staticmethod
    def _payload(files: Mapping[str, Path | bytes], identity: Identity) -> dict[str, bytes]:
        """The bundle's files as bytes, with the manifest of their SHA-256 digests."""
        payload = {file: _as_bytes(source) for file, source in sorted(files.items())}
        digests = {file: sha256_of_bytes(data) for file, data in payload.items()}
        payload[MANIFEST] = Manifest(identity=identity, files=digests).to_bytes()
        return payload

    def declare_root(self) -> None:
        if not self.store.exists(ocfl.ROOT_DECLARATION):
            self.store.create(ocfl.ROOT_DECLARATION, ocfl.ROOT_DECLARATION_TEXT)

    def _rename_into_place(self, key: str, object_id: str, payload: dict[str, bytes]) -> bool:
        """Build the object in a staging folder and rename it into place; False when one was already there."""
        self.declare_root()
        final = self.root / key
        _, out = ocfl.new_version(payload, object_id, "validated bundle")
        with staging_folder(self.root / STAGING, "") as staged:
            for rel, data in out.items():
                target = staged / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            fsync_tree(staged)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(staged, final)  # atomic; fails when another writer got there first
            except OSError:
                if (final / ocfl.SIDECAR).is_file() or (final / MANIFEST).is_file():
                    return False
                raise
        fsync_dir(final.parent)
        return True

    def write_files(self, key: str, out: Mapping[str, bytes]) -> None:
        """Write an object's files in order (the root sidecar last: the commit point)."""
        for rel, data in out.items():
            self.store.write(f"{key}/{rel}", data)

    def _write_locked(self, key: str, object_id: str, payload: dict[str, bytes]) -> bool:
        """Write a new object on an object store under its lock; False when another writer completed it."""
        self.declare_root()
        with self.store.locked(key, done=f"{key}/{ocfl.SIDECAR}") as held:
            if held is None or self.store.exists(f"{key}/{ocfl.SIDECAR}"):
                return False
            self.store.remove(key)  # what a writer that died left: it never read as a bundle
            _, out = ocfl.new_version(payload, object_id, "validated bundle")
            *body, (last, sidecar) = out.items()
            self.write_files(key, dict(body))
            if not held.intact():
                raise ArchiveError(f"{self.store.url(key)}: another writer took the lock over; run again")
            if not self.store.create(f"{key}/{last}", sidecar):
                return False
        return True

    def _append_local(self, key: str, files: dict[str, bytes]) -> int:
        """Add a version to a folder object: the version folder renamed into place, then the root inventory
        and sidecar replaced (each atomically; a crash between them is rolled forward by the next write)."""
        root = self.root / key
        while True:
            self._roll_forward(key)
            previous = self._inventory(key)
            if previous is None:
                raise ArchiveError(f"{root}: not an OCFL object")
            inventory, out = ocfl.new_version(files, previous.id, "audit", previous)
            version = f"v{inventory.head}"
            with staging_folder(self.root / STAGING, "") as staged:
                for rel, data in out.items():
                    if rel.startswith(f"{version}/"):
                        target = staged / rel.removeprefix(f"{version}/")
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(data)
                fsync_tree(staged)
                try:
                    os.rename(staged, root / version)
                except OSError:
                    if (root / version).exists():
                        continue  # another audit added this version first: build on it
                    raise
            for name in (ocfl.INVENTORY, ocfl.SIDECAR):
                _replace(root / name, out[name])
            fsync_dir(root)
            return inventory.head

    def _roll_forward(self, key: str) -> None:
        """Under the object's lock: make the root inventory and sidecar those of the highest complete version
        (its inventory parses and matches its sidecar), remove an incomplete version above the head, and
        remove the temporary files of an interrupted replacement."""
        for name in self.store.children(key):
            if name.startswith(f".{ocfl.INVENTORY}."):
                self.store.remove(f"{key}/{name}")
        try:
            current = self._inventory(key)
        except IntegrityError:
            current = None
        best: tuple[bytes, bytes] | None = None
        number = 1
        while True:
            folder = f"{key}/v{number}"
            raw, side = (
                self.store.read(f"{folder}/{ocfl.INVENTORY}"),
                self.store.read(f"{folder}/{ocfl.SIDECAR}"),
            )
            if raw is None and not self.store.files(folder):
                break
            try:
                complete = (
                    raw is not None
                    and side == ocfl.sidecar(raw)
                    and ocfl.Inventory.from_bytes(raw).head == number
                )
            except ValueError:
                complete = False
            if not complete:
                if current is not None and number > current.head:
                    self.store.remove(folder)  # an addition that never finished
                break
            best = (raw, side)  # type: ignore[assignment]
            number += 1
        if best is None or current is None or number - 1 < current.head:
            return  # damage in a committed version, or no readable root: the audit reports it, nothing is undone
        if number - 1 == current.head and self.store.read(f"{key}/{ocfl.INVENTORY}") != best[0]:
            return  # the root inventory is not its head version's copy: damage, reported as such
        for name, data in zip((ocfl.INVENTORY, ocfl.SIDECAR), best, strict=True):
            if self.store.read(f"{key}/{name}") != data:
                if self.local:
                    _replace(self.root / key / name, data)
                else:
                    self.store.write(f"{key}/{name}", data)


def _ocfl_entry(name: str) -> bool:
    """Whether a name at an object's root is one of OCFL's (declaration, inventory, sidecar, version folder)."""
    return (
        name.startswith("0=")
        or name.startswith(ocfl.INVENTORY)
        or re.fullmatch(r"v[1-9][0-9]*", name) is not None
    )


def sha256_of_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _replace(path: Path, data: bytes) -> None:
    """Replace a file atomically (write beside it, flush, rename over it)."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


__all__ = ["AUDITS", "CONTENT", "MANIFEST", "REGISTRATION", "REJECTED", "Archive", "BundleResult"]
