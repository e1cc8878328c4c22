"""scikit-learn → ONNX with skl2onnx: pinned opset, ZipMap off where the converter has it, matrix or
per-column inputs; skl2onnx's refusals are ``unsupported``, its other errors ``failed``."""

from __future__ import annotations

import re
import time
import traceback
import warnings
from pathlib import Path
from typing import Literal

import pandas as pd
from sklearn.base import is_classifier, is_clusterer, is_outlier_detector, is_regressor
from sklearn.pipeline import Pipeline

from parity.core.records import Conversion, ConversionStatus, OnnxDetails, OnnxInput, Precision
from parity.registry.predictions import reference_outputs

#: The opsets every ONNX artifact is written for; recorded in each conversion's details.
TARGET_OPSET: dict[str, int] = {"": 18, "ai.onnx.ml": 3}
FLOAT: Literal["float32"] = "float32"

#: Converter options Parity asks for, each applied only where skl2onnx's converter for that estimator
#: declares the option and the value. ZipMap off: labels and a probability matrix instead of a sequence of
#: maps, which onnx's ReferenceEvaluator does not implement and many consumers cannot read (FACTS.md).
WANTED_OPTIONS: dict[str, object] = {"zipmap": False}


def input_spec(X: pd.DataFrame, number: Literal["float32", "float64"] = FLOAT) -> list[OnnxInput]:
    """How the reference columns become ONNX inputs.

    One ``number`` matrix ``X`` when every column is numeric (or boolean); otherwise one ``[N, 1]`` input per
    column: ``number`` for numbers, string for everything else (categories).
    """
    numeric = [pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c]) for c in X.columns]
    if all(numeric):
        return [OnnxInput(name="X", columns=[str(c) for c in X.columns], dtype=number)]
    return [
        OnnxInput(name=str(c), columns=[str(c)], dtype=number if is_num else "string")
        for c, is_num in zip(X.columns, numeric, strict=True)
    ]


#: ONNX tensor element types of numeric inputs → the precision they carry.
_ELEMENT_PRECISION: dict[int, Precision] = {1: "float32", 11: "float64"}  # TensorProto.FLOAT, .DOUBLE


def precision_of(model: object) -> Precision:
    """An ONNX model's precision, read from its graph: float64 only when every numeric input is double.

    Parameters
    ----------
    model : onnx.ModelProto
    """
    kinds = [
        _ELEMENT_PRECISION[i.type.tensor_type.elem_type]
        for i in model.graph.input  # type: ignore[attr-defined]
        if i.type.tensor_type.elem_type in _ELEMENT_PRECISION
    ]
    return "float64" if kinds and all(k == "float64" for k in kinds) else "float32"


def output_roles(estimator: object) -> dict[str, str]:
    """Which reference output each ONNX output skl2onnx emits for this kind of estimator stands for.

    The roles follow the estimator's kind, not the artifact: an artifact that lacks one of these outputs
    is missing something its converter emits (a coverage failure), not a model without it.
    """
    if is_classifier(estimator):
        scores = "predict_proba" if hasattr(estimator, "predict_proba") else "decision_function"
        return {"label": "predict", "probabilities": scores}
    if is_outlier_detector(estimator):
        return {"label": "predict", "scores": "decision_function"}
    if is_clusterer(estimator):
        return {"label": "predict", "scores": "transform"}
    if is_regressor(estimator) or hasattr(estimator, "predict"):
        return {"variable": "predict"}
    return {"variable": "transform"}


#: Final estimators whose binary scores skl2onnx emits as (N, 2) = [d, -d] (libsvm's sign), not [-d, d].
NEGATED_BINARY_SCORES: frozenset[str] = frozenset({"SVC", "NuSVC"})


def layouts(estimator: object) -> dict[str, str]:
    """The layout of each reference output whose ONNX output could be read two ways (a binary classifier's
    scores without probabilities: (N, 2) = [-d, d], or [d, -d] for SVC)."""
    if not is_classifier(estimator) or hasattr(estimator, "predict_proba"):
        return {}
    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    negated = type(final).__name__ in NEGATED_BINARY_SCORES
    return {"decision_function": "(N, 2) = [d, -d]" if negated else "(N, 2) = [-d, d]"}


def not_emitted(estimator: object, roles: dict[str, str]) -> dict[str, str]:
    """The estimator's reference outputs that skl2onnx emits no output for, each with the reason."""
    emitted = ", ".join(f"{name} ({role})" for name, role in roles.items())
    return {
        output: f"skl2onnx emits {emitted} for a {type(estimator).__name__}: no output for {output}"
        for output in reference_outputs(estimator)
        if output not in roles.values()
    }


def allowed_options(estimator: object) -> dict[str, list[object] | None]:
    """The options skl2onnx's converter for this estimator's type declares, with their allowed values.

    Parameters
    ----------
    estimator : estimator
        One model object (not a container such as a Pipeline, whose steps have converters of their own).

    Returns
    -------
    dict of str to list or None
        Option name → its allowed values (None: any value). Empty when skl2onnx has no converter for the
        type (the conversion then says so itself), when the converter declares no options, or when it
        passes every option through unchecked (``"passthrough"``: nothing says what it would do with one).
    """
    from skl2onnx import get_model_alias
    from skl2onnx.common._registration import get_converter

    try:
        declared = get_converter(get_model_alias(type(estimator))).get_allowed_options()
    except (RuntimeError, ValueError):  # no alias / no converter for the alias
        return {}
    return dict(declared) if isinstance(declared, dict) else {}


def converter_options(estimator: object) -> dict[int, dict[str, object]] | None:
    """skl2onnx ``options`` for converting ``estimator``: :data:`WANTED_OPTIONS` where each converter takes them.

    Every classifier gets an entry keyed by its ``id``, the top-level one and each classifier step of a
    Pipeline (nested ones too), even when its converter takes none of the options: skl2onnx's Pipeline
    parser gives a classifier step without an entry ``zipmap=True``, which a converter without that option
    (LinearSVC) refuses with a NameError.

    Parameters
    ----------
    estimator : fitted estimator or Pipeline

    Returns
    -------
    dict or None
        ``{id(model): {option: value}}``; None when the model holds no classifier.
    """
    options: dict[int, dict[str, object]] = {}
    for model in _models_of(estimator):
        if isinstance(model, Pipeline) or not is_classifier(model):
            continue
        allowed = allowed_options(model)
        options[id(model)] = {
            name: value
            for name, value in WANTED_OPTIONS.items()
            if name in allowed and (allowed[name] is None or value in (allowed[name] or ()))
        }
    return options or None


def _models_of(estimator: object) -> list[object]:
    """The estimator and the models inside it (depth first): every step of a Pipeline, and a search's
    ``best_estimator_`` (skl2onnx converts a GridSearchCV as its best estimator, with that model's options)."""
    inner = [step for _, step in estimator.steps] if isinstance(estimator, Pipeline) else []
    best = getattr(estimator, "best_estimator_", None)
    inner += [best] if best is not None else []
    return [estimator, *(m for step in inner for m in _models_of(step))]


#: How skl2onnx words "I do not support this" in the built-in errors it raises: a model or a setting it has no
#: converter for ("Unable to find a shape calculator", "... is not supported", "only supports string and
#: int64 categories", "cannot convert the model with sparse outputs"), or an option it refuses ("Option
#: 'zipmap' not in [...]", "Unexpected value ... for option", "Options [...] are not registerd").
_REFUSAL_WORDS = re.compile(
    r"not supported|unsupported|not (yet )?implemented|only supports?|cannot convert|unable to convert"
    r"|unable to find (a shape calculator|alias)|converter is (likely )?missing|option '[^']*' not in"
    r"|for option '|are not registerd",
    re.IGNORECASE,
)
#: The exception types skl2onnx raises those words with (a TypeError or AttributeError is a broken model).
_WORDED_REFUSALS: tuple[type[Exception], ...] = (RuntimeError, ValueError, NameError)


def refuses(err: BaseException) -> bool:
    """Whether an exception raised by skl2onnx says it does not support the model, rather than that it broke.

    Parameters
    ----------
    err : BaseException
        What ``skl2onnx.convert_sklearn`` raised.

    Returns
    -------
    bool
        True for skl2onnx's own ``MissingConverter`` and ``MissingShapeCalculator``, for
        ``NotImplementedError``, and for a RuntimeError, ValueError or NameError worded as a refusal
        (see :data:`_REFUSAL_WORDS`); False for anything else, such as a converter crashing on the model.
    """
    from skl2onnx.common.exceptions import MissingConverter, MissingShapeCalculator

    if isinstance(err, (MissingConverter, MissingShapeCalculator, NotImplementedError)):
        return True
    return isinstance(err, _WORDED_REFUSALS) and bool(_REFUSAL_WORDS.search(str(err)))


def convert_onnx(estimator: object, X: pd.DataFrame, out_path: Path, *, double: bool = False) -> Conversion:
    """Convert a fitted estimator to ONNX.

    Parameters
    ----------
    estimator : fitted estimator
    X : pandas.DataFrame
        Reference rows: their column types decide the inputs.
    out_path : Path
        Where to write the ``.onnx`` file.
    double : bool
        Declare numeric inputs as double (the ``double`` variant): skl2onnx then keeps doubles where its
        converters can (linear models, MLPs, forests at ai.onnx.ml opset 3); the artifact's precision is read
        from the graph either way.

    Returns
    -------
    Conversion
        ``unsupported`` with skl2onnx's message when it refuses a part of the model or a setting
        (:func:`refuses`); ``failed`` with its error otherwise.
    """
    import skl2onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    start = time.perf_counter()
    out_path.unlink(missing_ok=True)
    spec = input_spec(X, "float64" if double else FLOAT)
    tensor = {FLOAT: FloatTensorType, "float64": DoubleTensorType, "string": StringTensorType}
    types = [(e.name, tensor[e.dtype]([None, len(e.columns)])) for e in spec]
    variant = "double" if double else None
    options = converter_options(estimator)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = skl2onnx.convert_sklearn(
                estimator, initial_types=types, options=options, target_opset=TARGET_OPSET
            )
    except Exception as err:
        if refuses(err):
            return _refused(ConversionStatus.UNSUPPORTED, _first_lines(err), start, variant)
        detail = "".join(traceback.format_exception_only(err)).strip()
        return _refused(ConversionStatus.FAILED, detail, start, variant)
    graph_inputs = [i.name for i in model.graph.input]
    if len(graph_inputs) != len(spec):
        message = f"skl2onnx made {len(graph_inputs)} inputs for {len(spec)} declared ones: {graph_inputs}"
        return _refused(ConversionStatus.FAILED, message, start, variant)
    # skl2onnx sanitises names such as 'a/b'
    spec = [entry.model_copy(update={"name": name}) for entry, name in zip(spec, graph_inputs, strict=True)]
    out_path.write_bytes(model.SerializeToString())
    outputs = [o.name for o in model.graph.output]
    roles = output_roles(estimator)
    details = OnnxDetails(
        inputs=spec,
        outputs=roles,
        not_emitted=not_emitted(estimator, roles),
        layouts=layouts(estimator),
        float_inputs=[column for entry in spec if entry.dtype == FLOAT for column in entry.columns],
        # skl2onnx treats the target as a ceiling: record what the file declares, and the ceiling
        opset={entry.domain or "ai.onnx": entry.version for entry in model.opset_import},
        target_opset={domain or "ai.onnx": version for domain, version in TARGET_OPSET.items()},
        precision=precision_of(model),
        skl2onnx=skl2onnx.__version__,
    )
    message = f"{len(spec)} input(s), outputs {', '.join(outputs)}"
    return Conversion(
        format="onnx",
        status=ConversionStatus.CONVERTED,
        path=out_path,
        message=message,
        seconds=time.perf_counter() - start,
        details=details,
        variant=variant,
    )


def _refused(status: ConversionStatus, message: str, start: float, variant: str | None = None) -> Conversion:
    seconds = time.perf_counter() - start
    return Conversion(format="onnx", status=status, message=message, seconds=seconds, variant=variant)


def _first_lines(err: Exception, limit: int = 6) -> str:
    return "\n".join(str(err).strip().splitlines()[:limit])
