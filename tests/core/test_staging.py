"""Staging folders: a dead writer's are swept, a live writer's never (a real second process holds one)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from parity.archive import STAGING, Archive
from parity.core.staging import LOCK_SUFFIX, staging_folder, sweep_stale
from parity.registry import FileRegistry

_HOLDER = """
import sys, time
from pathlib import Path
from parity.core.staging import staging_folder
with staging_folder(Path(sys.argv[1]), sys.argv[2]) as folder:
    (folder / "partial").write_bytes(b"x")
    print(folder, flush=True)
    time.sleep(3600)
"""


def _holder(parent: Path, prefix: str) -> tuple[subprocess.Popen[str], Path]:
    """A second process that stages a folder and keeps it, printing where it is."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(parent), prefix], stdout=subprocess.PIPE, text=True
    )
    # readline() returns at the first line or at the child's exit; the test's own timeout bounds a hang
    line = child.stdout.readline() if child.stdout else ""
    assert line, f"the holder process printed nothing (exit {child.poll()})"
    return child, Path(line.strip())


@pytest.fixture
def holder(tmp_path):
    started: list[subprocess.Popen[str]] = []

    def start(parent: Path, prefix: str) -> tuple[subprocess.Popen[str], Path]:
        child, folder = _holder(parent, prefix)
        started.append(child)
        return child, folder

    yield start
    for child in started:
        child.kill()
        child.wait(timeout=60)
        if child.stdout:
            child.stdout.close()


def test_live_writer_folder_survives_and_dead_one_is_swept(tmp_path, holder):
    child, folder = holder(tmp_path, ".staging-m-")
    assert folder.is_dir() and (folder / "partial").is_file()
    assert sweep_stale(tmp_path, ".staging-") == []
    assert folder.is_dir(), "the sweep removed a live writer's folder"

    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=60)
    assert folder.is_dir(), "a killed writer's folder stays until a sweep"
    assert sweep_stale(tmp_path, ".staging-") == [folder]
    assert list(tmp_path.iterdir()) == []


def test_folder_without_lock_file_is_swept(tmp_path):
    legacy = tmp_path / "0123abcd"  # what an earlier Parity left: a bare uuid folder
    legacy.mkdir()
    (legacy / "model.pmml").write_text("<PMML/>")
    assert sweep_stale(tmp_path) == [legacy]
    assert not legacy.exists()


def test_lone_lock_file_of_dead_writer_is_removed(tmp_path):
    (tmp_path / f"x{LOCK_SUFFIX}").write_text("pid 1\n")
    assert sweep_stale(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_own_folder_is_live_in_the_same_process(tmp_path):
    with staging_folder(tmp_path, "p-") as folder:
        assert sweep_stale(tmp_path, "p-") == []
        assert folder.is_dir()
        lock = folder.with_name(folder.name + LOCK_SUFFIX)
        assert f"pid {os.getpid()} " in lock.read_text()
    assert list(tmp_path.iterdir()) == [], "the block's end leaves neither folder nor lock"


def test_other_prefixes_are_left_alone(tmp_path):
    (tmp_path / "churn").mkdir()
    assert sweep_stale(tmp_path, ".staging-") == []
    assert (tmp_path / "churn").is_dir()


def test_registration_sweeps_the_registry_but_not_a_live_one(tmp_path, holder, iris):
    from sklearn.tree import DecisionTreeClassifier

    registry = FileRegistry(tmp_path / "reg")
    _alive, live = holder(registry.root, ".staging-other-")
    dead = registry.root / ".staging-dead-abc"
    dead.mkdir()
    X, y = iris
    registry.register(DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y), X.head(5), "tree")
    assert not dead.exists()
    assert live.is_dir()
    assert sorted(p.name for p in registry.root.iterdir() if not p.name.startswith(".")) == ["tree"]


def test_archive_sweep_and_bundles_hold_no_lock_file(tmp_path, holder):
    archive = Archive(tmp_path / "arc")
    _alive, live = holder(archive.root / STAGING, "")
    dead = archive.root / STAGING / "feedbeef"
    dead.mkdir()
    written = archive.write_bundle("m", 1, {"a.txt": b"a"}, {"model_sha256": "0", "reference_sha256": "0"})
    assert archive.check(written.content) == []
    assert archive.sweep_staging() == [dead]
    assert live.is_dir()
    assert sorted(p.name for p in (archive.root / STAGING).iterdir()) == sorted(
        [live.name, live.name + LOCK_SUFFIX]
    )
