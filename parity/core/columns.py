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


def _modified_utf8(text: str) -> bytes:
    """``text`` in Java's modified UTF-8 (what ``DataInput.readUTF`` reads): characters beyond the Basic
    Multilingual Plane as two 3-byte surrogates, NUL as two bytes."""
    if text.isascii() and "\0" not in text:
        return text.encode("ascii")
    halves = text.encode("utf-16-be", "surrogatepass")
    units = (chr(int.from_bytes(halves[i : i + 2], "big")) for i in range(0, len(halves), 2))
    return "".join(units).encode("utf-8", "surrogatepass").replace(b"\0", b"\xc0\x80")


def _from_modified_utf8(data: bytes) -> str:
    """The inverse of :func:`_modified_utf8` (what ``DataOutput.writeUTF`` wrote)."""
    if data.isascii():
        return data.decode("ascii")
    text = data.replace(b"\xc0\x80", b"\0").decode("utf-8", "surrogatepass")
    return text.encode("utf-16-be", "surrogatepass").decode("utf-16-be")


def _utf(text: str) -> bytes:
    """A string as ``writeUTF`` writes it: a 2-byte length, then Java's modified UTF-8."""
    data = _modified_utf8(text)
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
        return _from_modified_utf8(bytes(data[offset - length : offset]))

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
