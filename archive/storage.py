"""Where the archive lives: a folder, or any fsspec URL (``s3://bucket/prefix``...), and how each commits.

Two kinds, one table (:data:`STORES`), each carrying its own way of putting an OCFL object in place:

- **folder**: the object is built whole in a staging folder under ``extensions/parity-staging/`` and renamed
  into place (atomic; the rename fails when another writer got there first);
- **object store**: there is no rename. Files are written one by one under a lock, the inventory sidecar
  last: an object is complete only when its sidecar exists. The lock is an object created with a conditional
  write (``If-None-Match: *``), so exactly one writer holds it. A writer killed mid-way leaves its lock and a
  partial object, which never reads as a bundle; the next writer sees that the lock's owner is gone (same
  host: the process no longer exists; any host: the lease, ``PARITY_ARCHIVE_LOCK_LEASE_S``, ran out), takes
  the lock over by creating the next generation, removes the partial files and writes the object again.

Credentials and endpoints are read the standard way of each filesystem (for S3: botocore's chain, e.g.
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``~/.aws/credentials``, ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import fsspec
import psutil
from fsspec.implementations.local import LocalFileSystem

from parity.core.errors import ArchiveError

from .ocfl import safe_relative

#: Seconds after which a lock whose owner cannot be checked (another host) is taken for abandoned.
LEASE_ENV = "PARITY_ARCHIVE_LOCK_LEASE_S"
DEFAULT_LEASE_S = 1800.0
#: Where an object store keeps its writers' locks, inside the storage root's extensions folder.
LOCKS = "extensions/parity-locks"
_POLL_S = 0.2


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    """This process's PID namespace: containers on one host share hostname and boot id, not PIDs."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _me() -> dict[str, Any]:
    process = psutil.Process()
    return {
        "host": socket.gethostname(),
        "boot": _boot_id(),
        "pidns": _pid_namespace(),
        "pid": os.getpid(),
        "started": process.create_time(),
        "since": time.time(),
    }


def _owner_gone(owner: dict[str, Any], lease_s: float) -> bool:
    """Whether a lock's owner is certainly gone: a process of this host that no longer runs, or a lease out."""
    if time.time() - float(owner.get("since", 0)) > lease_s:
        return True
    if (owner.get("host"), owner.get("boot"), owner.get("pidns")) != (
        socket.gethostname(),
        _boot_id(),
        _pid_namespace(),
    ):
        return False  # another machine, boot or container: only the lease can tell
    try:
        return abs(psutil.Process(int(owner["pid"])).create_time() - float(owner["started"])) > 0.01
    except (psutil.NoSuchProcess, KeyError, ValueError, TypeError):
        return True


def lease_s() -> float:
    raw = os.environ.get(LEASE_ENV, "")
    try:
        return float(raw) if raw else DEFAULT_LEASE_S
    except ValueError:
        raise ArchiveError(
            f"{LEASE_ENV}={raw!r}: expected a number of seconds; unset it for the default"
        ) from None


#: What a filesystem raises that means "not there" or "already there": answered by the methods themselves.
_EXPECTED = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, ArchiveError)

_F = TypeVar("_F", bound=Callable[..., Any])


def _storage_errors(method: _F) -> _F:
    """Any other error of the filesystem (no credentials, no bucket, no network) becomes an
    :class:`ArchiveError` naming the location and what to check."""

    @functools.wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except _EXPECTED:
            raise
        except Exception as err:
            raise ArchiveError(
                f"{self.url()}: the archive's storage failed ({type(err).__name__}: {str(err).strip()[:300]}). "
                "Check that the bucket exists, that the endpoint is reachable and that the credentials (read the "
                "standard way: for S3, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws/credentials, and "
                "AWS_ENDPOINT_URL for a server that is not AWS) may read and write there."
            ) from err

    return wrapper  # type: ignore[return-value]


@dataclass
class Store:
    """An archive root on some filesystem: paths are ``/``-separated and relative to the root."""

    location: str
    fs: fsspec.AbstractFileSystem
    root: str
    #: the folder, for a folder archive (None on object storage)
    local: Path | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def kind(self) -> str:
        return "folder" if self.local is not None else "object store"

    def full(self, path: str = "") -> str:
        return f"{self.root}/{path}" if path else self.root

    def url(self, path: str = "") -> str:
        """A path as a user would write it: the folder's path, or the URL."""
        if self.local is not None:
            return str(self.local / path) if path else str(self.local)
        base = self.location.rstrip("/")
        return f"{base}/{path}" if path else base

    @_storage_errors
    def require(self) -> None:
        """Refuse an object store whose bucket does not exist: reading it would otherwise look like an empty
        archive (a folder that does not exist yet is one: nothing was archived there).

        Raises
        ------
        ArchiveError
        """
        if self.local is not None:
            return
        bucket = self.root.split("/", 1)[0]
        try:
            self.fs.info(bucket)  # unlike exists(), says why it cannot (no endpoint, no credentials)
        except FileNotFoundError:
            raise ArchiveError(
                f"{self.location}: the bucket {bucket!r} does not exist (or these credentials cannot see it); "
                "pass --archive the archive's URL"
            ) from None

    @_storage_errors
    def read(self, path: str) -> bytes | None:
        """A file's bytes, or None when it is absent."""
        try:
            return self.fs.cat_file(self.full(path))
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            return None

    @_storage_errors
    def exists(self, path: str) -> bool:
        self.fs.invalidate_cache()  # other processes write here too: never answer from a listing cache
        return bool(self.fs.exists(self.full(path)))

    def _parent(self, path: str) -> None:
        if self.local is not None:  # object stores have no folders to make
            (self.local / path).parent.mkdir(parents=True, exist_ok=True)

    @_storage_errors
    def write(self, path: str, data: bytes) -> None:
        self._parent(path)
        self.fs.pipe_file(self.full(path), data)

    @_storage_errors
    def create(self, path: str, data: bytes) -> bool:
        """Write ``path`` only if it does not exist (a conditional write); False when it already did."""
        self._parent(path)
        try:
            self.fs.pipe_file(self.full(path), data, mode="create")
        except FileExistsError:
            return False
        return True

    @_storage_errors
    def files(self, prefix: str) -> list[str]:
        """Every file below ``prefix``, relative to it."""
        base = self.full(prefix).rstrip("/")
        self.fs.invalidate_cache()
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        return sorted(p[len(base) + 1 :] for p in found if p.startswith(base + "/"))

    @_storage_errors
    def children(self, prefix: str = "") -> list[str]:
        """The names directly below ``prefix`` (folders and files)."""
        base = self.full(prefix).rstrip("/")
        self.fs.invalidate_cache()
        try:
            found = self.fs.ls(base, detail=False)
        except FileNotFoundError:
            return []
        return sorted({p.rstrip("/").rsplit("/", 1)[-1] for p in found if p.rstrip("/") != base})

    @_storage_errors
    def remove(self, prefix: str) -> None:
        """Remove a file or every file below a prefix (nothing when absent)."""
        target = self.full(prefix)
        if self.fs.exists(target):
            self.fs.rm(target, recursive=True)

    @_storage_errors
    def download(self, prefix: str, into: Path) -> Path:
        """Copy every file below ``prefix`` into the local folder ``into`` (created)."""
        into.mkdir(parents=True, exist_ok=True)
        for rel in self.files(prefix):
            if not safe_relative(rel):
                raise ArchiveError(
                    f"{self.url(prefix)}: holds a key that is not a plain relative path ({rel!r}); it was not "
                    "copied. Remove that key from the store."
                )
            target = into / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            data = self.read(f"{prefix}/{rel}")
            if data is not None:
                target.write_bytes(data)
        return into

    @contextlib.contextmanager
    def locked(self, key: str, done: str | None = None) -> Iterator[Held | None]:
        """Hold the lock ``key`` (object stores), waiting for a live holder and taking over a dead one's.

        Parameters
        ----------
        key : str
            What is locked, e.g. ``name/version``.
        done : str, optional
            A file whose appearance ends the wait: the work is done (yields False, lock not taken).

        Yields
        ------
        Held or None
            The lock this process holds; None when ``done`` appeared while waiting.

        Raises
        ------
        ArchiveError
            A live holder kept the lock past the lease.
        """
        folder, lease = f"{LOCKS}/{key}", lease_s()
        deadline = time.monotonic() + lease + 60
        me = json.dumps({**_me(), "owner": uuid.uuid4().hex}).encode()
        while True:
            if done is not None and self.exists(done):
                yield None
                return
            # Generations only grow: the highest is never removed, so a number is never taken twice. It is
            # free when its holder released it (its ``.released`` marker exists) or is certainly gone.
            generation = max(self._generations(folder), default=0)
            if generation and not self.exists(f"{folder}/{generation:08d}.released"):
                raw = self.read(f"{folder}/{generation:08d}.json")
                try:
                    owner = json.loads(raw) if raw else {}
                except ValueError:
                    owner = {}
                if not _owner_gone(owner, lease):
                    if time.monotonic() > deadline:
                        raise ArchiveError(
                            f"{self.url(folder)}: another writer ({owner.get('host')}, pid {owner.get('pid')}) has "
                            f"held this lock for over {lease:.0f} s; if it is gone, remove the lock and run again"
                        )
                    time.sleep(_POLL_S)
                    continue
            mine = generation + 1
            if not self.create(f"{folder}/{mine:08d}.json", me):
                continue  # another writer took this generation first
            held = Held(self, folder, mine)
            if not held.intact():  # a later generation already: someone judged this one dead
                continue
            for older in self._generations(folder):  # what earlier holders left, below the highest
                if older < mine:
                    self.remove(f"{folder}/{older:08d}.json")
                    self.remove(f"{folder}/{older:08d}.released")
            try:
                yield held
            finally:
                self.create(f"{folder}/{mine:08d}.released", b"")
            return

    def _generations(self, folder: str) -> list[int]:
        return sorted(int(g[:-5]) for g in self.children(folder) if g.endswith(".json") and g[:-5].isdigit())


@dataclass(frozen=True)
class Held:
    """A lock this process holds: generation ``generation`` of the lock folder ``folder``."""

    store: Store
    folder: str
    generation: int

    def intact(self) -> bool:
        """Whether nobody took the lock over (no later generation exists): check before committing."""
        return max(self.store._generations(self.folder), default=0) <= self.generation


#: The kinds of archive location, each with how it is recognised and opened.
STORES: dict[str, str] = {
    "folder": "a path on this machine (or file://): objects are renamed into place",
    "object store": "any other fsspec URL (s3://bucket/prefix, ...): conditional writes, sidecar last",
}


def open_store(location: str | os.PathLike[str]) -> Store:
    """The store behind an ``--archive`` value.

    Raises
    ------
    ArchiveError
        The URL names a filesystem fsspec does not know, or one whose package is missing.
    """
    text = os.fspath(location)
    if "://" not in text or text.startswith("file://"):
        folder = Path(text.removeprefix("file://")).expanduser()
        folder = folder.absolute()
        return Store(text, LocalFileSystem(), folder.as_posix(), folder)
    try:
        fs, root = fsspec.core.url_to_fs(text)
    except (ValueError, ImportError) as err:
        raise ArchiveError(
            f"--archive {text}: fsspec cannot open this URL ({err}); give a folder or a URL such as "
            "s3://bucket/prefix"
        ) from None
    return Store(text, fs, root.rstrip("/"))


def read_url(location: str | os.PathLike[str]) -> bytes | None:
    """The bytes of one file given as a folder path or a URL; None when it is absent."""
    location = os.fspath(location)
    if "://" not in location or location.startswith("file://"):
        path = Path(location.removeprefix("file://"))
        return path.read_bytes() if path.is_file() else None
    fs, path = fsspec.core.url_to_fs(location)
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        return None


def as_link(location: str | os.PathLike[str]) -> str:
    """A link to a location: a ``file://`` URI for a folder path, the URL itself otherwise."""
    location = os.fspath(location)
    if "://" in location:
        return location
    return Path(location).resolve().as_uri()
