"""A bundle's files as the card and the HTML report read them: a folder, or the files about to be filed."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from parity.core.errors import RecordError
from parity.core.records import Conversion, Metadata, Report
from parity.core.records.base import Document

from .names import METADATA, REPORT

#: Bundle file name → its bytes, or the path of a file holding them (what ``file_model`` hands the archive).
BundleFiles = Mapping[str, "Path | bytes"]
D = TypeVar("D", bound=Document)


def folder_files(folder: str | os.PathLike[str]) -> dict[str, Path | bytes]:
    """The files of a bundle folder (or a folder of its content), by name."""
    return {p.name: p for p in sorted(Path(folder).iterdir()) if p.is_file()}


def read(files: BundleFiles, name: str) -> bytes | None:
    """A file's bytes; None when the bundle has no such file."""
    source = files.get(name)
    if source is None:
        return None
    return source if isinstance(source, bytes) else Path(source).read_bytes()


def report_and_metadata(files: BundleFiles) -> tuple[Report, Metadata | None]:
    """The bundle's report and metadata, validated as they are read.

    Raises
    ------
    FileNotFoundError
        The bundle has no ``report.json``.
    RecordError, RecordSchemaError
        One of them is damaged or of a schema this version of Parity does not read.
    """
    report = read(files, REPORT)
    if report is None:
        raise FileNotFoundError(f"no {REPORT} among {', '.join(sorted(files)) or 'no files'}: not a bundle.")
    metadata = read(files, METADATA)
    return _document(Report, report, REPORT), None if metadata is None else _document(
        Metadata, metadata, METADATA
    )


def _document(kind: type[D], data: bytes, name: str) -> D:
    try:
        parsed = json.loads(data)
    except json.JSONDecodeError as err:
        raise RecordError(f"{name}: not JSON ({err}); expected a {kind.__name__} record.") from err
    return kind.from_data(parsed, name)


def archived_conversions(report: Report) -> dict[str, Conversion]:
    """The conversions whose artifact the bundle holds (by artifact file name), superseded ones left out."""
    return {
        c.path.name: c
        for c in report.conversions.values()
        if c.ok and c.path is not None and c.superseded_by is None
    }
