"""``parity archive migrate``: legacy bundles become OCFL objects holding exactly their old files."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import uuid
from pathlib import Path

import bagit
import pytest
from ocfl.storage_root import StorageRoot
from ocfl.validator import Validator

from parity.archive import CONTENT, MANIFEST, Archive
from parity.archive import migrate as migration
from parity.archive.bundle import STAGING
from parity.archive.migrate import ASIDE, Migration, Result, migrate, object_problems
from parity.archive.ocfl import INVENTORY, SIDECAR, Inventory, new_version, sidecar
from parity.cli.app import main
from parity.cli.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from parity.core.records import Manifest

FIXTURE = Path(__file__).parents[1] / "fixtures" / "schema-1" / "archive"
BUNDLE = FIXTURE / "iris-tree" / "1"
STAMP = "20261201T000000000000Z-0a1b2c3d"
ATTEMPT = f"_rejected/iris-tree/1/{STAMP}"


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    """A copy of the schema-1 archive, with a copy of its bundle as a legacy rejected attempt too."""
    root = tmp_path / "archive"
    shutil.copytree(FIXTURE, root)
    shutil.copytree(BUNDLE, root / ATTEMPT)
    return root


def _table(text: str, footer: int = 1) -> list[dict[str, str]]:
    """The rows of a table the CLI printed (less ``footer`` lines after it), cut at its dashed rule's columns."""
    lines = [line for line in text.splitlines() if line.strip()]
    spans = [m.span() for m in re.finditer(r"-+", lines[1])]
    header = [lines[0][a:b].strip() for a, b in spans]
    return [
        {h: line[a:b].strip() for h, (a, b) in zip(header, spans, strict=True)}
        for line in lines[2 : len(lines) - footer]
    ]


def _aside(root: Path) -> list[str]:
    """What is kept aside (the migration's lock file is not)."""
    base = root / ASIDE
    return [p.relative_to(base).as_posix() for p in base.rglob("*") if p.name != "migrate.lock"]


def _valid_object(path: Path) -> bool:
    validator = Validator()
    return bool(validator.validate_object(str(path))) or pytest.fail(validator.status_str())


def test_migrate_makes_valid_objects_of_exactly_the_old_files(legacy, capsys):
    old = _files(BUNDLE)
    assert main(["archive", "migrate", "--archive", str(legacy)]) == EXIT_OK
    out = capsys.readouterr().out
    assert _table(out) == [
        {"name": "iris-tree", "version": "1", "files": "8", "result": "migrated"},
        {
            "name": "iris-tree",
            "version": f"1 (rejected attempt {STAMP})",
            "files": "8",
            "result": "migrated",
        },
    ]
    assert out.splitlines()[-1] == "2 migrated, 0 damaged (left as they are)"
    for key, object_id in (
        ("iris-tree/1", "parity:iris-tree:1"),
        (ATTEMPT, f"parity:iris-tree:1:rejected:{STAMP}"),
    ):
        obj = legacy / key
        assert _valid_object(obj)
        assert _files(obj / CONTENT) == old  # every file, byte for byte, and nothing else
        inventory = Inventory.from_bytes((obj / INVENTORY).read_bytes())
        assert inventory.id == object_id and inventory.head == 1
        assert sorted(p.name for p in obj.iterdir()) == ["0=ocfl_object_1.1", INVENTORY, SIDECAR, "v1"]
        assert Archive.check(obj) == []
    assert StorageRoot(str(legacy)).validate()
    shelf = Archive(legacy)
    assert (
        not shelf.is_legacy("iris-tree", 1) and shelf.read("iris-tree", 1, "model.pmml") == old["model.pmml"]
    )
    assert shelf.rejected("iris-tree", 1) == [ATTEMPT]
    assert _aside(legacy) == [] and list((legacy / STAGING).iterdir()) == []


def test_a_second_migration_changes_nothing(legacy, capsys):
    assert len(migrate(Archive(legacy))) == 2
    before = {p: p.stat().st_mtime_ns for p in legacy.rglob("*")}
    assert main(["archive", "migrate", "--archive", str(legacy)]) == EXIT_OK
    assert "nothing to migrate" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in legacy.rglob("*")} == before


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda b: (b / "report.json").write_bytes(b"{}"), "report.json: SHA-256 differs from the manifest"),
        (lambda b: (b / "model.onnx").unlink(), "model.onnx: missing"),
        (lambda b: (b / "notes.txt").write_bytes(b"stowaway"), "notes.txt: not in the manifest"),
    ],
    ids=["changed", "missing", "extra"],
)
def test_a_damaged_legacy_bundle_is_reported_and_left_as_is(legacy, capsys, damage, problem):
    damage(legacy / "iris-tree" / "1")
    before = _files(legacy / "iris-tree" / "1")
    assert main(["archive", "migrate", "--archive", str(legacy)]) == EXIT_FAILED
    out = capsys.readouterr().out
    assert _table(out)[0]["result"] == f"damaged: {problem}"
    assert out.splitlines()[-1] == "1 migrated, 1 damaged (left as they are)"
    assert _files(legacy / "iris-tree" / "1") == before
    assert Archive(legacy).is_legacy("iris-tree", 1)
    assert _valid_object(legacy / ATTEMPT)  # the sound one was migrated all the same


def test_identical_files_are_each_kept_under_their_own_name(tmp_path):
    root = tmp_path / "archive"
    files = {"a.txt": b"same\n", "b.txt": b"same\n", "report.json": b"{}"}
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    manifest = Manifest(identity={"model_sha256": "a" * 64, "reference_sha256": "b" * 64}, files=digests)
    (root / "m" / "1").mkdir(parents=True)
    for name, data in {**files, MANIFEST: manifest.to_bytes()}.items():
        (root / "m" / "1" / name).write_bytes(data)
    assert [m.result for m in migrate(Archive(root))] == [Result.MIGRATED]
    assert _files(root / "m" / "1" / CONTENT) == {**files, MANIFEST: manifest.to_bytes()}
    assert _valid_object(root / "m" / "1")


# -- the hash-by-hash check ------------------------------------------------------------------------------
def _object(old: dict[str, bytes]) -> dict[str, bytes]:
    return new_version(old, "parity:iris-tree:1", migration.MESSAGE)[1]


def _reinventory(out: dict[str, bytes], edit) -> None:
    """Change the root inventory (and its sidecar, so only the planted difference remains)."""
    data = Inventory.from_bytes(out[INVENTORY]).data
    edit(data)
    out[INVENTORY] = Inventory(data).to_bytes()
    out[SIDECAR] = sidecar(out[INVENTORY])


def _plant_sha512(out: dict[str, bytes]) -> None:
    def edit(data):
        digest = next(d for d, p in data["manifest"].items() if p == [f"{CONTENT}/model.pmml"])
        data["manifest"]["0" * 128] = data["manifest"].pop(digest)
        for version in data["versions"].values():
            version["state"]["0" * 128] = version["state"].pop(digest)

    _reinventory(out, edit)


PLANTED = {
    "copy-differs": (
        lambda out: out.__setitem__(f"{CONTENT}/model.pmml", out[f"{CONTENT}/model.pmml"] + b" "),
        "model.pmml: the copy's SHA-256 differs from the legacy bundle's",
    ),
    "copy-missing": (
        lambda out: out.pop(f"{CONTENT}/model.skops"),
        "model.skops: not copied into v1/content",
    ),
    "inventory-sha512": (_plant_sha512, "model.pmml: the copy's SHA-512 differs from inventory.json"),
    "sidecar": (
        lambda out: out.__setitem__(SIDECAR, b"0" * 128 + b"  inventory.json\n"),
        "inventory.json: its SHA-512 differs from inventory.json.sha512",
    ),
    "stowaway": (
        lambda out: out.update(_object({**_files(BUNDLE), "extra.txt": b"x"})),
        "extra.txt: not in the legacy bundle",
    ),
}


@pytest.mark.parametrize("plant", PLANTED.values(), ids=PLANTED.keys())
def test_object_check_catches_a_planted_difference(plant):
    old = _files(BUNDLE)
    out = _object(old)
    assert object_problems(old, out.get, sorted(out)) == []
    change, problem = plant
    change(out)
    assert problem in object_problems(old, out.get, sorted(out))


def test_a_copy_that_differs_is_never_swapped_in(legacy, monkeypatch):
    """A fault planted between building the object and checking it: the legacy bundle stays."""
    real = migration.ocfl.new_version

    def flipping(files, *args):
        inventory, out = real(files, *args)
        out[f"{CONTENT}/model.pmml"] = out[f"{CONTENT}/model.pmml"].replace(b"PMML", b"PMMX", 1)
        return inventory, out

    monkeypatch.setattr(migration.ocfl, "new_version", flipping)
    before = _files(legacy / "iris-tree" / "1")
    done = migration.migrate_one(Archive(legacy), "iris-tree/1")
    assert done.result is Result.DAMAGED
    assert done.problems[0] == "model.pmml: the copy's SHA-256 differs from the legacy bundle's"
    assert _files(legacy / "iris-tree" / "1") == before
    assert _aside(legacy) == [] and list((legacy / STAGING).iterdir()) == []


# -- crashes between the renames -------------------------------------------------------------------------
def test_a_crash_after_renaming_aside_puts_the_old_bundle_back(legacy):
    aside = legacy / ASIDE / "iris-tree" / "1"
    aside.parent.mkdir(parents=True)
    os.rename(legacy / "iris-tree" / "1", aside)  # where the crash left it: nothing at iris-tree/1
    done = migrate(Archive(legacy))
    assert done[0] == Migration("iris-tree/1", 8, Result.RECOVERED)
    assert [m.result for m in done[1:]] == [Result.MIGRATED, Result.MIGRATED]
    assert _files(legacy / "iris-tree" / "1" / CONTENT) == _files(BUNDLE)
    assert not aside.exists()


def test_a_crash_after_renaming_in_removes_the_old_copy(legacy):
    migrate(Archive(legacy))
    aside = legacy / ASIDE / "iris-tree" / "1"
    shutil.copytree(BUNDLE, aside)  # where the crash left it: the object in place, the old copy aside
    before = _files(legacy / "iris-tree" / "1")
    assert migrate(Archive(legacy)) == [Migration("iris-tree/1", 8, Result.RECOVERED)]
    assert _aside(legacy) == []
    assert _files(legacy / "iris-tree" / "1") == before


def test_an_old_copy_that_differs_from_the_object_in_place_is_kept(legacy, capsys):
    migrate(Archive(legacy))
    aside = legacy / ASIDE / "iris-tree" / "1"
    shutil.copytree(BUNDLE, aside)
    (aside / "model.pmml").write_bytes(b"<PMML/>")
    assert main(["archive", "migrate", "--archive", str(legacy)]) == EXIT_FAILED
    result = _table(capsys.readouterr().out)[0]["result"]
    assert result.startswith("damaged: model.pmml: the copy's SHA-256 differs from the legacy bundle's")
    assert result.endswith(f"the legacy bundle is kept at {aside}")
    assert _files(aside)["model.pmml"] == b"<PMML/>"


def test_a_second_migration_at_once_is_refused(legacy, capsys):
    lock = legacy / ASIDE / "migrate.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what a running `parity archive migrate` holds
        assert main(["archive", "migrate", "--archive", str(legacy)]) == EXIT_USAGE
        assert "another `parity archive migrate` is running" in capsys.readouterr().err
        assert Archive(legacy).is_legacy("iris-tree", 1)
    assert main(["archive", "migrate", "--archive", str(legacy)]) == EXIT_OK


def test_the_archive_group_lists_its_commands(capsys):
    assert main(["archive", "--help"]) == EXIT_OK
    out = capsys.readouterr().out
    for name in ("ls", "show", "migrate"):
        assert f"  {name} " in out


# -- object storage (fsspec's in-memory filesystem: no rename, conditional writes) ------------------------
@pytest.fixture
def remote() -> Archive:
    shelf = Archive(f"memory://parity-{uuid.uuid4().hex[:8]}")
    for rel, data in _files(BUNDLE).items():
        shelf.store.write(f"iris-tree/1/{rel}", data)
    yield shelf
    shelf.store.remove("")


def _object_files(shelf: Archive, key: str) -> dict[str, bytes]:
    return {rel: shelf.store.read(f"{key}/{rel}") for rel in shelf.store.files(key)}


def test_migrate_on_object_storage_replaces_the_legacy_files(remote, tmp_path):
    assert remote.is_legacy("iris-tree", 1)
    assert migrate(remote) == [Migration("iris-tree/1", 8, Result.MIGRATED)]
    files = _object_files(remote, "iris-tree/1")
    assert {rel for rel in files if "/" not in rel} == {"0=ocfl_object_1.1", INVENTORY, SIDECAR}
    assert {
        rel.removeprefix(f"{CONTENT}/"): d for rel, d in files.items() if rel.startswith(CONTENT)
    } == _files(BUNDLE)
    local = remote.store.download("iris-tree/1", tmp_path / "copy")
    assert _valid_object(local) and Archive.check(local) == []
    assert migrate(remote) == []


def test_a_migration_killed_before_its_sidecar_is_done_again(remote, tmp_path):
    *body, _ = _object(_files(BUNDLE)).items()  # all but the sidecar, the commit point
    for rel, data in body:
        remote.store.write(f"iris-tree/1/{rel}", data)
    assert remote.is_legacy("iris-tree", 1)  # the partial object never reads as one
    assert migrate(remote) == [Migration("iris-tree/1", 8, Result.MIGRATED)]
    assert _valid_object(remote.store.download("iris-tree/1", tmp_path / "copy"))


def test_a_legacy_rejected_attempt_on_object_storage_is_migrated(remote):
    for rel, data in _files(BUNDLE).items():
        remote.store.write(f"{ATTEMPT}/{rel}", data)
    assert [m.key for m in migrate(remote)] == ["iris-tree/1", ATTEMPT]
    assert remote.rejected("iris-tree", 1) == [ATTEMPT]
    assert Inventory.from_bytes(remote.store.read(f"{ATTEMPT}/{INVENTORY}")).id.endswith(f":rejected:{STAMP}")
    assert not remote.store.exists(f"{ATTEMPT}/{MANIFEST}")


def test_legacy_files_left_beside_a_migrated_object_are_removed(remote):
    migrate(remote)
    for rel, data in _files(BUNDLE).items():  # a crash after the sidecar, before the deletions
        remote.store.write(f"iris-tree/1/{rel}", data)
    assert not remote.is_legacy("iris-tree", 1)
    assert migrate(remote) == [Migration("iris-tree/1", 8, Result.RECOVERED)]
    assert not remote.store.exists(f"iris-tree/1/{MANIFEST}")
    assert remote.store.exists(f"iris-tree/1/{CONTENT}/{MANIFEST}")


def test_migrate_ls_and_export_on_a_real_s3_api(s3_archive, tmp_path, capsys):
    """The whole path on S3 (moto's server): a legacy bundle migrated, listed, exported as a bag."""
    shelf = Archive(s3_archive)
    for rel, data in _files(BUNDLE).items():
        shelf.store.write(f"iris-tree/1/{rel}", data)
    assert main(["archive", "migrate", "--archive", s3_archive]) == EXIT_OK
    assert _table(capsys.readouterr().out)[0]["result"] == "migrated"
    validator = Validator(log_warnings=True)
    assert validator.validate_object(f"{s3_archive}/iris-tree/1"), validator.status_str()
    # the lock is released (its highest generation stays, marked released, so that no number is taken twice)
    left = shelf.store.files("extensions")
    assert left and all(f.startswith("parity-locks/") for f in left)
    assert {f.removesuffix(".json") for f in left if f.endswith(".json")} == {
        f.removesuffix(".released") for f in left if f.endswith(".released")
    }
    assert main(["archive", "ls", "--archive", s3_archive]) == EXIT_OK
    [row] = _table(capsys.readouterr().out, footer=0)
    assert (row["name"], row["verdict"], row["layout"]) == ("iris-tree", "passed", "ocfl")
    assert (
        main(["export", "--bagit", "iris-tree:1", str(tmp_path / "bag"), "--archive", s3_archive]) == EXIT_OK
    )
    bagit.Bag(str(tmp_path / "bag")).validate()
    assert _files(tmp_path / "bag" / "data") == _files(BUNDLE)


def _top(shelf: Archive, key: str = "iris-tree/1") -> set[str]:
    return {rel for rel in shelf.store.files(key) if "/" not in rel}


@pytest.mark.parametrize(
    "left",
    [[MANIFEST], ["model.onnx", "report.json"], sorted(set(_files(BUNDLE)) - {MANIFEST})],
    ids=["manifest-only", "two-files", "all-but-the-manifest"],
)
def test_any_subset_of_legacy_files_left_after_the_sidecar_is_removed(remote, tmp_path, left):
    migrate(remote)
    for rel in left:  # killed while deleting the legacy files: these were not deleted yet
        remote.store.write(f"iris-tree/1/{rel}", _files(BUNDLE)[rel])
    assert migrate(remote) == [Migration("iris-tree/1", len(left), Result.RECOVERED)]
    assert _top(remote) == {"0=ocfl_object_1.1", INVENTORY, SIDECAR}
    assert _valid_object(remote.store.download("iris-tree/1", tmp_path / "copy"))
    assert migrate(remote) == []


def test_a_leftover_that_differs_from_its_copy_is_kept_and_reported(remote, capsys):
    migrate(remote)
    remote.store.write("iris-tree/1/report.json", _files(BUNDLE)["report.json"])
    remote.store.write("iris-tree/1/model.onnx", b"not the validated model")
    [done] = migrate(remote)
    assert (done.result, done.files) == (Result.DAMAGED, 2)
    assert done.problems == (
        f"model.onnx: left beside the object, differs from its v1 copy ({CONTENT}/model.onnx); kept",
    )
    assert _top(remote) == {"0=ocfl_object_1.1", INVENTORY, SIDECAR, "model.onnx"}
    assert main(["archive", "migrate", "--archive", remote.location]) == EXIT_FAILED
    assert "model.onnx: left beside the object" in capsys.readouterr().out


def test_leftovers_beside_an_object_that_does_not_verify_are_kept(remote):
    migrate(remote)
    remote.store.write(f"iris-tree/1/{CONTENT}/model.skops", b"damaged copy")
    remote.store.write("iris-tree/1/report.json", _files(BUNDLE)["report.json"])
    [done] = migrate(remote)
    assert done.result is Result.DAMAGED
    assert done.problems[0].startswith("model.skops: SHA-512 differs from inventory.json")
    assert done.problems[-1] == "1 legacy files kept beside it: report.json"
    assert "report.json" in _top(remote)


def test_leftovers_beside_an_object_with_a_malformed_inventory_are_kept(remote):
    migrate(remote)
    raw = remote.store.read(f"iris-tree/1/{INVENTORY}").replace(b'"manifest"', b'"no-manifest"')
    remote.store.write(f"iris-tree/1/{INVENTORY}", raw)
    remote.store.write(f"iris-tree/1/{SIDECAR}", sidecar(raw))
    remote.store.write("iris-tree/1/report.json", _files(BUNDLE)["report.json"])
    [done] = migrate(remote)
    assert done.result is Result.DAMAGED
    assert done.problems == (
        f"{INVENTORY}: malformed (ValueError: no id, manifest or versions)",
        "1 legacy files kept beside it: report.json",
    )
    assert "report.json" in _top(remote)
