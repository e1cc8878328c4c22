"""Every record Parity writes or sends, typed and versioned (pydantic). See :mod:`.base` for the rules."""

from .base import Document, Record
from .checks import Check, Where
from .conversions import DETAILS, Conversion, OnnxDetails, OnnxInput, PmmlDetails, Precision
from .verdicts import AuditStatus, ConversionStatus, Outcome, Verdict

__all__ = [
    "DETAILS",
    "AuditStatus",
    "Check",
    "Conversion",
    "ConversionStatus",
    "Document",
    "OnnxDetails",
    "OnnxInput",
    "Outcome",
    "PmmlDetails",
    "Precision",
    "Record",
    "Verdict",
    "Where",
]
