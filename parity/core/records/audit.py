"""What an audit found in one archive bundle."""

from __future__ import annotations

from typing import Any

from pydantic import Field, computed_field, model_validator

from .base import Record, omitted_when_none
from .cv import CvAudit
from .verdicts import AuditStatus


class BundleAudit(Record):
    """One bundle's audit: files that do not match its manifest, cells that drifted, or why it failed.

    Its JSON carries ``status`` (derived, checked on read: it must agree with the findings).
    """

    name: str
    version: int
    path: str
    corrupt: list[str] = Field(default_factory=list)
    drift: list[str] = Field(default_factory=list)
    replayed: int = 0
    error: str | None = None
    #: the OCFL version of the bundle's object that keeps these findings (None: not kept there)
    recorded_as: int | None = omitted_when_none()
    #: the CV re-check (``parity audit --cv``), when it was asked for
    cv: CvAudit | None = omitted_when_none()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> AuditStatus:
        """``corrupt``, ``error``, ``drift`` or ``ok``, worst first."""
        if self.corrupt:
            return AuditStatus.CORRUPT
        cv = self.cv.audit_status if self.cv is not None else AuditStatus.OK
        if self.error or cv is AuditStatus.ERROR:
            return AuditStatus.ERROR
        return AuditStatus.DRIFT if self.drift or cv is AuditStatus.DRIFT else AuditStatus.OK

    @model_validator(mode="before")
    @classmethod
    def _status_is_derived(cls, data: Any) -> Any:
        if isinstance(data, dict) and "status" in data:
            data = {k: v for k, v in data.items() if k != "status"}
        return data

    @property
    def findings(self) -> list[str]:
        """What needs action, worst first: the corrupt files, else the drifted cells, else the error; then
        the CV re-check's findings."""
        found = self.corrupt or self.drift or ([self.error] if self.error else [])
        return found + (self.cv.findings if self.cv is not None and not self.corrupt else [])
