"""What every converter returns: a conversion is a result, including when the converter says no."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path


class Status(StrEnum):
    """How a conversion ended."""

    CONVERTED = "converted"
    #: the converter does not support this estimator: a finding, not a crash
    UNSUPPORTED = "unsupported"
    #: the converter should have worked and did not
    FAILED = "failed"


@dataclass(frozen=True)
class Conversion:
    """One estimator converted (or not) to one format.

    Attributes
    ----------
    format : str
        Key in :data:`converters.FORMATS`.
    status : Status
    path : Path or None
        The artifact, when converted.
    message : str
        The converter's own words when it did not convert; a short summary otherwise.
    seconds : float
    details : dict
        Format-specific facts the runtimes need (inputs, outputs, opset, target field...).
    """

    format: str
    status: Status
    path: Path | None
    message: str
    seconds: float
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is Status.CONVERTED

    def to_json(self) -> dict:
        data = asdict(self)
        data["status"] = str(self.status)
        data["path"] = None if self.path is None else self.path.name
        return data
