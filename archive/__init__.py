"""Long-term storage of what passed: immutable, checksummed bundles (PMML first)."""

from .assemble import Filed, build_report, file_model
from .bundle import MANIFEST, REJECTED, Archive, BundleResult

__all__ = ["MANIFEST", "REJECTED", "Archive", "BundleResult", "Filed", "build_report", "file_model"]
