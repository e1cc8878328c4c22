"""Where registered models come from: a file registry or the MLflow Model Registry (see registries.py),
with safe loading and recorded provenance."""

from .loading import ALLOWLIST, load_model, sha256_of
from .registries import Registry, open_registry
from .store import FileRegistry, ModelRef, RegisteredModel, Result, check_name

__all__ = [
    "ALLOWLIST",
    "FileRegistry",
    "ModelRef",
    "RegisteredModel",
    "Registry",
    "Result",
    "check_name",
    "load_model",
    "open_registry",
    "sha256_of",
]
