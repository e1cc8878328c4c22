"""Long-term storage of what passed: immutable, checksummed bundles (PMML first)."""

from .assemble import Filed, build_report, file_model
from .attempts import Attempt, attempts, filed_since, newest_attempt
from .bundle import MANIFEST, REJECTED, Archive, BundleResult

__all__ = [
    "MANIFEST",
    "REJECTED",
    "Archive",
    "Attempt",
    "BundleResult",
    "Filed",
    "attempts",
    "build_report",
    "file_model",
    "filed_since",
    "newest_attempt",
]
