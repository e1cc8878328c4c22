"""The one way Parity builds a family table (formats, runtimes, reaches): by name, in order, no duplicates."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar


class Named(Protocol):
    @property
    def name(self) -> str: ...


Entry = TypeVar("Entry", bound=Named)


def table_of(family: str, entries: Iterable[Entry]) -> dict[str, Entry]:
    """Entries by name, in the order given.

    Raises
    ------
    ValueError
        When two entries share a name (a table never overwrites one entry with another silently).
    """
    table: dict[str, Entry] = {}
    for entry in entries:
        if entry.name in table:
            raise ValueError(f"{family} {entry.name!r} registered twice; each {family} needs a unique name.")
        table[entry.name] = entry
    return table
