"""The binary column format the PMML engine reads and writes (Java's DataInput/DataOutput encoding).

A file is: the magic string, [a ``where`` JSON string, for outputs only], column count, row count, then
per column its name, a type byte (0 double, 1 string, and in outputs also 2 long, 3 boolean) and the values:
big-endian IEEE doubles (NaN for missing), a presence flag plus a string, big-endian 64-bit integers or one
byte per boolean (integer and boolean columns have no missing values; the engine sends those as doubles or
strings). Doubles round-trip bit for bit; text never carries numbers.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd

MAGIC = "PARITY-COLUMNS-1"
DOUBLE, STRING, LONG, BOOLEAN = 0, 1, 2, 3


def _utf(text: str) -> bytes:
    """Java's modified UTF-8 as writeUTF writes it (no NUL or astral characters expected here)."""
    data = text.encode("utf-8")
    if len(data) > 0xFFFF:
        raise ValueError(f"string of {len(data)} bytes is longer than writeUTF allows")
    return struct.pack(">H", len(data)) + data


#: Fixed-size column types of an output file: wire dtype, bytes per value, the dtype they are read as.
_FIXED = {DOUBLE: (">f8", 8, np.float64), LONG: (">i8", 8, np.int64), BOOLEAN: ("?", 1, np.bool_)}


def write_columns(path: Path, frame: pd.DataFrame) -> None:
    """Write ``frame``: numeric and boolean columns as doubles, every other column as strings."""
    out = io.BytesIO()
    out.write(_utf(MAGIC))
    out.write(struct.pack(">ii", frame.shape[1], frame.shape[0]))
    for name in frame.columns:
        column = frame[name]
        out.write(_utf(str(name)))
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            out.write(struct.pack(">B", DOUBLE))
            out.write(column.to_numpy(dtype=np.float64).astype(">f8").tobytes())
        else:
            out.write(struct.pack(">B", STRING))
            for value in column.astype(object):
                missing = bool(pd.isna(value))
                out.write(b"\x00" if missing else b"\x01" + _utf(str(value)))
    path.write_bytes(out.getvalue())


def read_output(path: Path) -> tuple[pd.DataFrame, dict]:
    """Read a runner's output file: the columns and its ``where`` description."""
    data = memoryview(path.read_bytes())
    offset = 0

    def utf() -> str:
        nonlocal offset
        (length,) = struct.unpack_from(">H", data, offset)
        offset += 2 + length
        return bytes(data[offset - length : offset]).decode("utf-8")

    if utf() != MAGIC:
        raise ValueError(f"{path}: not a Parity column file")
    where = json.loads(utf())
    count, rows = struct.unpack_from(">ii", data, offset)
    offset += 8
    columns: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = utf()
        kind = data[offset]
        offset += 1
        if kind in _FIXED:
            dtype, size, native = _FIXED[kind]
            columns[name] = np.frombuffer(data, dtype=dtype, count=rows, offset=offset).astype(native)
            offset += size * rows
        else:
            values: list[str | None] = []
            for _ in range(rows):
                present = data[offset]
                offset += 1
                values.append(utf() if present else None)
            columns[name] = np.array(values, dtype=object)
    frame = pd.DataFrame(
        {
            name: pd.Series(values, dtype=object if values.dtype == object else values.dtype)
            for name, values in columns.items()
        }
    )
    return frame, where
