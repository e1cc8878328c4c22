"""The provenance scikit-learn's model-persistence guide asks to keep with a model."""

from __future__ import annotations

import importlib.metadata
import inspect
import platform
import sys
from pathlib import Path


def environment() -> dict[str, object]:
    """Versions of Python, scikit-learn and every installed distribution, and the platform."""
    distributions = {
        dist.metadata["Name"]: dist.version
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"]
    }
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "scikit-learn": importlib.metadata.version("scikit-learn"),
        "distributions": dict(sorted(distributions.items(), key=lambda item: item[0].lower())),
    }


def calling_source_file(own_namespace: str = "parity") -> Path | None:
    """The source file of the first caller outside Parity's own modules, when it is a real file."""
    for frame in inspect.stack()[1:]:
        filename = frame.filename
        module = str(frame.frame.f_globals.get("__name__", ""))
        if filename.startswith("<") or module == own_namespace or module.startswith(own_namespace + "."):
            continue
        path = Path(filename).resolve()
        if "site-packages" in path.parts or path.is_relative_to(Path(sys.prefix).resolve()):
            continue
        return path if path.is_file() else None
    return None


def environment_sklearn() -> str:
    """The scikit-learn version of this process."""
    return importlib.metadata.version("scikit-learn")
