"""Verdicts, outcomes and statuses: every word Parity uses for how something ended, as an enum."""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    """One cell of the verdict table."""

    PASS = "pass"
    FAIL = "fail"
    #: the format could not be produced: the converter does not support the estimator
    UNSUPPORTED = "unsupported"
    #: the runtime is not installed / not reachable here
    UNAVAILABLE = "unavailable"
    #: the runtime raised while evaluating
    ERROR = "error"
    #: the artifact does not carry this output (or rows), and its converter is known not to emit it:
    #: reported and explained, never blocking
    NOT_COVERED = "not covered"


class Role(StrEnum):
    """What a runtime's or a target's verdict means for the model."""

    #: a runtime or target the model is served with: its failures block the model
    DEPLOY = "deploy"
    #: an independent engine or place: reported and explained, never blocking
    WITNESS = "witness"


class Stage(StrEnum):
    """Where a failing cell failed: the step that went wrong."""

    CONVERT = "convert"
    LOAD = "load"
    EVALUATE = "evaluate"
    COMPARE = "compare"
    COVERAGE = "coverage"


class Outcome(StrEnum):
    """One model version's result."""

    PASSED = "passed"
    FAILED = "failed"
    UNSUPPORTED = "unsupported"
    #: the validation itself crashed before a report was made
    ERROR = "error"


class ConversionStatus(StrEnum):
    """How a conversion ended."""

    CONVERTED = "converted"
    #: the converter does not support this estimator: a finding, not a crash
    UNSUPPORTED = "unsupported"
    #: the converter should have worked and did not
    FAILED = "failed"


class AuditStatus(StrEnum):
    """What an audit found in a bundle, worst first: ``corrupt``, ``error``, ``drift``, ``ok``."""

    CORRUPT = "corrupt"
    ERROR = "error"
    DRIFT = "drift"
    OK = "ok"


class CvStatus(StrEnum):
    """What re-checking a bundle's cross-validation record found."""

    OK = "ok"
    #: the refit's scores (or the reloaded model's reference predictions) moved beyond the criterion
    DRIFT = "drift"
    #: registered without a CV record: nothing to re-check, which is not an error
    NO_RECORD = "no CV record"
    SNAPSHOT_MISSING = "snapshot missing"
    SNAPSHOT_CHANGED = "snapshot changed"
    #: the re-check itself could not run (the model would not load, the refit raised...)
    ERROR = "error"
