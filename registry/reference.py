"""Reading tables from files: a user's reference data (parquet or CSV), and the parquet files Parity stores.

Every way such a file can be unreadable is a Parity error naming the file and the fix, never a pyarrow or
pandas traceback: a user's file is bad input (:class:`InvalidInputError`); a file Parity wrote itself that
no longer reads is damage (the caller's error type, e.g. :class:`RegistryError` or :class:`IntegrityError`).
"""

from __future__ import annotations

import csv
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from parity.core.errors import InvalidInputError, ParityError

#: The widest reference data Parity takes. Each column becomes an input of both artifacts (an ONNX input
#: name and a PMML ``DataField``): beyond this the converters and runtimes take minutes to hours per model.
MAX_REFERENCE_COLUMNS = 10_000

#: Reference data file suffixes and the reader of each.
SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def _encoding_fix(source: str) -> str:
    return (
        f"Save it as UTF-8 text (e.g. `iconv -f {source} -t utf-8 in.csv > out.csv`, or choose UTF-8 when "
        "exporting), or as parquet."
    )


def check_columns(columns: Sequence[object], what: str) -> None:
    """Refuse column names that are duplicated, not strings, or more than :data:`MAX_REFERENCE_COLUMNS`.

    Parameters
    ----------
    columns : sequence
        The column names, as the file or frame holds them (before any reader renames duplicates).
    what : str
        How to name the data in the message, e.g. ``"reference data file ref.csv"``.

    Raises
    ------
    InvalidInputError
    """
    if len(columns) > MAX_REFERENCE_COLUMNS:
        raise InvalidInputError(
            f"{what} has {len(columns)} columns, more than Parity takes ({MAX_REFERENCE_COLUMNS}, "
            "MAX_REFERENCE_COLUMNS): keep only the columns the model was fitted on."
        )
    odd = [repr(c) for c in columns if not isinstance(c, str)]
    if odd:
        raise InvalidInputError(
            f"{what}: columns must be unique strings, got names {', '.join(odd[:5])}. Name every column."
        )
    twice = sorted(str(name) for name, count in Counter(columns).items() if count > 1)
    if twice:
        raise InvalidInputError(
            f"{what}: columns must be unique strings, but the name(s) {', '.join(map(repr, twice))} occur "
            "more than once. Give every column a unique name."
        )


def read_reference(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a user's reference data file: parquet or CSV (UTF-8, a header row of column names).

    Parameters
    ----------
    path : path-like
        A ``.parquet``/``.pq`` or ``.csv`` file.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    InvalidInputError
        The file is missing, empty, of another suffix, not the format its suffix says, damaged, not UTF-8,
        wider than :data:`MAX_REFERENCE_COLUMNS`, or has duplicated column names. The message names ``path``.
    """
    path = Path(path)
    what = f"reference data file {path}"
    if not path.is_file():
        raise InvalidInputError(f"{what} does not exist.")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InvalidInputError(
            f"{path}: reference data must be .parquet or .csv, got {path.suffix.lower() or 'no suffix'}."
        )
    if path.stat().st_size == 0:
        raise InvalidInputError(
            f"{what} is empty (0 bytes): write the reference rows into it "
            f"({'a parquet file' if kind == 'parquet' else 'a header row of column names, then the rows'})."
        )
    return _read_parquet_file(path, what) if kind == "parquet" else _read_csv_file(path, what)


def _read_parquet_file(path: Path, what: str) -> pd.DataFrame:
    try:
        names = pq.ParquetFile(path).schema_arrow.names
    except (pa.ArrowException, OSError) as err:
        raise InvalidInputError(
            f"{what} is not a readable parquet file ({_first_line(err)}): it is damaged, truncated or "
            "another format named .parquet. Write it again (e.g. `DataFrame.to_parquet`) or pass a .csv."
        ) from None
    check_columns(names, what)
    try:
        return read_parquet_by_column(path)
    except (pa.ArrowException, OSError) as err:
        raise InvalidInputError(
            f"{what}: its parquet data is damaged ({_first_line(err)}). Write the file again."
        ) from None


def read_parquet_by_column(path: Path) -> pd.DataFrame:
    """A parquet file as ``pandas.read_parquet`` reads it, one column at a time.

    Reading a whole file decodes every column into Arrow memory and then copies it into pandas: about
    three times the frame's size at the peak (1M rows of 20 doubles: 500 MiB for a 160 MiB frame). Column by
    column, the peak is the frame and one column's Arrow buffers. The columns are pandas' own reads (the same
    dtypes and index); the frame keeps one block per column.

    Raises
    ------
    pyarrow.ArrowException, OSError
        As ``pandas.read_parquet`` does, for a missing or unreadable file.
    """
    schema = pq.read_schema(path)
    index_columns = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
    names = [name for name in schema.names if name not in index_columns]
    if len(names) < 2:
        return pd.read_parquet(path)
    return pd.concat([pd.read_parquet(path, columns=[name]) for name in names], axis=1)


def _read_csv_file(path: Path, what: str) -> pd.DataFrame:
    with path.open("rb") as raw:
        start = raw.read(4096)
    if start.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in start:
        raise InvalidInputError(
            f"{what} is not UTF-8 text (it holds NUL bytes: UTF-16 text or a binary file). {_encoding_fix('utf-16')}"
        )
    try:
        with path.open(encoding="utf-8-sig", newline="") as text:
            header = next(csv.reader(text), [])
        check_columns(header, what)
        with warnings.catch_warnings():
            # pandas would take a row's first values as an index (shifting every column) when rows have more
            # values than the header has names, or drop the extra values with this warning when told not to
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, encoding="utf-8-sig", index_col=False)
    except pd.errors.ParserWarning:
        raise InvalidInputError(
            f"{what}: rows hold more values than the header has column names ({len(header)}). Name every "
            "column in the header row, or remove the extra values."
        ) from None
    except UnicodeDecodeError as err:
        raise InvalidInputError(
            f"{what} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start} is not "
            f"valid UTF-8: latin-1 or another encoding?). {_encoding_fix('latin1')}"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as err:
        raise InvalidInputError(
            f"{what} is not a CSV table Parity can read ({_first_line(err)}). Give a header row of column "
            "names, then one line per row with as many comma-separated values."
        ) from None


def read_stored_parquet(path: Path, error: type[ParityError], fix: str) -> pd.DataFrame:
    """Read a parquet file Parity wrote (a registry's or a bundle's); unreadable means damaged.

    Parameters
    ----------
    path : Path
        E.g. ``REGISTRY/<name>/<version>/reference.parquet``.
    error : type of ParityError
        What to raise, e.g. ``RegistryError`` or ``IntegrityError``.
    fix : str
        The next step for whoever reads the message (restore the file from a backup, register again).

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    ParityError
        Of type ``error``, naming ``path`` and ``fix``.
    """
    try:
        return read_parquet_by_column(path)
    except FileNotFoundError:
        raise error(f"{path} is missing. {fix}") from None
    except (pa.ArrowException, OSError) as err:
        raise error(f"{path} is damaged: not a readable parquet file ({_first_line(err)}). {fix}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
