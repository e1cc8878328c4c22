"""Prefect settings that must be in place before ``prefect`` is first imported (it freezes them)."""

from __future__ import annotations

import os

#: Applied unless the user set them: no phoning home, and room for a slow first start of the
#: ephemeral server on a 2-core machine (FACTS.md: 14-20 s quiet; Prefect's default is 20 s). At load 10
#: (issue 9) start-up is CPU-bound and several times slower, so the limit is 15x the quiet figure: it only
#: bounds a hang, the wait ends as soon as the server answers.
DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
    "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.5",
}


def configure() -> None:
    """Set :data:`DEFAULTS` for anything the environment leaves unset."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
