"""Keep the terminal for Parity's own lines: Prefect's console handler prints every task transition.

Prefect reads its logging configuration (``prefect/logging/logging.yml``) when it is first imported and
attaches one ``PrefectConsoleHandler`` to the root logger (and to uvicorn's and fastapi's). Rather than
passing a level through ``os.environ`` before that import, the CLI lowers that handler's level from the
start of a command until its process exits: Prefect logs the shutdown of its temporary server from an
``atexit`` hook, after the command has returned. Prefect's logs still reach its API (and so the UI) at
their usual level: the API handler is a different one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

#: Prefect's own setting for the console handler's level; when the user set it, it wins.
CONSOLE_LEVEL_SETTING = "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"
#: What Prefect may still print on the terminal when ``--verbose`` is not given.
QUIET_LEVEL = logging.WARNING


def console_handlers() -> list[logging.Handler]:
    """Every Prefect console handler attached to a logger of this process (configuring Prefect first).

    Returns
    -------
    list of logging.Handler
        Each handler once, though several loggers share it.
    """
    import prefect  # noqa: F401  (importing Prefect sets its logging up; lazily, for start-up speed)
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    found: dict[int, logging.Handler] = {}
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler):
                found[id(handler)] = handler
    return list(found.values())


@contextmanager
def prefect_console(verbose: bool) -> Iterator[None]:
    """From here on, Prefect's console shows warnings and errors only, unless ``verbose``.

    The level is not put back when the block ends: what Prefect prints at the process's exit (its temporary
    server stopping) belongs to the command too.

    Parameters
    ----------
    verbose : bool
        Leave Prefect's console as configured (every task transition).
    """
    if not verbose and CONSOLE_LEVEL_SETTING not in os.environ:
        for handler in console_handlers():
            handler.setLevel(QUIET_LEVEL)
    yield
