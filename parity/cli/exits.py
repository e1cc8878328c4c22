"""The exit codes every ``parity`` command shares (README.md, "The command line")."""

from __future__ import annotations

#: Every model passed, the bundle is sound, the command did what it was asked.
EXIT_OK = 0
#: A model failed validation or was unsupported; an archive bundle needs action.
EXIT_FAILED = 1
#: Bad usage or a broken environment; the message says what to fix.
EXIT_USAGE = 2
