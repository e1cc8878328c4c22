"""Where registered models come from: a file registry with safe loading and recorded provenance."""

from .loading import ALLOWLIST, load_model, sha256_of
from .store import FileRegistry, ModelRef, RegisteredModel, check_name

__all__ = [
    "ALLOWLIST",
    "FileRegistry",
    "ModelRef",
    "RegisteredModel",
    "check_name",
    "load_model",
    "sha256_of",
]
