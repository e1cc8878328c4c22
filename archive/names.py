"""The names of the files a bundle holds, in one place.

Artifacts are named by their conversion (``model.pmml``, ``model.onnx``, ``model-double.onnx``...); every
other file has a fixed name, listed here. A bundle written before a name was added simply lacks that file
(``card.md``, ``report.html`` and ``outputs.parquet`` came with issue 12) and is still valid.
"""

from __future__ import annotations

from .bundle import MANIFEST, REGISTRATION

REPORT = "report.json"
METADATA = "metadata.json"
REFERENCE = "reference.parquet"
PREDICTIONS = "predictions.parquet"
SKOPS = "model.skops"
#: every runtime's converted outputs, row by row (see :mod:`parity.validators.outputs`)
OUTPUTS = "outputs.parquet"
#: the human-readable card (:mod:`parity.archive.card`)
CARD = "card.md"
#: the self-contained HTML report (:mod:`parity.archive.html_report`)
HTML_REPORT = "report.html"

#: Every fixed-name file of a bundle written now, besides its artifacts and the manifest.
FIXED_FILES = (REGISTRATION, REFERENCE, PREDICTIONS, REPORT, METADATA, SKOPS, OUTPUTS, CARD, HTML_REPORT)

__all__ = [
    "CARD",
    "FIXED_FILES",
    "HTML_REPORT",
    "MANIFEST",
    "METADATA",
    "OUTPUTS",
    "PREDICTIONS",
    "REFERENCE",
    "REGISTRATION",
    "REPORT",
    "SKOPS",
]
