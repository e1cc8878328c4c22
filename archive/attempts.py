"""What became of each validation of a model version that left files: the archived bundle and the
attempts kept in the rejected area, each with the outcome its report says, newest last."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from parity.core.errors import RecordError
from parity.core.records import Outcome, Report

from .bundle import REPORT, Archive

#: A rejected attempt's folder starts with the UTC time it was filed (``20261202T015610593334Z-…``).
_FILED_AT = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})")


@dataclass(frozen=True)
class Attempt:
    """One validation of a model version, as its files say."""

    #: where its object is (a folder's path or a URL)
    path: str
    #: True for the archived bundle, False for an attempt in the rejected area
    archived: bool
    #: ``error`` when its report cannot be read (then ``problem`` says why)
    outcome: Outcome
    #: when it was validated (ISO 8601, seconds), from its report or, failing that, its folder's name
    validated_at: str
    problem: str = ""


def _filed_at(key: str) -> str:
    found = _FILED_AT.match(key.rsplit("/", 1)[-1])
    if not found:
        return ""
    y, mo, d, h, mi, s = found.groups()
    return f"{y}-{mo}-{d}T{h}:{mi}:{s}+00:00"


def _attempt(archive: Archive, key: str, archived: bool) -> Attempt:
    where = archive.store.url(key)
    try:
        report = archive.record_at(key, REPORT, Report)
    except (OSError, RecordError) as err:
        return Attempt(where, archived, Outcome.ERROR, _filed_at(key), f"report unreadable: {err}")
    return Attempt(where, archived, report.outcome, report.validated_at)


def attempts(archive: Archive, name: str, version: int) -> list[Attempt]:
    """Every validation of ``name:version`` that left files, oldest first.

    Parameters
    ----------
    archive : Archive
    name, version : the model version

    Returns
    -------
    list of Attempt
        Ordered by when each was validated; the rejected attempts among themselves by the time in their
        folder's name; an archived bundle validated in the same second as a rejected attempt counts as the
        newer (a version is archived once, after the attempts that failed).
    """
    found = [_attempt(archive, key, False) for key in archive.rejected(name, version)]
    if archive.is_archived(name, version):
        found.append(_attempt(archive, archive.key(name, version), True))
    # sorted() is stable: rejected attempts keep their folder order, the bundle stays after its equals
    return sorted(found, key=lambda a: a.validated_at)


def newest_attempt(archive: Archive, name: str, version: int) -> Attempt | None:
    """The latest validation of ``name:version`` that left files (see :func:`attempts`); None if none."""
    found = attempts(archive, name, version)
    return found[-1] if found else None


def filed_since(archive: Archive, name: str, version: int, since: datetime) -> Report | None:
    """The report of the newest validation of ``name:version`` filed at or after ``since``; None if none.

    Parameters
    ----------
    archive : Archive
    name, version : the model version
    since : datetime
        Timezone-aware; validations filed earlier are someone else's.

    Returns
    -------
    Report or None
        The report as filed, with ``bundle`` set to the folder it lies in.
    """
    newest = newest_attempt(archive, name, version)
    if newest is None or not newest.validated_at or datetime.fromisoformat(newest.validated_at) < since:
        return None
    try:
        return archive.record_at(_key_of(archive, newest), REPORT, Report).model_copy(
            update={"bundle": newest.path}
        )
    except (OSError, RecordError):
        return None


def _key_of(archive: Archive, attempt: Attempt) -> str:
    """An attempt's key relative to the archive root."""
    return attempt.path.removeprefix(archive.store.url()).lstrip("/")
