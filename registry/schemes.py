"""The URI schemes that name a registry rather than a folder: the one fact about registry URIs that modules
below :mod:`parity.registry.registries` need (the registration event keeps a URI as it is, and the file
registry, which :mod:`registries` imports, sends that event).
:data:`parity.registry.registries.REGISTRY_KINDS` maps each scheme to its kind and must name exactly these.
"""

from __future__ import annotations

REGISTRY_SCHEMES = ("mlflow+http", "mlflow+https", "mlflow")


def scheme_of(text: str) -> str | None:
    """The registry scheme ``text`` starts with (``mlflow+http``...), or None for a folder."""
    head, sep, _ = text.partition(":")
    return head.lower() if sep and head.lower() in REGISTRY_SCHEMES else None


def is_uri(text: str) -> bool:
    """Whether ``text`` names a registry by URI rather than a folder."""
    return scheme_of(str(text)) is not None
