"""Parity: prove that converted scikit-learn models predict what the originals predict."""

__version__ = "0.1.0"
