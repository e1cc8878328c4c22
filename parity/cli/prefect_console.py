"""Keep the terminal for Parity's own lines: Prefect's console handler prints every task transition.

Prefect reads its logging configuration (``prefect/logging/logging.yml``) when it is first imported and
attaches one ``PrefectConsoleHandler`` to the root logger (and to uvicorn's and fastapi's). Rather than
passing a level through ``os.environ`` before that import, the CLI lowers that handler's level for the
duration of a command and puts it back afterwards. Prefect's logs still reach its API (and so the UI)
at their usual level: the API handler is a different one.
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
    """Within the block, Prefect's console shows warnings and errors only, unless ``verbose``.

    Parameters
    ----------
    verbose : bool
        Leave Prefect's console as configured (every task transition).
    """
    if verbose or CONSOLE_LEVEL_SETTING in os.environ:
        yield
        return
    before = [(handler, handler.level) for handler in console_handlers()]
    for handler, _ in before:
        handler.setLevel(QUIET_LEVEL)
    try:
        yield
    finally:
        for handler, level in before:
            handler.setLevel(level)
