"""``python -m parity``: the same command line as the ``parity`` console script."""

from parity.cli.app import console

console()
