"""Estimator → artifact converters: skl2onnx for ONNX (:mod:`.onnx`), sklearn2pmml in a warm JVM for PMML
(:mod:`.pmml`). Each returns a :class:`~parity.core.records.Conversion`, also when the converter says no.

The table of formats, which pairs each converter with the runtimes that check its artifacts, is
:data:`parity.validators.formats.FORMATS`.
"""

from __future__ import annotations

from . import onnx, pmml
from .onnx import convert_onnx
from .pmml import convert_pmml, shared_pmml_converter

__all__ = ["convert_onnx", "convert_pmml", "onnx", "pmml", "shared_pmml_converter"]
