"""How a model's cross-validation score was obtained, and what re-checking it found.

scikit-learn's model-persistence guide asks to keep "the cross validation score obtained on the training
data" so that one can later "check that the cross-validation score is in the same range as before". A
:class:`CrossValidation` keeps enough to do that check: the splitter as a rebuildable spec, the scoring, the
per-fold scores and the training-data snapshot (where it is, its SHA-256, which columns are what).
"""

from __future__ import annotations

from pydantic import Field

from .base import Record
from .verdicts import AuditStatus, CvStatus

#: What each CV finding makes of the bundle's audit status: a drift is drift; a snapshot that is gone or
#: changed, or a re-check that could not run, needs a person (error); no record, or a pass, changes nothing.
CV_AUDIT_STATUS: dict[CvStatus, AuditStatus] = {
    CvStatus.DRIFT: AuditStatus.DRIFT,
    CvStatus.SNAPSHOT_MISSING: AuditStatus.ERROR,
    CvStatus.SNAPSHOT_CHANGED: AuditStatus.ERROR,
    CvStatus.ERROR: AuditStatus.ERROR,
}

#: A splitter parameter as JSON holds it.
ParamValue = bool | int | float | str | None | list[bool | int | float | str | None]


class Splitter(Record):
    """A CV splitter as a reproducible spec: ``cls(**params)`` rebuilds it (e.g. a seeded ``KFold``)."""

    #: ``module.QualifiedName``, e.g. ``sklearn.model_selection._split.KFold``
    cls: str = Field(alias="class")
    params: dict[str, ParamValue] = Field(default_factory=dict)


class Snapshot(Record):
    """The training-data snapshot the CV ran on: a parquet file of the feature columns and the target."""

    uri: str
    sha256: str
    format: str = "parquet"
    features: list[str]
    target: str


class CrossValidation(Record):
    """How the recorded CV scores were obtained: splitter, scoring, data, versions, and the per-fold scores.

    ``scores`` maps each scorer name (``score`` when the estimator's own ``score`` was used) to one score per
    fold, in the splitter's order.
    """

    splitter: Splitter
    #: a scorer name, a list of them, or None for the estimator's own ``score``
    scoring: str | list[str] | None
    scores: dict[str, list[float]]
    snapshot: Snapshot
    scikit_learn: str = Field(alias="scikit-learn")
    n_samples: int
    #: how the registered model was fitted: ``clone refit on the snapshot`` (see parity.registry.cv)
    fitted: str = "clone refit on the whole snapshot"


class ScoreComparison(Record):
    """One scorer's recorded and re-computed per-fold scores, and the criterion's figures."""

    scorer: str
    recorded: list[float]
    today: list[float]
    #: mean over folds of (today - recorded): the folds are the same splits, so the comparison is paired
    #: None when the fold counts differ (not comparable: drift)
    mean_difference: float | None
    #: standard error of the recorded folds' mean (their sample standard deviation / sqrt(folds))
    standard_error: float
    #: the largest |mean_difference| that is not drift
    threshold: float
    drifted: bool


class CvAudit(Record):
    """What re-checking a bundle's CV record found (see :mod:`parity.archive.cv`)."""

    status: CvStatus
    findings: list[str] = Field(default_factory=list)
    scores: list[ScoreComparison] = Field(default_factory=list)

    @property
    def audit_status(self) -> AuditStatus:
        """What this finding makes of the bundle's audit status (see :data:`CV_AUDIT_STATUS`)."""
        return CV_AUDIT_STATUS.get(self.status, AuditStatus.OK)
