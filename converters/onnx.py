"""scikit-learn → ONNX with skl2onnx: pinned opset, ZipMap off, matrix or per-column inputs."""

from __future__ import annotations

import time
import traceback
import warnings
from pathlib import Path
from typing import Literal

import pandas as pd
from sklearn.base import is_classifier, is_clusterer, is_outlier_detector, is_regressor

from parity.core.records import Conversion, ConversionStatus, OnnxDetails, OnnxInput, Precision
from parity.registry.predictions import reference_outputs

#: The opsets every ONNX artifact is written for; recorded in each conversion's details.
TARGET_OPSET: dict[str, int] = {"": 18, "ai.onnx.ml": 3}
FLOAT: Literal["float32"] = "float32"


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


def not_emitted(estimator: object, roles: dict[str, str]) -> dict[str, str]:
    """The estimator's reference outputs that skl2onnx emits no output for, each with the reason."""
    emitted = ", ".join(f"{name} ({role})" for name, role in roles.items())
    return {
        output: f"skl2onnx emits {emitted} for a {type(estimator).__name__}: no output for {output}"
        for output in reference_outputs(estimator)
        if output not in roles.values()
    }


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
        ``unsupported`` with skl2onnx's message when it has no converter for a part of the model.
    """
    import skl2onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType
    from skl2onnx.common.exceptions import MissingConverter, MissingShapeCalculator

    start = time.perf_counter()
    out_path.unlink(missing_ok=True)
    spec = input_spec(X, "float64" if double else FLOAT)
    tensor = {FLOAT: FloatTensorType, "float64": DoubleTensorType, "string": StringTensorType}
    types = [(e.name, tensor[e.dtype]([None, len(e.columns)])) for e in spec]
    variant = "double" if double else None
    options = {id(estimator): {"zipmap": False}} if is_classifier(estimator) else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = skl2onnx.convert_sklearn(
                estimator, initial_types=types, options=options, target_opset=TARGET_OPSET
            )
    except (MissingConverter, MissingShapeCalculator, NotImplementedError) as err:
        return _refused(ConversionStatus.UNSUPPORTED, _first_lines(err), start, variant)
    except Exception as err:
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
