"""Bundles as OCFL 1.1 objects, checked by an independent validator (ocfl-py's), on a folder and on a real
S3 API server: audits as new versions, concurrent writers, and a writer killed mid-write."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ocfl.storage_root import StorageRoot
from ocfl.validator import Validator

from parity.archive import CONTENT, Archive, ocfl
from parity.archive.storage import LOCKS
from tests.s3_server import exported
from tests.waiting import wait_for

IDENTITY = {"model_sha256": "a" * 64, "reference_sha256": "b" * 64}
FILES = {"model.pmml": b"<PMML/>\n", "report.json": b'{"schema": 2}\n', "notes.txt": b"hello\n"}
#: A writer that stores a large bundle takes seconds on the S3 server, long enough to be killed mid-way.
KILL_DEADLINE_S = 120


def ocfl_valid(location: str) -> tuple[bool, str]:
    """ocfl-py's verdict on one object (a folder or an s3:// URL), warnings included in the text."""
    validator = Validator(log_warnings=True)
    return validator.validate_object(location), validator.status_str()


def _archive(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Archive:
    if kind == "folder":
        return Archive(tmp_path / "archive")
    return Archive(request.getfixturevalue("s3_archive"))


@pytest.fixture(params=["folder", "s3"])
def shelf(request: pytest.FixtureRequest, tmp_path: Path) -> Archive:
    return _archive(request.param, tmp_path, request)


def test_a_bundle_is_a_valid_ocfl_object_and_its_audits_are_new_versions(shelf):
    result = shelf.write_bundle("iris-lr", 1, FILES, IDENTITY)
    assert result.written and result.path == shelf.object_url("iris-lr", 1)
    valid, status = ocfl_valid(result.path)
    assert valid, status
    inventory = shelf.inventory("iris-lr", 1)
    assert inventory is not None and inventory.head == 1 and inventory.id == "parity:iris-lr:1"
    assert set(inventory.state()) == {*FILES, "manifest.json"}
    # the digests are the SHA-512 of the bytes, under v1/content
    for logical, content_path in inventory.state().items():
        assert content_path == f"{CONTENT}/{logical}"
        data = shelf.read("iris-lr", 1, logical)
        assert inventory.digest_of(content_path) == hashlib.sha512(data).hexdigest()
    v1 = {rel: shelf.store.read(f"iris-lr/1/v1/{rel}") for rel in shelf.store.files("iris-lr/1/v1")}

    assert shelf.append_audit("iris-lr", 1, b'{"status": "ok"}\n', when="20261203T000000Z") == 2
    assert shelf.append_audit("iris-lr", 1, b'{"status": "drift"}\n', when="20261210T000000Z") == 3
    valid, status = ocfl_valid(result.path)
    assert valid, status
    head = shelf.inventory("iris-lr", 1)
    assert head is not None and head.head == 3
    assert head.state()["audits/20261210T000000Z.json"] == "v3/content/audits/20261210T000000Z.json"
    assert head.state(2).keys() == {*FILES, "manifest.json", "audits/20261203T000000Z.json"}
    # v1 is never rewritten: its files and inventory are byte for byte what they were
    assert {rel: shelf.store.read(f"iris-lr/1/v1/{rel}") for rel in shelf.store.files("iris-lr/1/v1")} == v1
    assert shelf.read("iris-lr", 1, "report.json") == FILES["report.json"]


def test_the_storage_root_validates_with_bundles_rejected_attempts_and_audits(tmp_path):
    shelf = Archive(tmp_path / "archive")
    shelf.write_bundle("iris-lr", 1, FILES, IDENTITY)
    shelf.write_bundle("iris-lr", 2, FILES, IDENTITY)
    shelf.write_rejected("iris-lr", 3, FILES, IDENTITY)
    shelf.write_rejected("iris-lr", 3, FILES, IDENTITY)
    shelf.append_audit("iris-lr", 1, b"{}")
    root = StorageRoot(str(shelf.root))
    assert root.validate(), root.log
    assert (root.num_objects, root.good_objects) == (4, 4)


def test_a_damaged_object_is_invalid_for_both_validators(tmp_path):
    shelf = Archive(tmp_path / "archive")
    obj = Path(shelf.write_bundle("iris-lr", 1, FILES, IDENTITY).path)
    (obj / "inventory.json.sha512").write_text("0" * 128 + "  inventory.json\n")
    assert not ocfl_valid(str(obj))[0]
    assert shelf.check(obj / CONTENT) == ["inventory.json: its SHA-512 differs from inventory.json.sha512"]


def test_an_interrupted_audit_version_is_rolled_forward_or_removed(tmp_path):
    shelf = Archive(tmp_path / "archive")
    obj = Path(shelf.write_bundle("iris-lr", 1, FILES, IDENTITY).path)
    shelf.append_audit("iris-lr", 1, b'{"n": 1}')
    # a crash after v2 was renamed into place but before the root inventory was replaced
    v1_inventory = (obj / "v1" / "inventory.json").read_bytes()
    (obj / "inventory.json").write_bytes(v1_inventory)
    (obj / "inventory.json.sha512").write_bytes(ocfl.sidecar(v1_inventory))
    assert not ocfl_valid(str(obj))[0]  # v2 is there but not in the root inventory
    assert shelf.append_audit("iris-lr", 1, b'{"n": 2}') == 3  # rolled forward to v2, then v3 added
    assert ocfl_valid(str(obj))[0]
    # a crash half-way through writing v4 (no inventory yet): removed, and v4 written whole
    (obj / "v4" / "content").mkdir(parents=True)
    (obj / "v4" / "content" / "half.json").write_bytes(b"{")
    assert shelf.append_audit("iris-lr", 1, b'{"n": 3}') == 4
    assert ocfl_valid(str(obj))[0]
    assert not (obj / "v4" / "content" / "half.json").exists()
    # a crash between replacing the root inventory and its sidecar: the stale sidecar is rewritten by the repair
    # that every audit and every write of the version starts with, so it is never reported as damage
    (obj / "inventory.json.sha512").write_bytes((obj / "v3" / "inventory.json.sha512").read_bytes())
    assert shelf.check(obj / CONTENT) == ["inventory.json: its SHA-512 differs from inventory.json.sha512"]
    shelf.repair("iris-lr", 1)
    assert shelf.check(obj / CONTENT) == [] and ocfl_valid(str(obj))[0]
    # damage in a committed version is not undone by a repair: it is reported
    (obj / "v2" / "inventory.json").write_bytes(b"{}")
    shelf.repair("iris-lr", 1)
    assert shelf.inventory("iris-lr", 1).head == 4 and not ocfl_valid(str(obj))[0]


# -- object storage: no rename ----------------------------------------------------------------------------
def _released(shelf: Archive) -> bool:
    """Whether every lock generation left in the store is released (the highest stays, so that no number is
    ever taken twice)."""
    files = shelf.store.files(LOCKS)
    held = {f.removesuffix(".json") for f in files if f.endswith(".json")}
    return bool(held) and held == {f.removesuffix(".released") for f in files if f.endswith(".released")}


def _writer_script(url: str, name: str, files: dict[str, int], tag: str) -> str:
    """A process that writes one bundle of ``files`` (name → size in bytes) and prints what it did."""
    return textwrap.dedent(
        f"""
        import json, sys
        from parity.archive import Archive
        files = {{n: (b"{tag}" * size)[:size] for n, size in {files!r}.items()}}
        result = Archive({url!r}).write_bundle({name!r}, 1, files, {IDENTITY!r})
        print(json.dumps({{"written": result.written, "path": result.path}}))
        """
    )


def _start_writer(s3_api, url: str, name: str, files: dict[str, int], tag: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _writer_script(url, name, files, tag)],
        env=exported(s3_api),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_concurrent_writers_of_one_version_on_s3_make_exactly_one_bundle(s3_api, s3_archive):
    files = {f"part-{i}.bin": 2_000_000 for i in range(4)} | {"report.json": 64}
    writers = [_start_writer(s3_api, s3_archive, "raced", files, tag) for tag in ("A", "B", "C")]
    results = []
    for writer in writers:
        out, err = writer.communicate(timeout=600)
        assert writer.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["written"] for r in results) == [False, False, True]
    shelf = Archive(s3_archive)
    valid, status = ocfl_valid(shelf.object_url("raced", 1))
    assert valid, status
    # the bundle is one writer's, whole: every file holds the same writer's tag
    tags = {shelf.read("raced", 1, name)[:1] for name in files}
    assert len(tags) == 1 and tags <= {b"A", b"B", b"C"}
    assert _released(shelf)  # every lock released
    assert shelf.versions() == [("raced", 1)]


@pytest.mark.slow
def test_kill_9_during_a_write_to_s3_leaves_no_bundle_and_a_rerun_completes_it(s3_api, s3_archive):
    shelf = Archive(s3_archive)
    # content files are written in name order, the big ones after the small
    files = {"a-report.json": 64} | {f"b-part-{i}.bin": 4_000_000 for i in range(12)}
    writer = _start_writer(s3_api, s3_archive, "killed", files, "K")
    wait_for(
        lambda: writer.poll() is not None or shelf.store.exists(f"killed/1/{CONTENT}/a-report.json"),
        KILL_DEADLINE_S,
        "the writer's first content file on S3",
        every=0.05,
    )
    os.killpg(writer.pid, signal.SIGKILL)
    writer.communicate()
    assert writer.returncode == -signal.SIGKILL, "the writer finished before it could be killed"
    # what it left never reads as a bundle
    assert not shelf.store.exists(f"killed/1/{ocfl.SIDECAR}")
    assert shelf.store.files("killed/1"), "the writer was killed before it wrote anything"
    assert not shelf.is_archived("killed", 1) and shelf.versions() == []
    assert not ocfl_valid(shelf.object_url("killed", 1))[0]
    assert shelf.store.files(LOCKS), "the dead writer's lock is still there"
    # the next run sees the lock's owner is gone, takes it over and writes the bundle whole
    payload = {name: (b"R" * size)[:size] for name, size in files.items()}
    result = shelf.write_bundle("killed", 1, payload, IDENTITY)
    assert result.written
    valid, status = ocfl_valid(result.path)
    assert valid, status
    assert shelf.read("killed", 1, "b-part-11.bin") == payload["b-part-11.bin"]
    assert set(shelf.inventory("killed", 1).state()) == {*files, "manifest.json"}
    assert _released(shelf)


def test_an_unknown_url_scheme_is_a_clear_error():
    from parity.core.errors import ArchiveError

    with pytest.raises(ArchiveError, match=r"--archive nosuch://x: fsspec cannot open this URL"):
        Archive("nosuch://x")


def test_the_object_store_lock_is_held_by_one_writer_at_a_time_and_generations_only_grow():
    import threading
    import uuid

    from parity.archive.storage import open_store

    store = open_store(f"memory://locks-{uuid.uuid4().hex}")
    inside, most, taken = [0], [0], []
    guard = threading.Lock()

    def writer() -> None:
        for _ in range(5):
            with store.locked("m/1") as held:
                assert held is not None
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                    taken.append(held.generation)
                store.write("work", uuid.uuid4().bytes)  # some I/O while holding it
                with guard:
                    inside[0] -= 1

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert most[0] == 1 and sorted(taken) == list(range(1, 21)) and len(set(taken)) == 20
    # a holder that is certainly gone (a process of this host that no longer runs) is taken over
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    owner = {"host": os.uname().nodename, "pid": int(dead.stdout), "started": 0.0, "since": 1e12}
    from parity.archive import storage

    owner |= {"boot": storage._boot_id(), "pidns": storage._pid_namespace()}
    store.write(f"{LOCKS}/m/1/{21:08d}.json", json.dumps(owner).encode())
    with store.locked("m/1") as held:
        assert held is not None and held.generation == 22


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda inv: inv["manifest"].update({"f" * 128: ["v1/content/../../escape.txt"]}), "content path"),
        (
            lambda inv: inv["versions"]["v1"]["state"].update({"f" * 128: ["../out"]}),
            "is not in the manifest",
        ),
        (
            lambda inv: inv["versions"]["v1"]["state"].update({next(iter(inv["manifest"])): ["a/../b"]}),
            "plain",
        ),
        (lambda inv: inv.update(head="v7"), "expected v1..vN with head vN"),
        (lambda inv: inv.pop("manifest"), "no id, manifest or versions"),
    ],
    ids=[
        "content-path-escapes",
        "unknown-digest",
        "logical-path-escapes",
        "head-not-a-version",
        "no-manifest",
    ],
)
def test_an_inventory_with_unsafe_paths_or_a_broken_structure_is_refused(tmp_path, edit, message):
    shelf = Archive(tmp_path / "archive")
    obj = Path(shelf.write_bundle("iris-lr", 1, FILES, IDENTITY).path)
    data = json.loads((obj / "inventory.json").read_bytes())
    edit(data)
    with pytest.raises(ValueError, match=message):
        ocfl.Inventory.from_bytes(json.dumps(data).encode())


@pytest.mark.slow
def test_a_key_on_s3_that_is_not_a_plain_path_is_never_downloaded(s3_archive, tmp_path):
    import boto3

    from parity.core.errors import ArchiveError

    shelf = Archive(s3_archive)
    shelf.write_bundle("iris-lr", 1, FILES, IDENTITY)
    bucket, prefix = s3_archive.removeprefix("s3://").split("/", 1)
    boto3.client("s3").put_object(
        Bucket=bucket, Key=f"{prefix}/iris-lr/1/v1/../../../../escaped.txt", Body=b"x"
    )
    with (
        pytest.raises(ArchiveError, match=r"holds a key that is not a plain relative path"),
        shelf.local_copy("iris-lr", 1),
    ):
        pass
    assert not list(Path("/tmp").glob("escaped.txt")) and not list(tmp_path.rglob("escaped.txt"))
