"""The few names every layer agrees on: default folders, the progress logger, this machine's platform."""

from __future__ import annotations

import platform

#: Where ``parity`` keeps registered models and archive bundles unless told otherwise.
DEFAULT_REGISTRY = "parity-registry"
DEFAULT_ARCHIVE = "parity-archive"

#: The logger flows write one line per finished model to, and the CLI shows on the terminal.
PROGRESS_LOGGER = "parity.progress"


def host_platform() -> str:
    """This machine as a target platform, e.g. ``linux/x86_64``."""
    return f"{platform.system().lower()}/{platform.machine()}"
