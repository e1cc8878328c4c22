"""``parity archive ls`` / ``show`` and ``parity export --bagit``, on real bundles (folder and object store)."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path

import bagit
import pytest
from sklearn.linear_model import LogisticRegression

from parity.archive import Archive, file_model
from parity.archive.export import export_bagit, head_files
from parity.archive.listing import entries, human_size, parse_ref
from parity.archive.ocfl import INVENTORY, SIDECAR, sidecar
from parity.cli.app import main
from parity.cli.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from parity.core.errors import IntegrityError, InvalidInputError
from parity.core.records import BundleAudit, Check, Outcome, Report, Verdict
from parity.registry import FileRegistry

FIXTURE = Path(__file__).parents[1] / "fixtures" / "schema-1" / "archive"
WHEN = "20261203T101500000000Z"
CELL = {"format": "onnx", "runtime": "onnxruntime", "output": "predict"}


def _table(text: str) -> list[dict[str, str]]:
    """The rows of a table the CLI printed, cut at the columns its dashed rule marks."""
    lines = [line for line in text.splitlines() if line.strip()]
    spans = [m.span() for m in re.finditer(r"-+", lines[1])]
    header = [lines[0][a:b].strip() for a, b in spans]
    return [{h: line[a:b].strip() for h, (a, b) in zip(header, spans, strict=True)} for line in lines[2:]]


def _fill(shelf: Archive, registry: FileRegistry, iris) -> None:
    """iris-lr:1 archived after one rejected attempt, with one audit that found drift."""
    model = LogisticRegression(max_iter=500).fit(*iris)
    registered = registry.open(registry.register(model, iris[0], "iris-lr"))
    file_model(shelf, registered, {}, [Check(**CELL, verdict=Verdict.FAIL)])
    file_model(shelf, registered, {}, [Check(**CELL, verdict=Verdict.PASS)])
    found = BundleAudit(name="iris-lr", version=1, path="-", drift=["onnx/onnxruntime/predict"], replayed=1)
    shelf.append_audit("iris-lr", 1, json.dumps(found.to_json()).encode(), when=WHEN)


@pytest.fixture(scope="module")
def filled(tmp_path_factory, iris) -> Path:
    """A folder archive, made once: the schema-1 fixture (a legacy bundle) and a new bundle beside it."""
    base = tmp_path_factory.mktemp("filled")
    shutil.copytree(FIXTURE, base / "archive")
    _fill(Archive(base / "archive"), FileRegistry(base / "registry"), iris)
    return base / "archive"


@pytest.fixture
def shelf(filled: Path, tmp_path: Path) -> Archive:
    """A copy of :func:`filled` for one test."""
    shutil.copytree(filled, tmp_path / "archive")
    return Archive(tmp_path / "archive")


@pytest.fixture
def remote(tmp_path: Path, iris) -> Archive:
    shelf = Archive(f"memory://parity-{uuid.uuid4().hex[:8]}")
    _fill(shelf, FileRegistry(tmp_path / "remote-registry"), iris)
    yield shelf
    shelf.store.remove("")


# -- ls --------------------------------------------------------------------------------------------------
def test_ls_shows_one_row_per_archived_version(shelf, capsys):
    assert main(["archive", "ls", "--archive", str(shelf.root)]) == EXIT_OK
    rows = _table(capsys.readouterr().out)
    assert [(r["name"], r["version"]) for r in rows] == [("iris-lr", "1"), ("iris-tree", "1")]
    lr, tree = rows
    assert (lr["verdict"], lr["formats"], lr["rejected"], lr["layout"]) == ("passed", "-", "1", "ocfl")
    assert lr["last_audit"] == f"{WHEN} drift"
    assert (tree["verdict"], tree["formats"], tree["last_audit"], tree["layout"]) == (
        "passed",
        "onnx, pmml",
        "never",
        "legacy",
    )
    legacy_bytes = sum(p.stat().st_size for p in (FIXTURE / "iris-tree" / "1").iterdir())
    assert tree["size"] == human_size(legacy_bytes) == f"{legacy_bytes / 1024:.1f} KiB"


def test_ls_reads_an_object_store_the_same_way(remote, capsys):
    assert main(["archive", "ls", "--archive", remote.location]) == EXIT_OK
    [row] = _table(capsys.readouterr().out)
    assert (row["name"], row["verdict"], row["rejected"], row["last_audit"]) == (
        "iris-lr",
        "passed",
        "1",
        f"{WHEN} drift",
    )
    [entry] = entries(remote)
    assert entry.size == sum(
        len(remote.store.read(f"iris-lr/1/{f}")) for f in remote.store.files("iris-lr/1")
    )


def test_ls_of_an_empty_archive_says_so(tmp_path, capsys):
    assert main(["archive", "ls", "--archive", str(tmp_path / "none")]) == EXIT_OK
    assert capsys.readouterr().out == f"no bundles in {tmp_path / 'none'}\n"


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (3 << 30, "3.0 GiB")]
)
def test_human_size(size, text):
    assert human_size(size) == text


# -- show ------------------------------------------------------------------------------------------------
def test_show_prints_the_bundles_card(tmp_path, capsys):
    shelf = Archive(tmp_path / "archive")
    card = "# iris-lr:1\n\nA card written with the bundle.\n"
    shelf.write_bundle(
        "iris-lr", 1, {"card.md": card.encode()}, {"model_sha256": "a" * 64, "reference_sha256": "b" * 64}
    )
    assert main(["archive", "show", "iris-lr:1", "--archive", str(shelf.root)]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith(card)
    assert out[len(card) :] == f"\n---\nlast audit: never\nlocation: {shelf.object_url('iris-lr', 1)}\n"


def test_show_without_a_card_summarises_report_and_metadata(shelf, capsys):
    assert main(["archive", "show", "iris-tree:1", "--archive", str(shelf.root)]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("(iris-tree:1 has no card.md: a summary from report.json and metadata.json)\n")
    for line in (
        "verdict: passed",
        "estimator: DecisionTreeClassifier",
        "checks: 8 of 8 passed",
        "last audit: never",
    ):
        assert f"\n{line}\n" in out
    # a bundle filed by file_model carries its card: printed, then what the archive knows since
    assert main(["archive", "show", "iris-lr:1", "--archive", str(shelf.root)]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("# iris-lr v1: PASSED") and f"\nlast audit: {WHEN} drift\n" in out


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("iris-lr", "'iris-lr': expected NAME:VERSION, e.g. iris-lr:1"),
        ("iris-lr:one", "'iris-lr:one': expected NAME:VERSION"),
        ("_rejected:1", "'_rejected:1': expected NAME:VERSION"),
        ("iris-lr:7", "iris-lr:7: not archived in .* \\(archived versions of iris-lr: iris-lr:1\\)"),
    ],
    ids=["no-version", "not-a-number", "not-a-name", "unknown"],
)
def test_show_refuses_a_bad_or_unknown_version(shelf, capsys, ref, message):
    assert main(["archive", "show", ref, "--archive", str(shelf.root)]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert re.match(f"parity: error: {message}", captured.err) and "Traceback" not in captured.err


def test_parse_ref():
    assert parse_ref("iris-lr:12") == ("iris-lr", 12)
    with pytest.raises(InvalidInputError, match="expected NAME:VERSION"):
        parse_ref(":1")


# -- export --bagit --------------------------------------------------------------------------------------
def _payload(bag: Path) -> dict[str, bytes]:
    data = bag / "data"
    return {p.relative_to(data).as_posix(): p.read_bytes() for p in sorted(data.rglob("*")) if p.is_file()}


def test_export_writes_a_valid_bag_of_the_head_state(shelf, tmp_path, capsys):
    dest = tmp_path / "bag"
    assert main(["export", "--bagit", "iris-lr:1", str(dest), "--archive", str(shelf.root)]) == EXIT_OK
    assert capsys.readouterr().out == f"iris-lr:1 exported as a BagIt bag: {dest}\n"
    bag = bagit.Bag(str(dest))
    bag.validate()
    content = shelf.bundle_path("iris-lr", 1)
    expected = {p.name: p.read_bytes() for p in content.iterdir()}
    expected[f"audits/{WHEN}.json"] = (
        content.parents[1] / "v2" / "content" / "audits" / f"{WHEN}.json"
    ).read_bytes()
    assert _payload(dest) == expected  # byte for byte: validated files and the audit
    assert bag.info["Source-Organization"] == "Parity"
    assert bag.info["External-Identifier"] == "parity:iris-lr:1"
    assert bag.info["External-Description"] == (
        "Parity bundle of model iris-lr version 1: estimator LogisticRegression, verdict passed"
    )
    assert "Bagging-Date" in bag.info
    assert set(bag.algorithms) == {"sha256", "sha512"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".bag")] == []


def test_export_of_a_legacy_bundle_and_from_an_object_store(shelf, remote, tmp_path):
    legacy = export_bagit(shelf, "iris-tree", 1, tmp_path / "tree")
    bagit.Bag(str(legacy)).validate()
    assert _payload(legacy) == {p.name: p.read_bytes() for p in (FIXTURE / "iris-tree" / "1").iterdir()}
    far = export_bagit(remote, "iris-lr", 1, tmp_path / "far")
    bagit.Bag(str(far)).validate()
    assert _payload(far) == head_files(remote, "iris-lr", 1)
    assert f"audits/{WHEN}.json" in _payload(far)


def test_export_refuses_an_existing_dest(shelf, tmp_path, capsys):
    dest = tmp_path / "taken"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep")
    assert main(["export", "--bagit", "iris-lr:1", str(dest), "--archive", str(shelf.root)]) == EXIT_USAGE
    assert (
        capsys.readouterr().err == f"parity: error: {dest}: already exists; give a new folder for the bag\n"
    )
    assert [p.name for p in dest.iterdir()] == ["mine.txt"]
    orphan = tmp_path / "no" / "bag"
    assert main(["export", "--bagit", "iris-lr:1", str(orphan), "--archive", str(shelf.root)]) == EXIT_USAGE
    assert f"{orphan.parent}: no such folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["iris-lr:1"], "say which format: --bagit"),
        (["--bagit", "iris-lr:9"], "iris-lr:9: no bundle in"),
        (["--bagit", "iris-lr"], "expected NAME:VERSION"),
    ],
    ids=["no-format", "unknown", "bad-ref"],
)
def test_export_refuses_bad_arguments(shelf, tmp_path, capsys, args, message):
    code = main(["export", *args, str(tmp_path / "bag"), "--archive", str(shelf.root)])
    assert code == EXIT_USAGE
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bag").exists()


def test_formats_come_from_the_artifact_files_when_the_report_lists_no_conversion(tmp_path):
    shelf = Archive(tmp_path / "archive")
    report = Report(name="m", version=1, outcome=Outcome.PASSED, validated_at="2026-12-03T10:00:00+00:00",
                    estimator="LinearRegression", reference_rows=3)  # fmt: skip
    files = {"report.json": report.to_bytes(), "model-double.onnx": b"onnx", "model.skops": b"skops"}
    shelf.write_bundle("m", 1, files, {"model_sha256": "a" * 64, "reference_sha256": "b" * 64})
    [entry] = entries(shelf)
    assert (entry.verdict, entry.formats) == ("passed", ("onnx",))
    shelf.write_bundle(
        "m", 2, {"report.json": report.to_bytes()}, {"model_sha256": "c" * 64, "reference_sha256": "b" * 64}
    )
    assert entries(shelf)[1].formats == ()


# -- what the archive holds is data: unsafe paths, damage and malformed inventories are refused ---------------
def _edit_inventory(shelf: Archive, edit, key: str = "iris-lr/1") -> None:
    """Rewrite a bundle's root inventory through ``edit`` (the JSON document), its sidecar to match."""
    inventory = json.loads(shelf.store.read(f"{key}/{INVENTORY}"))
    edit(inventory)
    raw = (json.dumps(inventory, indent=2, sort_keys=True) + "\n").encode()
    shelf.store.write(f"{key}/{INVENTORY}", raw)
    shelf.store.write(f"{key}/{SIDECAR}", sidecar(raw))


def _head_state(inventory: dict) -> dict[str, list[str]]:
    return inventory["versions"][inventory["head"]]["state"]


def _report_digest(inventory: dict) -> str:
    return next(d for d, names in _head_state(inventory).items() if "report.json" in names)


def _escape_the_bag(inventory: dict) -> None:
    _head_state(inventory)[_report_digest(inventory)].append("../../escaped.txt")


def _read_outside(inventory: dict) -> None:
    inventory["manifest"]["ff" * 64] = ["../../../../secret.txt"]
    _head_state(inventory)["ff" * 64] = ["leaked.txt"]


def _unused_path_outside(inventory: dict) -> None:  # a second path for a digest: never read, still refused
    inventory["manifest"][_report_digest(inventory)].append("../../../../secret.txt")


def _outside_content(inventory: dict) -> None:  # a path inside the object, but not a content path
    digest = _report_digest(inventory)
    inventory["manifest"][digest] = ["inventory.json"]


@pytest.mark.parametrize(
    ("edit", "shown"),
    [
        (_escape_the_bag, "'../../escaped.txt'"),
        (_read_outside, "'../../../../secret.txt'"),
        (_unused_path_outside, "'../../../../secret.txt'"),
        (_outside_content, "'inventory.json'"),
    ],
    ids=[
        "logical-path-escapes-the-bag",
        "content-path-escapes-the-object",
        "unused-content-path-escapes",
        "content-path-not-under-content",
    ],
)
def test_export_refuses_an_inventory_path_that_is_not_plain(shelf, tmp_path, capsys, edit, shown):
    (shelf.root.parent / "secret.txt").write_text("not for the bag")
    _edit_inventory(shelf, edit)
    dest = tmp_path / "out" / "bag"
    dest.parent.mkdir()
    assert main(["export", "--bagit", "iris-lr:1", str(dest), "--archive", str(shelf.root)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "inventory.json: unreadable" in err and shown in err
    assert "Traceback" not in err
    assert list(tmp_path.rglob("escaped.txt")) == [] and list(dest.parent.iterdir()) == []


@pytest.mark.parametrize("store", ["folder", "memory"])
def test_export_refuses_a_damaged_bundle_naming_its_files(shelf, remote, tmp_path, store):
    target = shelf if store == "folder" else remote
    path = "iris-lr/1/v1/content/model.skops"
    data = bytearray(target.store.read(path))
    data[100] ^= 0xFF
    target.store.write(path, bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(IntegrityError, match="damaged, not exported") as caught:
        export_bagit(target, "iris-lr", 1, out / "bag")
    assert "model.skops: SHA-512 differs from inventory.json (v1/content/model.skops)" in str(caught.value)
    assert "model.skops: SHA-256 differs from manifest.json" in str(caught.value)
    assert list(out.iterdir()) == []  # no bag, no scratch folder


def test_export_refuses_a_missing_file_and_a_damaged_audit(shelf, tmp_path, capsys):
    shelf.store.remove("iris-lr/1/v1/content/report.json")
    shelf.store.write(f"iris-lr/1/v2/content/audits/{WHEN}.json", b"{}")
    code = main(["export", "--bagit", "iris-lr:1", str(tmp_path / "bag"), "--archive", str(shelf.root)])
    assert code == EXIT_FAILED
    err = capsys.readouterr().err
    assert "report.json: missing (v1/content/report.json)" in err
    assert f"audits/{WHEN}.json: SHA-512 differs from inventory.json (v2/content/audits/{WHEN}.json)" in err


def test_export_refuses_a_damaged_legacy_bundle(shelf, tmp_path):
    (shelf.root / "iris-tree" / "1" / "model.onnx").write_bytes(b"changed")
    (shelf.root / "iris-tree" / "1" / "extra.txt").write_bytes(b"not validated")
    with pytest.raises(IntegrityError, match=r"model\.onnx: SHA-256 differs from manifest\.json"):
        export_bagit(shelf, "iris-tree", 1, tmp_path / "bag")
    (shelf.root / "iris-tree" / "1" / "model.onnx").write_bytes(
        (FIXTURE / "iris-tree/1/model.onnx").read_bytes()
    )
    with pytest.raises(IntegrityError, match=r"extra\.txt: not in manifest\.json"):
        export_bagit(shelf, "iris-tree", 1, tmp_path / "bag")


def _no_manifest(inventory: dict) -> None:
    del inventory["manifest"]


def _names_not_a_list(inventory: dict) -> None:
    state = _head_state(inventory)
    state[_report_digest(inventory)] = "report.json"


def _digest_not_in_manifest(inventory: dict) -> None:
    del inventory["manifest"][_report_digest(inventory)]


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (_no_manifest, "unreadable (no id, manifest or versions)"),
        (_digest_not_in_manifest, "is not in the manifest"),
        (_names_not_a_list, "are not plain relative paths"),
        (_read_outside, "expected vN/content/<relative path>"),
    ],
    ids=["no-manifest-key", "digest-not-in-manifest", "names-not-a-list", "content-path-outside"],
)
def test_ls_and_show_report_a_malformed_inventory_as_unreadable(shelf, tmp_path, capsys, edit, error):
    _edit_inventory(shelf, edit)
    assert main(["archive", "ls", "--archive", str(shelf.root)]) == EXIT_OK
    lr, tree = _table(capsys.readouterr().out)
    assert (lr["name"], lr["last_audit"], lr["layout"]) == ("iris-lr", "unreadable", "unreadable")
    assert (tree["name"], tree["layout"]) == ("iris-tree", "legacy")  # the other rows as they were
    assert main(["archive", "show", "iris-lr:1", "--archive", str(shelf.root)]) == EXIT_OK
    assert "last audit: unreadable" in capsys.readouterr().out
    code = main(["export", "--bagit", "iris-lr:1", str(tmp_path / "bag"), "--archive", str(shelf.root)])
    assert code == EXIT_FAILED and error in capsys.readouterr().err
