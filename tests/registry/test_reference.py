"""Every bad reference data file is a clear InvalidInputError naming the user's file; damaged stored parquet
files are a RegistryError (registry) or an IntegrityError (bundle); numbers are ASCII digits only.

The cases come from one table, :data:`tests.registry.bad_references.BAD_REFERENCES`; tests/cli/test_cli.py
takes a few of them through the console script.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from parity.archive import Archive
from parity.archive.audit import archived_versions, replay
from parity.core.defaults import host_platform
from parity.core.errors import IntegrityError, InvalidInputError, RegistryError
from parity.core.numbers import decimal_int
from parity.registry import FileRegistry, ModelRef
from parity.registry.reference import read_reference
from parity.registry.store import PREDICTIONS_FILE, REFERENCE_FILE
from parity.validators.targets.table import Target
from tests.registry.bad_references import BAD_REFERENCES, FILES, make_bad_reference

#: A bundle written by an earlier Parity (see tests/archive/test_fixture_bundle.py) and its one target.
BUNDLE = Path(__file__).parents[1] / "fixtures" / "schema-1" / "archive" / "iris-tree" / "1"
TARGETS = {"linux-x86_64": Target("linux-x86_64", host_platform(), "process", threads=1)}


@pytest.fixture(scope="module")
def logreg(iris: tuple[pd.DataFrame, pd.Series]) -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(*iris)


@pytest.mark.parametrize("case", BAD_REFERENCES, ids=lambda case: case.id)
def test_a_bad_reference_is_refused_naming_the_file_and_the_fix(case, tmp_path, logreg, iris):
    reference = make_bad_reference(case, tmp_path, iris[0])
    registry = FileRegistry(tmp_path / "registry")
    named = re.escape(f"reference data file {reference}") if case.file else "reference data"
    with pytest.raises(InvalidInputError, match=rf"^{named}[ :].*{case.message}") as raised:
        registry.register(logreg, reference, "iris-lr")
    assert ".staging" not in str(raised.value)
    assert registry.refs() == []
    assert not registry.root.exists() or not list(registry.root.glob(".staging*"))


@pytest.mark.parametrize("case", [c for c in FILES if c.read_refuses], ids=lambda case: case.id)
def test_read_reference_refuses_what_it_cannot_read(case, tmp_path, iris):
    path = make_bad_reference(case, tmp_path, iris[0])
    with pytest.raises(
        InvalidInputError, match=rf"^reference data file {re.escape(str(path))}[ :].*{case.message}"
    ):
        read_reference(path)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".pq"])
def test_good_reference_files_read_back_the_frame(tmp_path, iris, suffix):
    X = iris[0]
    path = tmp_path / f"ref{suffix}"
    X.to_csv(path, index=False) if suffix == ".csv" else X.to_parquet(path, index=False)
    pd.testing.assert_frame_equal(read_reference(path), X, check_exact=False)


def test_a_csv_with_a_utf8_byte_order_mark_reads(tmp_path, iris):
    path = tmp_path / "ref.csv"
    path.write_bytes(b"\xef\xbb\xbf" + iris[0].to_csv(index=False).encode())
    assert list(read_reference(path).columns) == list(iris[0].columns)


def test_a_csv_whose_rows_end_in_a_comma_reads_without_shifting_columns(tmp_path):
    path = tmp_path / "ref.csv"
    path.write_text("a,b\n1,2,\n4,5,\n")  # without index_col=False pandas takes 1 and 4 as an index
    pd.testing.assert_frame_equal(read_reference(path), pd.DataFrame({"a": [1, 4], "b": [2, 5]}))


def test_a_model_file_refused_at_registration_is_named_not_its_staging_copy(tmp_path, iris):
    path = tmp_path / "not-a-model.skops"
    path.write_bytes(b"not a zip file")
    registry = FileRegistry(tmp_path / "registry")
    with pytest.raises(Exception, match=rf"^{re.escape(str(path))}: not a readable skops file") as raised:
        registry.register(None, iris[0], "m", model_file=path)
    assert ".staging" not in str(raised.value)


# -- damaged files Parity stored -------------------------------------------------------------------------
@pytest.mark.parametrize("file", [REFERENCE_FILE, PREDICTIONS_FILE])
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:40]), "is damaged: not a readable parquet file"),
        (lambda p: p.write_bytes(b""), "is damaged: not a readable parquet file"),
        (lambda p: p.unlink(), "is missing"),
    ],
    ids=["truncated", "emptied", "deleted"],
)
def test_a_damaged_parquet_file_in_the_registry_is_a_registry_error(
    tmp_path, logreg, iris, file, damage, message
):
    registry = FileRegistry(tmp_path / "registry")
    ref = registry.register(logreg, iris[0], "iris-lr")
    path = registry.path(ref) / file
    damage(path)
    with pytest.raises(RegistryError, match=rf"^{re.escape(str(path))} {message}.*Restore .* from a backup"):
        registry.open(ref)


@pytest.mark.parametrize("file", ["reference.parquet", "predictions.parquet"])
def test_a_damaged_parquet_file_in_a_bundle_is_an_integrity_error(tmp_path, file):
    folder = tmp_path / "bundle"
    shutil.copytree(BUNDLE, folder)
    (folder / file).chmod(0o644)
    (folder / file).write_bytes(b"PAR1 not really")
    with pytest.raises(IntegrityError, match=rf"{re.escape(str(folder / file))} is damaged.*restore it"):
        replay(folder, TARGETS)


# -- numbers in ASCII digits only ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", 1), ("0012", 12), ("²", None), ("١", None), ("①", None), ("1²", None), ("", None),
     ("-1", None), ("+1", None), (" 1", None), ("1\n", None), ("1.0", None)],
    ids=["one", "leading-zeros", "superscript", "arabic-indic", "circled", "mixed", "empty", "minus",
         "plus", "space", "newline", "decimal"],
)  # fmt: skip
def test_decimal_int_reads_ascii_digits_only(text, expected):
    assert decimal_int(text) == expected


def test_a_unicode_digit_folder_in_the_registry_is_ignored(tmp_path, logreg, iris):
    registry = FileRegistry(tmp_path / "registry")
    registry.register(logreg, iris[0], "iris-lr")
    for odd in ("²", "٣"):  # each holds what would look like a registration
        shutil.copytree(registry.path(ModelRef("iris-lr", 1)), registry.root / "iris-lr" / odd)
    shutil.copytree(registry.root / "iris-lr", registry.root / "²")  # a model folder no name can have
    assert registry.refs() == [ModelRef("iris-lr", 1)]
    assert registry.resolve("iris-lr") == ModelRef("iris-lr", 1)
    assert registry.register(logreg, iris[0], "iris-lr") == ModelRef("iris-lr", 2)


def test_a_unicode_digit_folder_in_the_archive_is_ignored(tmp_path):
    shelf = Archive(tmp_path / "archive")
    for model, version in [("m", "1"), ("m", "²"), ("m", "٣"), ("²", "1")]:
        folder = shelf.root / model / version
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text("{}")
    assert archived_versions(shelf) == [("m", 1)]
