"""scikit-learn → PMML with sklearn2pmml, in a warm JVM, with verification rows embedded."""

from __future__ import annotations

import pickle
import re
import tempfile
import threading
import time
import traceback
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import is_classifier, is_clusterer, is_outlier_detector

from parity.core.records import Conversion, ConversionStatus, PmmlDetails, PmmlField, Precision
from parity.core.tolerances import Exact, kind_of, scale_of, tolerance_for
from parity.registry.predictions import reference_outputs

from .pmml_server import EngineConverter, WarmPmmlConverter, dump_for_java

#: Reference rows embedded in the PMML as <ModelVerification>; bounded so big reference sets stay cheap.
VERIFY_ROWS = 100

#: One exception line of the converter's log: ``java.class.Name: message`` (a "Caused by" cause, too).
_EXCEPTION_LINE = re.compile(
    r"^(?:Caused by: )?(?P<name>[\w$.]+(?:Exception|Error))(?::\s*(?P<message>.*))?$"
)
#: The exceptions sklearn2pmml's Java side (JPMML-SkLearn, JPMML-Converter, JPMML-Model) throws for "I do not
#: support this": a feature or label kind (JPMML-Converter), PMML markup (JPMML-Model), an operation.
_UNSUPPORTED_EXCEPTIONS = re.compile(r"(?:^|\.)Unsupported\w*Exception$")
#: Their words when the exception type is a general one: a class with no converter ("The object (Python class
#: ...) is not a supported Estimator"), a setting it has no encoding for ("Attribute 'metric' has an
#: unsupported value 'chebyshev'"), an IllegalArgumentException's "... is not supported", or an
#: InvalidLabelException's "Expected 2 target categories, got 3" (a converter for binary labels only). Not "contains an
#: unsupported value": jpmml-python says that of array elements of a type it cannot read (a broken pickle).
_UNSUPPORTED_WORDS = re.compile(
    r"not (a )?supported|has an unsupported value|Expected \d+ target categories, got \d+", re.IGNORECASE
)


_shared: EngineConverter | None = None
_shared_lock = threading.Lock()


def shared_pmml_converter() -> EngineConverter:
    """The process's PMML converter: sklearn2pmml in this host's engine JVM, started on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = EngineConverter()
        return _shared


def precision_of(path: Path) -> Precision:
    """A PMML's precision, read from the file: float32 only when it declares float fields and no double one.

    JPMML computes in double wherever a field is double; sklearn2pmml declares ``dataType="float"`` for the
    inputs of tree models (their splits compare in float32, as scikit-learn's do) but double for their
    outputs and intermediate fields, so its PMMLs read as float64. Per-field precision is the next step
    (the DataDictionary says which inputs are float). Any element's declaration counts, wherever it stands
    (a model chain declares its top-level outputs after its segments).
    """
    text = path.read_bytes()
    if _DATA_TYPE_DOUBLE.search(text):
        return "float64"
    return "float32" if _DATA_TYPE_FLOAT.search(text) else "float64"


_DATA_TYPE_DOUBLE = re.compile(rb"""dataType\s*=\s*["']double["']""")
_DATA_TYPE_FLOAT = re.compile(rb"""dataType\s*=\s*["']float["']""")


#: Final estimators whose PMML carries a predicted label but no probability fields (JPMML-SkLearn encodes
#: them as nearest-neighbour or SVM models without probability outputs).
NO_PROBABILITY_FIELDS: frozenset[str] = frozenset({"KNeighborsClassifier", "SVC", "NuSVC"})


def _final_step(estimator: object) -> object:
    """The model that makes the predictions: a Pipeline's last step, a search's best estimator."""
    steps = getattr(estimator, "steps", None)
    if steps:
        return _final_step(steps[-1][1])
    best = getattr(estimator, "best_estimator_", None)
    return estimator if best is None else _final_step(best)


def result_fields(estimator: object, target: str) -> dict[str, PmmlField]:
    """Which result columns of a sklearn2pmml PMML hold which reference output, by estimator kind.

    Classifiers: the target field (the label) and ``probability(<class>)`` per class; outlier detectors:
    ``predict(outlier)`` and ``decisionFunction``; KMeans: ``cluster`` and ``affinity(<k>)`` (squared
    distances); regressors: the target field.
    """
    final = _final_step(estimator)
    if is_classifier(estimator):
        fields = {"predict": PmmlField(columns=[target])}
        classes = [str(c) for c in getattr(estimator, "classes_", [])]
        if hasattr(estimator, "predict_proba") and type(final).__name__ not in NO_PROBABILITY_FIELDS:
            fields["predict_proba"] = PmmlField(columns=[f"probability({c})" for c in classes])
        return fields
    if is_outlier_detector(estimator):
        return {
            "predict": PmmlField(columns=["predict(outlier)"]),
            "decision_function": PmmlField(columns=["decisionFunction"]),
        }
    if is_clusterer(estimator):
        fields = {"predict": PmmlField(columns=["cluster"])}
        centers = getattr(final, "cluster_centers_", None)
        if centers is not None and hasattr(estimator, "transform"):
            columns = [f"affinity({k})" for k in range(len(centers))]
            fields["transform"] = PmmlField(columns=columns, transform="sqrt")
        return fields
    return {"predict": PmmlField(columns=[target])}


def not_emitted(estimator: object, fields: dict[str, PmmlField]) -> dict[str, str]:
    """The estimator's reference outputs that sklearn2pmml's PMML has no field for, each with the reason."""
    return {
        output: f"sklearn2pmml's PMML for a {type(_final_step(estimator)).__name__} has no field for {output}"
        for output in reference_outputs(estimator)
        if output not in fields
    }


def float_inputs(path: Path, columns: list[str]) -> list[str]:
    """The reference columns a PMML's DataDictionary declares ``dataType="float"``: JPMML rounds them to
    float32 before evaluating (sklearn2pmml does so for the inputs of tree models)."""
    declared: dict[str, str] = {}
    for _, element in ET.iterparse(path, events=("end",)):
        tag = element.tag.rpartition("}")[2]
        if tag == "DataField":
            declared[element.get("name", "")] = element.get("dataType", "")
        elif tag == "DataDictionary":
            break
    return [c for c in columns if declared.get(c) == "float"]


def target_field(X: pd.DataFrame) -> str:
    """A target field name that no input column uses."""
    name = "y"
    while name in X.columns:
        name = f"_{name}"
    return name


def verified_output(estimator: object) -> str:
    """The reference output that ``PMMLPipeline.verify`` embeds and JPMML's replay compares.

    sklearn2pmml embeds a classifier's probabilities where it has ``predict_proba`` (its label is then not
    compared), else its label; a regressor's value.
    """
    return "predict_proba" if is_classifier(estimator) and hasattr(estimator, "predict_proba") else "predict"


def verification_precision(estimator: object, expected: np.ndarray) -> tuple[float, float]:
    """JPMML's ``precision`` and ``zeroThreshold`` for the embedded rows, from Parity's float64 band.

    JPMML accepts a replayed value ``a`` for an expected ``e`` when both lie within ``zeroThreshold`` of
    zero, or when ``|a - e| <= precision * |e|``. Parity's band for the same output
    (:func:`parity.core.tolerances.tolerance_for`, float64) is ``|a - e| <= atol * scale + rtol * |e|``: its
    ``rtol`` becomes the precision and ``atol * scale`` (scale 1 for probabilities) the zero threshold. Away
    from zero the replay is then at least as strict as the band (it drops the atol term); near zero, where a
    relative check means nothing, it accepts values within the band's atol of zero. Labels are exact:
    precision and zero threshold 0.

    Parameters
    ----------
    estimator : fitted estimator
    expected : numpy.ndarray
        The estimator's :func:`verified_output` on the rows to embed (its scale scales the band).

    Returns
    -------
    tuple of (float, float)
        ``(precision, zeroThreshold)`` for ``PMMLPipeline.verify``.
    """
    band = tolerance_for("float64", kind_of(verified_output(estimator), is_classifier(estimator)))
    if isinstance(band, Exact):
        return 0.0, 0.0
    scale = scale_of(np.asarray(expected, dtype=float)) if band.scaled else 1.0
    return band.rtol, band.atol * scale


def float32_exact(X: pd.DataFrame) -> pd.DataFrame:
    """``X`` with its float columns rounded to the nearest float32 (and kept as float64).

    sklearn2pmml declares ``dataType="float"`` for the inputs of tree models and of ensembles holding them,
    and JPMML rounds such inputs to float32 before evaluating: on double inputs a soft VotingClassifier's
    replayed probabilities then differ from scikit-learn's by ~3e-7 relative (5.304797677781025E-5 vs
    5.3047993197241405E-5), though the PMML is right. Rounding is a no-op for a value that is already a
    float32, and a double field reads the rounded value as it is, so whatever each field's type, JPMML
    evaluates the embedded rows on the inputs scikit-learn did.
    """
    rounded = X.copy()
    for column in rounded.columns:
        if pd.api.types.is_float_dtype(rounded[column]):
            rounded[column] = rounded[column].astype(np.float32).astype(np.float64)
    return rounded


def make_pipeline(estimator: object, X: pd.DataFrame, verify_rows: int = VERIFY_ROWS):
    """Wrap ``estimator`` in a PMMLPipeline with named fields and embedded verification rows.

    The rows are embedded with the precision of :func:`verification_precision`; JPMML's default (1e-13)
    fails correct conversions (MultinomialNB: 2.8383804717854834E-12 vs 2.8383804717850403E-12). Their
    inputs are :func:`float32_exact`, so a field the PMML declares ``dataType="float"`` gets the very values
    scikit-learn computed the expected outputs from.
    """
    from sklearn2pmml import make_pmml_pipeline

    pipeline = make_pmml_pipeline(estimator, active_fields=list(X.columns), target_fields=[target_field(X)])
    sample = float32_exact(X.sample(n=min(verify_rows, len(X)), random_state=0)) if verify_rows else None
    if sample is not None:
        expected = getattr(pipeline, verified_output(estimator))(sample)
        precision, zero_threshold = verification_precision(estimator, expected)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            pipeline.verify(sample, precision=precision, zeroThreshold=zero_threshold)
    # verify() embeds nothing for a final estimator that is neither a classifier nor a regressor (KMeans)
    embedded = 0 if sample is None or getattr(pipeline, "verification", None) is None else len(sample)
    return pipeline, embedded


def convert_pmml(
    estimator: object,
    X: pd.DataFrame,
    out_path: Path,
    converter: EngineConverter | WarmPmmlConverter,
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
    converter : EngineConverter or WarmPmmlConverter
        The long-lived JVM to convert in (one per process: ``shared_pmml_converter()``).
    verify_rows : int
        How many rows to embed; 0 embeds none.

    Returns
    -------
    Conversion
        ``unsupported`` with sklearn2pmml's message when it refuses part of the model or a setting
        (:func:`refuses`); ``failed`` with its exceptions otherwise.
    """
    import sklearn2pmml

    start = time.perf_counter()
    out_path.unlink(missing_ok=True)  # a failed conversion must not leave an earlier artifact looking current
    if not hasattr(estimator, "predict"):
        message = (
            f"{type(estimator).__name__} has no predict: Parity validates PMML through its target and "
            "probability fields, which a transformer-only PMML does not have."
        )
        return _refused(ConversionStatus.UNSUPPORTED, message, start)
    try:
        pipeline, embedded = make_pipeline(estimator, X, verify_rows)
    except Exception as err:
        detail = "".join(traceback.format_exception_only(err)).strip()
        return _refused(ConversionStatus.FAILED, f"preparing the PMMLPipeline: {detail}", start)
    with tempfile.TemporaryDirectory(prefix="parity-pmml-") as scratch:
        try:
            pickled = dump_for_java(pipeline, Path(scratch))
        except (
            pickle.PicklingError,
            AttributeError,
            TypeError,
        ) as err:  # e.g. a lambda in a FunctionTransformer
            detail = "".join(traceback.format_exception_only(err)).strip()
            message = f"pickling the PMMLPipeline for the converter: {detail}. Use importable functions."
            return _refused(ConversionStatus.FAILED, message, start)
        reply = converter.convert(pickled, out_path)
    if not reply.ok:
        status = ConversionStatus.UNSUPPORTED if refuses(reply.log) else ConversionStatus.FAILED
        message = _converter_message(reply.log)
        if reply.blocked_connections:
            message += f"\n(blocked outgoing connection(s): {', '.join(reply.blocked_connections)})"
        out_path.unlink(missing_ok=True)
        return _refused(status, message, start)
    classes = getattr(estimator, "classes_", None) if is_classifier(estimator) else None
    fields = result_fields(estimator, target_field(X))
    details = PmmlDetails(
        target=target_field(X),
        classes=None if classes is None else [str(c) for c in classes],
        outputs={"label": "predict", "probabilities": "predict_proba"}
        if classes is not None
        else {"value": "predict"},
        verification_rows=embedded,
        precision=precision_of(out_path),
        sklearn2pmml=sklearn2pmml.__version__,
        fields=fields,
        not_emitted=not_emitted(estimator, fields),
        float_inputs=float_inputs(out_path, [str(c) for c in X.columns]),
    )
    return Conversion(
        format="pmml",
        status=ConversionStatus.CONVERTED,
        path=out_path,
        message=_embedded_message(pipeline, embedded),
        seconds=_since(start),
        details=details,
    )


def refuses(log: str) -> bool:
    """Whether a failed conversion's log says sklearn2pmml does not support the model, not that it broke.

    Only the exception lines count (a log's other lines may say anything): one whose class is an
    ``Unsupported*Exception`` (``UnsupportedFeatureException``, ``UnsupportedLabelException``,
    ``UnsupportedAttributeException``, ``UnsupportedElementException``, ``UnsupportedOperationException``...)
    or whose message is worded as a refusal (see :data:`_UNSUPPORTED_WORDS`).

    Parameters
    ----------
    log : str
        Everything the converter printed for the conversion (:attr:`ServerReply.log`).

    Returns
    -------
    bool
    """
    for line in log.splitlines():
        match = _EXCEPTION_LINE.match(line.strip())
        if match and (
            _UNSUPPORTED_EXCEPTIONS.search(match["name"]) or _UNSUPPORTED_WORDS.search(match["message"] or "")
        ):
            return True
    return False


def _embedded_message(pipeline: object, embedded: int) -> str:
    verification = getattr(pipeline, "verification", None)
    if not embedded or verification is None:
        return "no verification rows embedded"
    return (
        f"{embedded} verification rows embedded (precision {verification.precision:g}, "
        f"zeroThreshold {verification.zeroThreshold:g})"
    )


def _refused(status: ConversionStatus, message: str, start: float) -> Conversion:
    return Conversion(format="pmml", status=status, message=message, seconds=_since(start))


def _converter_message(log: str, limit: int = 8) -> str:
    """The lines of the converter's log that say what went wrong, its exceptions (the causes too) first.

    The refused telemetry call is left out: :attr:`ServerReply.blocked_connections` reports it.
    """
    lines = [line for line in log.splitlines() if line.strip() and _BLOCKED_BY_US not in line]
    exceptions = [line for line in lines if _EXCEPTION_LINE.match(line.strip())]
    telling = exceptions + [line for line in lines if line not in exceptions and _TELLING.search(line)]
    return "\n".join((telling or lines)[:limit]) or "the converter failed without a message"


#: Log lines worth showing besides exceptions (sklearn2pmml's own SEVERE summary, a "not supported" warning).
_TELLING = re.compile(r"Exception|Error|not supported|SEVERE")
#: How ParityConverterServer words the telemetry connection it refused (see converters/pmml_server.py).
_BLOCKED_BY_US = "ParityConverterServer refuses network access"


def _since(start: float) -> float:
    return time.perf_counter() - start
