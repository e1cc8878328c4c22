"""Staging folders that say whether their writer is alive, and the sweep that removes those of dead writers.

A writer stages ``PARENT/<prefix><random>/`` next to ``PARENT/<prefix><random>.lock``, an ``flock`` it holds
for as long as the folder is its own. The kernel drops the lock when the process ends, however it ends
(``kill -9`` included), so a staging folder whose lock can be taken, or that has no lock file at all, belongs
to nobody and is swept. PIDs are reused; locks are not, which is why a lock and not an owner PID decides.
The lock file holds the writer's PID and start time, for a person reading the folder.

Order of events, which makes the sweep safe against a live writer: the lock file is created and locked
before the folder, and the folder is removed (or renamed into place) before the lock file. So a folder
without a lock file is never a live writer's, and a sweeper deletes a folder only while it holds that
folder's lock itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_SUFFIX = ".lock"


def _lock_held_by_us(fd: int, path: Path) -> bool:
    """Whether ``path`` is still the file ``fd`` locked: a sweeper may have removed it in between."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _try_lock(path: Path) -> int | None:
    """The descriptor of ``path`` locked exclusively, or None when another process holds it (or it is gone)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if not _lock_held_by_us(fd, path):
        os.close(fd)
        return None
    return fd


def _new_lock(parent: Path, prefix: str) -> tuple[int, Path]:
    while True:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=LOCK_SUFFIX, dir=parent)
        lock = Path(name)
        fcntl.flock(fd, fcntl.LOCK_EX)  # a fresh file: nobody but a sweeper can hold it, and only briefly
        if _lock_held_by_us(fd, lock):
            os.write(fd, f"pid {os.getpid()} started {time.time():.3f}\n".encode())
            return fd, lock
        os.close(fd)  # a sweeper took it for an orphan between mkstemp and flock: take another name


@contextlib.contextmanager
def staging_folder(parent: Path, prefix: str) -> Iterator[Path]:
    """A new, empty folder ``parent/<prefix><random>`` owned by this process until the block ends.

    Parameters
    ----------
    parent : Path
        Where to stage; created if missing.
    prefix : str
        The start of the folder's name; :func:`sweep_stale` is given the same one.

    Yields
    ------
    Path
        The folder. Rename it into place inside the block to keep it; whatever is still there at the
        end of the block is removed, then the lock is released.
    """
    parent.mkdir(parents=True, exist_ok=True)
    fd, lock = _new_lock(parent, prefix)
    folder = lock.with_name(lock.name[: -len(LOCK_SUFFIX)])
    try:
        folder.mkdir()  # the lock's name is unique, so this one is too unless a crash left one behind
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        lock.unlink(missing_ok=True)
        os.close(fd)


def sweep_stale(parent: Path, prefix: str = "") -> list[Path]:
    """Remove the staging folders under ``parent`` whose writer is gone (and their lock files).

    Parameters
    ----------
    parent : Path
        The folder :func:`staging_folder` staged in; nothing happens when it does not exist.
    prefix : str
        Only entries whose name starts with it are considered.

    Returns
    -------
    list of Path
        The folders removed (a lone lock file of a dead writer is removed too, and not listed).
    """
    if not parent.is_dir():
        return []
    removed = []
    for entry in sorted(parent.iterdir()):
        if not entry.name.startswith(prefix) or entry.name.endswith(LOCK_SUFFIX):
            continue
        if entry.is_dir() and _sweep_one(entry, entry.with_name(entry.name + LOCK_SUFFIX)):
            removed.append(entry)
    for lock in sorted(parent.glob(f"{prefix}*{LOCK_SUFFIX}")):
        folder = lock.with_name(lock.name[: -len(LOCK_SUFFIX)])
        if not folder.exists():
            _sweep_one(folder, lock)
    return removed


def _sweep_one(folder: Path, lock: Path) -> bool:
    if not lock.exists():
        # a live writer makes its lock before its folder and removes it after: no lock, no writer
        shutil.rmtree(folder, ignore_errors=True)
        return True
    fd = _try_lock(lock)
    if fd is None:
        return False  # alive
    try:
        shutil.rmtree(folder, ignore_errors=True)
        lock.unlink(missing_ok=True)
    finally:
        os.close(fd)
    return True
