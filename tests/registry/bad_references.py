"""Bad reference data, as one table: each case a file (or a DataFrame) and the message that refuses it.

Used by tests/registry/test_reference.py (library level, every case) and tests/cli/test_cli.py (a few cases
through the console script).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from parity.registry.reference import MAX_REFERENCE_COLUMNS

#: The fitted model takes iris' four numeric columns.
FIRST = "sepal length (cm)"


def _csv_bytes(X: pd.DataFrame) -> bytes:
    return X.to_csv(index=False).replace(FIRST, "sépal length (cm)").encode()  # one non-ASCII letter


def _parquet_bytes(X: pd.DataFrame, tmp_path: Path) -> bytes:
    path = tmp_path / "good.parquet"
    X.to_parquet(path, index=False)
    return path.read_bytes()


def _text_in_numbers(X: pd.DataFrame) -> pd.DataFrame:
    bad = X.astype({FIRST: object})
    bad.loc[3, FIRST] = "5,1 cm"
    return bad


def _mixed(X: pd.DataFrame) -> pd.DataFrame:
    bad = X.astype({FIRST: object})
    bad.loc[3, FIRST] = "seven"
    return bad  # floats and a string in one object column


def _too_wide_frame() -> pd.DataFrame:
    width = MAX_REFERENCE_COLUMNS + 1
    return pd.DataFrame(np.zeros((1, width)), columns=[f"c{i}" for i in range(width)])


def _duplicated_parquet(X: pd.DataFrame, path: Path) -> None:
    table = pa.table([X[FIRST].to_numpy(), X[FIRST].to_numpy()], names=["a", "a"])
    pq.write_table(table, path)


@dataclass(frozen=True)
class Bad:
    """One bad reference: how to make it (a file's name and writer, or a DataFrame), and the message."""

    id: str
    file: str | None  # None: a DataFrame given to FileRegistry.register (no file to read)
    make: Callable[[pd.DataFrame, Path], object]
    message: str  # a regular expression the InvalidInputError's message matches
    read_refuses: bool = True  # False: the file reads, the registration refuses its rows


BAD_REFERENCES = [
    Bad("empty-parquet", "ref.parquet", lambda X, p: p.write_bytes(b""), r"is empty \(0 bytes\)"),
    Bad("empty-csv", "ref.csv", lambda X, p: p.write_bytes(b""), r"is empty \(0 bytes\)"),
    Bad(
        "truncated-parquet",
        "ref.parquet",
        lambda X, p: p.write_bytes(_parquet_bytes(X, p.parent)[:-100]),
        r"is not a readable parquet file \(.*\): it is damaged, truncated or another format",
    ),
    Bad(
        "csv-named-parquet",
        "ref.parquet",
        lambda X, p: p.write_text(X.to_csv(index=False)),
        r"is not a readable parquet file .*Write it again",
    ),
    Bad(
        "latin-1-csv",
        "ref.csv",
        lambda X, p: p.write_bytes(_csv_bytes(X).decode().encode("latin-1")),
        r"is not UTF-8 text \(byte 0xe9 at offset 1 .*\)\. Save it as UTF-8 .*iconv -f latin1",
    ),
    Bad(
        "utf-16-csv",
        "ref.csv",
        lambda X, p: p.write_bytes(_csv_bytes(X).decode().encode("utf-16")),
        r"is not UTF-8 text \(it holds NUL bytes: UTF-16 .*iconv -f utf-16",
    ),
    Bad(
        "utf-16-le-csv-without-bom",
        "ref.csv",
        lambda X, p: p.write_bytes(X.to_csv(index=False).encode("utf-16-le")),
        r"is not UTF-8 text \(it holds NUL bytes",
    ),
    Bad(
        "ragged-csv",
        "ref.csv",
        lambda X, p: p.write_text("a,b\n1,2\n3,4,5,6\n"),
        r"is not a CSV table Parity can read \(.*\)\. Give a header row",
    ),
    Bad(
        "more-values-than-names-csv",  # pandas would shift every column, taking the first values as an index
        "ref.csv",
        lambda X, p: p.write_text("a,b\n1,2,3\n4,5,6\n"),
        r"rows hold more values than the header has column names \(2\)\. Name every column",
    ),
    Bad(
        "header-only-csv",
        "ref.csv",
        lambda X, p: p.write_text(",".join(X.columns) + "\n"),
        r"has no rows: give at least one row",
        read_refuses=False,
    ),
    Bad(
        "too-wide-csv",
        "ref.csv",
        lambda X, p: p.write_text(
            ",".join(f"c{i}" for i in range(100_000)) + "\n" + ",".join(["1"] * 100_000) + "\n"
        ),
        rf"has 100000 columns, more than Parity takes \({MAX_REFERENCE_COLUMNS}, MAX_REFERENCE_COLUMNS\)",
    ),
    Bad(
        "duplicated-csv-header",
        "ref.csv",
        lambda X, p: p.write_text("a,a\n1,2\n"),
        r"columns must be unique strings, but the name\(s\) 'a' occur more than once",
    ),
    Bad(
        "duplicated-parquet-columns",
        "ref.parquet",
        _duplicated_parquet,
        r"columns must be unique strings, but the name\(s\) 'a' occur more than once",
    ),
    Bad(
        "text-in-a-numeric-column-csv",
        "ref.csv",
        lambda X, p: _text_in_numbers(X).to_csv(p, index=False),
        rf"LogisticRegression.predict failed on the reference data: could not convert string to float: "
        rf"'5,1 cm'.* Column\(s\) holding text: {re.escape(FIRST)}; .*pd.to_numeric",
        read_refuses=False,
    ),
    Bad(
        "text-in-a-numeric-column-parquet",
        "ref.parquet",
        lambda X, p: _text_in_numbers(X).astype({FIRST: str}).to_parquet(p, index=False),
        rf"could not convert string to float.* Column\(s\) holding text: {re.escape(FIRST)}",
        read_refuses=False,
    ),
    Bad(
        "mixed-types-frame",
        None,
        lambda X, p: _mixed(X),
        rf"column '{re.escape(FIRST)}' mixes number and text values; a column holds one",
    ),
    Bad(
        "too-wide-frame",
        None,
        lambda X, p: _too_wide_frame(),
        rf"has {MAX_REFERENCE_COLUMNS + 1} columns, more than Parity takes",
    ),
]
FILES = [case for case in BAD_REFERENCES if case.file is not None]


def make_bad_reference(case: Bad, folder: Path, X: pd.DataFrame) -> object:
    """The bad reference of ``case``: a file under ``folder`` (its path), or a DataFrame."""
    if case.file is None:
        return case.make(X, folder)
    path = folder / case.file
    case.make(X, path)
    return path
