"""``python -m parity.cli``: the same command line as the ``parity`` console script."""

from parity.cli.app import console

console()
