"""Every record Parity writes or sends, typed and versioned (pydantic). See :mod:`.base` for the rules."""

from .audit import BundleAudit
from .base import Document, Record
from .bundle import Identity, Manifest, Metadata, Report, TargetEntry, decide_outcome, targets_section
from .checks import Check, Where
from .conversions import DETAILS, Conversion, OnnxDetails, OnnxInput, PmmlDetails, PmmlField, Precision
from .cv import CrossValidation, CvAudit, ScoreComparison, Snapshot, Splitter
from .events import AuditPayload, OutcomePayload, RegisteredPayload
from .registration import (
    Column,
    Dataset,
    Environment,
    ModelFile,
    Origin,
    OutputShape,
    PredictionsFile,
    Provenance,
    ReferenceFile,
    RegistrationRecord,
    SourceFile,
    Sources,
    TrainingData,
)
from .verdicts import AuditStatus, ConversionStatus, CvStatus, Outcome, Role, Stage, Verdict

#: Every document type (a file or an event payload of its own), by the name of what it is.
DOCUMENTS: dict[str, type[Document]] = {
    "registration.json": RegistrationRecord,
    "report.json": Report,
    "metadata.json": Metadata,
    "manifest.json": Manifest,
    "parity.model.registered": RegisteredPayload,
    "parity.model.validated": OutcomePayload,
    "parity.archive.audit": AuditPayload,
}

__all__ = [
    "DETAILS",
    "DOCUMENTS",
    "AuditPayload",
    "AuditStatus",
    "BundleAudit",
    "Check",
    "Column",
    "Conversion",
    "ConversionStatus",
    "CrossValidation",
    "CvAudit",
    "CvStatus",
    "Dataset",
    "Document",
    "Environment",
    "Identity",
    "Manifest",
    "Metadata",
    "ModelFile",
    "OnnxDetails",
    "OnnxInput",
    "Origin",
    "Outcome",
    "OutcomePayload",
    "OutputShape",
    "PmmlDetails",
    "PmmlField",
    "Precision",
    "PredictionsFile",
    "Provenance",
    "Record",
    "ReferenceFile",
    "RegisteredPayload",
    "RegistrationRecord",
    "Report",
    "Role",
    "ScoreComparison",
    "Snapshot",
    "SourceFile",
    "Sources",
    "Splitter",
    "Stage",
    "TargetEntry",
    "TrainingData",
    "Verdict",
    "Where",
    "decide_outcome",
    "targets_section",
]
