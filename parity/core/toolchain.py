"""Versions of every tool that touches a model, recorded in each bundle."""

from __future__ import annotations

import importlib.metadata
import platform
from functools import cache

from .java import java_version

#: Distributions whose versions decide what a conversion or a runtime produces.
TOOLS: tuple[str, ...] = (
    "parity",
    "scikit-learn",
    "skl2onnx",
    "onnx",
    "onnxruntime",
    "sklearn2pmml",
    "pypmml",
    "jpmml_evaluator",
    "JPype1",
    "skops",
    "numpy",
    "pandas",
    "pyarrow",
    "protobuf",
    "prefect",
)


@cache
def tool_versions() -> dict[str, str | None]:
    """Installed versions of :data:`TOOLS`, Python and Java (None when absent)."""
    versions: dict[str, str | None] = {}
    for name in TOOLS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    java = java_version()
    versions["java"] = java[1] if java else None
    return versions
