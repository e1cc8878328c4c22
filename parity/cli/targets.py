"""``parity targets``: list the targets table and whether each target is ready; ``parity targets setup``
provisions one on this machine."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from .exits import EXIT_OK
from .options import TargetsOption
from .table import print_table

COLUMNS = ("name", "platform", "reach", "required", "settings", "ready")


class Platform(StrEnum):
    """What ``parity targets setup`` can provision."""

    AARCH64 = "aarch64"


def list_targets(ctx: typer.Context, targets: TargetsOption = None) -> int | None:
    """Print one row per target of the table; nothing when a subcommand (``setup``) follows.

    Returns
    -------
    int or None
        ``EXIT_OK``, or None when ``setup`` runs instead.

    Raises
    ------
    InvalidInputError
        The targets file is unreadable or not a valid table.
    """
    if ctx.invoked_subcommand is not None:
        return None
    from parity.validators.targets.reaches import unavailable
    from parity.validators.targets.table import load_targets

    rows = []
    for target in load_targets(targets).values():
        problem = unavailable(target)
        rows.append(
            {
                "name": target.name,
                "platform": target.platform,
                "reach": target.reach + (f" ({target.deployment})" if target.deployment else ""),
                "required": "yes" if target.required else "no",
                "settings": ", ".join(f"{k}={v}" for k, v in target.settings().items()),
                "ready": "yes" if problem is None else f"no: {problem}",
            }
        )
    print_table(rows, COLUMNS)
    return EXIT_OK


def setup(
    platform: Annotated[Platform, typer.Argument(help="what to provision", show_default=False)],
) -> int:
    """Provision an emulated target on this machine; running it again changes nothing.

    Returns
    -------
    int
        ``EXIT_OK``; a failed download or unpacking raises a ``ParityError``.
    """
    from parity.validators.targets.aarch64 import setup_aarch64

    env = setup_aarch64()
    print(f"aarch64 target ready in {env.cache_dir} (emulated CPU {env.cpu})")
    return EXIT_OK
