"""Runtimes × targets → comparison with the estimator's reference predictions.

:data:`RUNTIMES` is gathered from the format specs (:data:`parity.validators.formats.FORMATS`): each spec
lists its runtimes. The PMML runtimes start their JVM lazily, so a process that never evaluates PMML never
starts one.
"""

from __future__ import annotations

from collections.abc import Mapping

from parity.core.errors import InvalidInputError
from parity.core.records import Role
from parity.core.tables import table_of

from .formats import FORMATS, format_of
from .runtimes import Runtime


def _gather_runtimes() -> dict[str, Runtime]:
    misplaced = [
        f"{r.name} ({r.format}, under {s.name})"
        for s in FORMATS.values()
        for r in s.runtimes
        if r.format != s.name
    ]
    if misplaced:
        raise ValueError(f"runtimes listed under another format than their own: {', '.join(misplaced)}.")
    return table_of("runtime", [runtime for spec in FORMATS.values() for runtime in spec.runtimes])


#: Every runtime, by name. One instance per process: JVM runtimes start their JVM once.
RUNTIMES: dict[str, Runtime] = _gather_runtimes()


def default_roles() -> dict[str, Role]:
    """Every runtime's and every format's runner's default role, by name (README lists them)."""
    roles = {name: runtime.role for name, runtime in RUNTIMES.items()}
    roles.update({spec.remote.runtime: spec.remote.role for spec in FORMATS.values()})
    return roles


def resolve_roles(*overrides: Mapping[str, str] | None) -> dict[str, Role]:
    """The default roles with ``overrides`` applied in order (the installation's, then the model's).

    Raises
    ------
    InvalidInputError
        For a runtime name no format has, or a role other than ``deploy``/``witness``.
    """
    roles = default_roles()
    for override in overrides:
        for name, role in (override or {}).items():
            if name not in roles:
                raise InvalidInputError(
                    f"role for {name!r}: no runtime of that name; runtimes: {', '.join(roles)}."
                )
            try:
                roles[name] = Role(role)
            except ValueError:
                raise InvalidInputError(f"role for {name!r}: {role!r} is not deploy or witness.") from None
    return roles


def runtimes_for(fmt: str) -> list[Runtime]:
    """The runtimes that evaluate artifacts of format ``fmt``, in table order."""
    return list(format_of(fmt).runtimes)
