"""Long-term storage of what passed: immutable, checksummed bundles (PMML first)."""

from .assemble import Filed, build_report, file_model
from .attempts import Attempt, attempts, filed_since, newest_attempt
from .bundle import CONTENT, MANIFEST, REJECTED, STAGING, Archive, BundleResult
from .storage import STORES, as_link, open_store, read_url

__all__ = [
    "CONTENT",
    "MANIFEST",
    "REJECTED",
    "STAGING",
    "STORES",
    "Archive",
    "Attempt",
    "BundleResult",
    "Filed",
    "as_link",
    "attempts",
    "build_report",
    "file_model",
    "filed_since",
    "newest_attempt",
    "open_store",
    "read_url",
]
