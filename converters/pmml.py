"""scikit-learn → PMML with sklearn2pmml, in a warm JVM, with verification rows embedded."""

from __future__ import annotations

import re
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import pandas as pd
from sklearn.base import is_classifier

from .base import Conversion, Status
from .pmml_server import WarmPmmlConverter, dump_for_java

#: Reference rows embedded in the PMML as <ModelVerification>; bounded so big reference sets stay cheap.
VERIFY_ROWS = 100

# sklearn2pmml's words when it has no converter for a class (as opposed to a broken conversion).
_UNSUPPORTED = re.compile(
    r"is not (a )?supported|not supported by|UnsupportedOperationException", re.IGNORECASE
)


def target_field(X: pd.DataFrame) -> str:
    """A target field name that no input column uses."""
    name = "y"
    while name in X.columns:
        name = f"_{name}"
    return name


def make_pipeline(estimator: object, X: pd.DataFrame, verify_rows: int = VERIFY_ROWS):
    """Wrap ``estimator`` in a PMMLPipeline with named fields and embedded verification rows."""
    from sklearn2pmml import make_pmml_pipeline

    pipeline = make_pmml_pipeline(estimator, active_fields=list(X.columns), target_fields=[target_field(X)])
    sample = X.sample(n=min(verify_rows, len(X)), random_state=0) if verify_rows else None
    if sample is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            pipeline.verify(sample)
    return pipeline, 0 if sample is None else len(sample)


def convert_pmml(
    estimator: object,
    X: pd.DataFrame,
    out_path: Path,
    converter: WarmPmmlConverter,
    *,
    verify_rows: int = VERIFY_ROWS,
) -> Conversion:
    """Convert a fitted estimator to PMML in the warm converter JVM.

    Parameters
    ----------
    estimator : fitted estimator
    X : pandas.DataFrame
        Reference rows; a bounded sample is embedded for JPMML's ``verify()``.
    out_path : Path
        Where to write the ``.pmml`` file.
    converter : WarmPmmlConverter
        The long-lived JVM to convert in (one per process).
    verify_rows : int
        How many rows to embed; 0 embeds none.

    Returns
    -------
    Conversion
        ``unsupported`` with sklearn2pmml's message when it has no converter for part of the model.
    """
    import sklearn2pmml

    start = time.perf_counter()
    out_path.unlink(missing_ok=True)  # a failed conversion must not leave an earlier artifact looking current
    if not hasattr(estimator, "predict"):
        message = (
            f"{type(estimator).__name__} has no predict: Parity validates PMML through its target and "
            "probability fields, which a transformer-only PMML does not have."
        )
        return Conversion("pmml", Status.UNSUPPORTED, None, message, _since(start))
    try:
        pipeline, embedded = make_pipeline(estimator, X, verify_rows)
    except Exception as err:
        detail = "".join(traceback.format_exception_only(err)).strip()
        return Conversion("pmml", Status.FAILED, None, f"preparing the PMMLPipeline: {detail}", _since(start))
    with tempfile.TemporaryDirectory(prefix="parity-pmml-") as scratch:
        pickled = dump_for_java(pipeline, Path(scratch))
        reply = converter.convert(pickled, out_path)
    if not reply.ok:
        status = Status.UNSUPPORTED if _UNSUPPORTED.search(reply.log) else Status.FAILED
        message = _converter_message(reply.log)
        if reply.blocked_connections:
            message += f"\n(blocked outgoing connection(s): {', '.join(reply.blocked_connections)})"
        out_path.unlink(missing_ok=True)
        return Conversion("pmml", status, None, message, _since(start))
    classes = getattr(estimator, "classes_", None) if is_classifier(estimator) else None
    details = {
        "target": target_field(X),
        "classes": None if classes is None else [str(c) for c in classes],
        "outputs": {"label": "predict", "probabilities": "predict_proba"}
        if classes is not None
        else {"value": "predict"},
        "verification_rows": embedded,
        "precision": "float64",
        "sklearn2pmml": sklearn2pmml.__version__,
    }
    return Conversion(
        "pmml", Status.CONVERTED, out_path, f"{embedded} verification rows embedded", _since(start), details
    )


def _converter_message(log: str, limit: int = 8) -> str:
    """The lines of the converter's log that say what went wrong."""
    lines = [line for line in log.splitlines() if line.strip()]
    telling = [line for line in lines if re.search(r"Exception|Error|not supported|SEVERE", line)]
    return "\n".join((telling or lines)[:limit]) or "the converter failed without a message"


def _since(start: float) -> float:
    return time.perf_counter() - start
