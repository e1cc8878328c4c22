"""``python -m parity.cli``: the same command line as the ``parity`` console script."""

import sys

from parity.cli import main

sys.exit(main())
