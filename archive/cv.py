"""Re-check a bundle's cross-validation score in today's environment (``parity audit --cv``).

scikit-learn's persistence guide asks that one can "check that the cross-validation score is in the same
range as before". For a bundle whose registration kept a :class:`~parity.core.records.CrossValidation`
record (:func:`parity.registry.cv.register_with_cv`; taken from the registry's record when the registry
has one, never from the bundle then; without one, from the bundle's copy of the registration record, and
then naming scikit-learn splitters only, as trust in a custom one comes from the registry alone),
:func:`recheck_cv`

1. reloads the bundle's ``model.skops`` exactly as the replay does (same trust, from the registry's record)
   and checks its outputs on the stored reference rows against the stored reference predictions, under the
   float64 tolerances of :mod:`parity.core.tolerances` (after the registration's overrides);
2. checks the training-data snapshot is where the record says and still has the recorded SHA-256;
3. rebuilds the recorded splitter and refits clones of the reloaded estimator
   (``sklearn.base.clone``) on the snapshot with the recorded scoring;
4. compares today's per-fold scores with the recorded ones by the criterion below.

**The criterion.** The splitter is seeded (or deterministic), so fold *i* today holds out the same rows as
fold *i* then: the comparison is paired. With ``d_i = today_i - recorded_i`` over the *k* folds, a scorer
has drifted when

    |mean(d)| > SE_MULTIPLIER * SE + NOISE_FLOOR,   SE = sd(recorded, ddof=1) / sqrt(k)

SE is the standard error of the recorded CV mean: how much the score already moved with which rows were
held out. A shift of the mean beyond two of them (``SE_MULTIPLIER = 2``: about 95 % for folds that
scattered normally) is no longer "in the same range as before"; ``NOISE_FLOOR`` (``1e-6`` on the scorer's
own scale) absorbs floating-point differences, so folds that all scored the same (SE = 0) are not flagged
for rounding alone. A different number of folds is drift too. The estimator's own randomness is not
controlled here: an estimator with ``random_state=None`` scatters between refits, which the criterion
tolerates only within the recorded spread.

Findings never raise: a missing or changed snapshot, or a re-check that cannot run, is a
:class:`~parity.core.records.CvAudit` with its status; a bundle registered without a CV record is
``no CV record``, not an error.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from parity.core.errors import IntegrityError
from parity.core.records import (
    AuditPayload,
    BundleAudit,
    CrossValidation,
    CvAudit,
    CvStatus,
    Metadata,
    RegistrationRecord,
    ScoreComparison,
)
from parity.core.tolerances import kind_of, tolerance_for
from parity.registry import sha256_of
from parity.registry.cv import build_splitter, read_snapshot, run_cv
from parity.registry.predictions import predictions_from_frame, reference_predictions
from parity.registry.provenance import environment_sklearn
from parity.registry.reference import read_stored_parquet
from parity.validators.compare import compare

from .bundle import REGISTRATION
from .trust import RESTORE as _RESTORE
from .trust import Trust, load_bundle_model

#: How many standard errors of the recorded folds' mean a paired mean shift may reach before it is drift.
SE_MULTIPLIER = 2.0
#: The absolute shift (on the scorer's scale) that floating-point noise alone may cause.
NOISE_FLOOR = 1e-6
#: The precision a reloaded estimator's outputs are compared at: the estimator itself, in float64.
PRECISION = "float64"

__all__ = ["NOISE_FLOOR", "SE_MULTIPLIER", "compare_scores", "cv_drift_payload", "recheck_cv"]


def compare_scores(scorer: str, recorded: list[float], today: list[float]) -> ScoreComparison:
    """Apply the paired criterion (see the module docstring) to one scorer's per-fold scores.

    Parameters
    ----------
    scorer : str
    recorded, today : list of float
        One score per fold, in the splitter's order.

    Returns
    -------
    ScoreComparison
        ``drifted`` when the fold counts differ or the mean shift exceeds the threshold.
    """
    k = len(recorded)
    spread = float(np.std(recorded, ddof=1)) if k > 1 else 0.0
    standard_error = spread / math.sqrt(k) if k else 0.0
    threshold = SE_MULTIPLIER * standard_error + NOISE_FLOOR
    shift: float | None = None
    if len(today) != k or k == 0:
        drifted = True
    else:
        shift = float(np.mean(np.subtract(today, recorded)))
        drifted = not abs(shift) <= threshold  # NaN scores are drift
    return ScoreComparison(
        scorer=scorer,
        recorded=list(recorded),
        today=list(today),
        mean_difference=shift,
        standard_error=standard_error,
        threshold=threshold,
        drifted=drifted,
    )


def _described(c: ScoreComparison) -> str:
    if c.mean_difference is None:
        return f"cv {c.scorer}: {len(c.today)} folds today, {len(c.recorded)} recorded (the splitter changed)"
    return (
        f"cv {c.scorer}: mean {np.mean(c.today):.6g} today vs {np.mean(c.recorded):.6g} recorded, a paired "
        f"shift of {c.mean_difference:+.3g} beyond {c.threshold:.3g} ({SE_MULTIPLIER:g} standard errors of "
        f"the recorded folds + {NOISE_FLOOR:g})"
    )


def _changed_predictions(folder: Path, estimator: object, tolerances: dict) -> list[str]:
    """Outputs of the reloaded estimator on the stored reference rows that differ from the stored ones."""
    from sklearn.base import is_classifier, is_clusterer, is_outlier_detector

    reference = read_stored_parquet(folder / "reference.parquet", IntegrityError, _RESTORE)
    stored = predictions_from_frame(
        read_stored_parquet(folder / "predictions.parquet", IntegrityError, _RESTORE)
    )
    today = reference_predictions(estimator, reference)
    labels = is_classifier(estimator) or is_clusterer(estimator) or is_outlier_detector(estimator)
    changes = [
        f"reference predictions: {name} is no longer produced" for name in sorted(set(stored) - set(today))
    ]
    for name in sorted(set(stored) & set(today)):
        tolerance = tolerance_for(PRECISION, kind_of(name, labels), tolerances)
        try:
            outside = compare(stored[name], today[name], tolerance).n_outside
        except ValueError as err:
            changes.append(f"reference predictions: {name} not comparable ({err})")
            continue
        if outside:
            changes.append(
                f"reference predictions: {name} differs on {outside} of {len(reference)} rows beyond "
                f"{tolerance.describe()}"
            )
    return changes


def _cv_record(folder: Path, metadata: Metadata, trust: Trust) -> CrossValidation | None:
    """The CV record to re-check: the registry's, when a registry record vouches for the bundle (never the
    bundle's own word then: a bundle whose copy of the registration was dropped from its manifest would
    otherwise be re-checked by its metadata); else the bundle's copy of the registration record, else, in a
    bundle older than that copy, its metadata."""
    if trust.tolerances is not None:  # a registry record was found
        return trust.cross_validation
    copy = folder / REGISTRATION
    provenance = RegistrationRecord.read(copy).provenance if copy.is_file() else metadata.provenance
    return provenance.cross_validation


def _snapshot_problem(record: CrossValidation) -> CvAudit | None:
    path = Path(record.snapshot.uri)
    if not path.is_file():
        return CvAudit(
            status=CvStatus.SNAPSHOT_MISSING,
            findings=[
                f"cv: the training data snapshot {path} is missing; restore it (SHA-256 "
                f"{record.snapshot.sha256}) to re-check the CV score"
            ],
        )
    actual = sha256_of(path)
    if actual != record.snapshot.sha256:
        return CvAudit(
            status=CvStatus.SNAPSHOT_CHANGED,
            findings=[
                f"cv: the training data snapshot {path} has SHA-256 {actual}, the registration recorded "
                f"{record.snapshot.sha256}; restore the recorded snapshot (the CV was not re-run on other data)"
            ],
        )
    return None


def _refit(record: CrossValidation, estimator: object, trust: Trust) -> list[ScoreComparison]:
    # trust in a custom splitter comes from a registry record only: a bundle's record names sklearn's splitters
    trusted = trust.trusted_types if trust.tolerances is not None else ()
    splitter = build_splitter(record.splitter, trusted)
    X, y = read_snapshot(record.snapshot.uri, record.snapshot.features, record.snapshot.target)
    today = run_cv(estimator, X, y, splitter, record.scoring)
    return [compare_scores(name, scores, today.get(name, [])) for name, scores in record.scores.items()]


def recheck_cv(folder: Path, trust: Trust) -> CvAudit:
    """Reload a bundle's model, check its reference predictions, refit it on its snapshot and compare scores.

    Parameters
    ----------
    folder : Path
        An intact bundle (its files checked against its manifest).
    trust : parity.archive.trust.Trust
        What loading the model may trust (:func:`parity.archive.audit.trust_for`); the splitter's class, if
        not scikit-learn's, must be among its trusted types.

    Returns
    -------
    CvAudit
        Never raises: what could not be checked is its finding.
    """
    try:
        metadata = Metadata.read(folder / "metadata.json")
        record = _cv_record(folder, metadata, trust)
        if record is None:
            return CvAudit(status=CvStatus.NO_RECORD)
        _, loaded = load_bundle_model(folder, trust)
        tolerances = metadata.tolerances if trust.tolerances is None else trust.tolerances
        changed = _changed_predictions(folder, loaded.estimator, tolerances)
        missing = _snapshot_problem(record)
        if missing is not None:
            return missing.model_copy(update={"findings": changed + missing.findings})
        scores = _refit(record, loaded.estimator, trust)
    except Exception as err:
        return CvAudit(
            status=CvStatus.ERROR, findings=[f"cv: re-check failed: {type(err).__name__}: {str(err)[:500]}"]
        )
    drifted = changed + [_described(c) for c in scores if c.drifted]
    here = environment_sklearn()
    if drifted and record.scikit_learn != here:
        drifted.append(f"cv: recorded under scikit-learn {record.scikit_learn}, re-checked under {here}")
    return CvAudit(status=CvStatus.DRIFT if drifted else CvStatus.OK, findings=drifted, scores=scores)


def cv_drift_payload(audit: BundleAudit) -> AuditPayload | None:
    """The ``parity.archive.cv-drift`` payload of a bundle whose CV re-check drifted, else None."""
    if audit.cv is None or audit.cv.status is not CvStatus.DRIFT:
        return None
    return AuditPayload(name=audit.name, version=audit.version, bundle=audit.path, findings=audit.cv.findings)
