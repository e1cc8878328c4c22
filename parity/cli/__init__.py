"""The ``parity`` command line: doctor, register, models, run, demo, targets, deploy, serve, audit.

One module per command; :mod:`parity.cli.app` gathers them and holds :func:`main`.
"""

from __future__ import annotations

from .app import main
from .exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "main"]
