"""What every record Parity writes has in common: typed, frozen, strict about keys, versioned by ``schema``.

A *document* is a record that is a file of its own (``registration.json``, ``report.json``, ``manifest.json``,
an event payload...): it carries ``"schema"``, checked on every read against the schemas this version of
Parity reads. Records nested in a document (a check, a conversion) are versioned by their document.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import RecordError, RecordSchemaError


def now() -> str:
    """The time as Parity writes it in its documents: ISO 8601, UTC, seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _is_none(value: object) -> bool:
    return value is None


def omitted_when_none() -> Any:
    """A field whose key is written only when set: files written without the key read back the same."""
    return Field(default=None, exclude_if=_is_none)


def problems_of(err: ValidationError, limit: int = 8) -> str:
    """pydantic's findings in one line: ``field.path: what is wrong; ...`` (the first ``limit``)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in err.errors()[:limit])


class Record(BaseModel):
    """A typed, immutable piece of data that Parity writes; unknown keys are refused on read."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        ser_json_inf_nan="null",
        use_enum_values=False,
    )

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data (enums as their values, paths as strings)."""
        return self.model_dump(mode="json", by_alias=True)


class Document(Record):
    """A record stored as a file (or sent as an event payload): it names its schema.

    Subclasses list the schemas they read in :attr:`SCHEMAS`; the newest is what they write. A document of
    an older schema is read into today's fields (each field new since then has a default, or a validator
    that derives it from what the old schema said) and is written as the newest schema.
    """

    SCHEMAS: ClassVar[tuple[int, ...]] = (1,)

    schema_version: int = Field(default=1, alias="schema")

    @classmethod
    def from_data(cls, data: object, source: str | os.PathLike[str] | None = None) -> Self:
        """Validate data read from ``source`` (a file, an event): its schema first, then every field.

        Raises
        ------
        RecordSchemaError
            The data names a schema this version of Parity does not read (or none).
        RecordError
            A field is missing, unknown or of the wrong type.
        """
        where = str(source) if source is not None else f"a {cls.__name__} record"
        if not isinstance(data, dict):
            raise RecordError(f"{where}: expected a JSON object ({cls.__name__}), got {type(data).__name__}.")
        schema = data.get("schema")
        if type(schema) is not int or schema not in cls.SCHEMAS:  # not True, not 1.0
            readable = ", ".join(str(s) for s in cls.SCHEMAS)
            raise RecordSchemaError(
                f"{where}: {cls.__name__} schema {schema!r}, but this version of Parity reads schema "
                f"{readable}. Read it with the Parity version that wrote it, or upgrade Parity."
            )
        try:
            return cls.model_validate({**data, "schema": cls.SCHEMAS[-1]})  # read once, written as today's
        except ValidationError as err:
            problems = problems_of(err)
            raise RecordError(
                f"{where}: not a valid {cls.__name__} (schema {schema}): {problems}. The file is damaged or "
                "was not written by Parity."
            ) from err

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Self:
        """Read and validate a document file.

        Raises
        ------
        RecordError, RecordSchemaError
            Unreadable JSON, a schema this version does not read, or an invalid field (the message names
            the file).
        FileNotFoundError
            When there is no such file.
        """
        path = Path(path)
        return cls.from_bytes(path.read_bytes(), path)

    @classmethod
    def from_bytes(cls, raw: bytes, source: str | os.PathLike[str]) -> Self:
        """Parse and validate a document's bytes (read from ``source``, which messages name).

        Raises
        ------
        RecordError, RecordSchemaError
        """
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RecordError(f"{source}: not JSON ({err}); expected a {cls.__name__} record.") from err
        return cls.from_data(data, source)

    def to_bytes(self) -> bytes:
        """The document as the JSON Parity writes: indented, keys sorted."""
        return json.dumps(self.to_json(), indent=2, sort_keys=True).encode()
