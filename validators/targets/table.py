"""The targets table: where each artifact runs, with the settings that change numerics."""

from __future__ import annotations

import os
import tomllib
from dataclasses import fields
from pathlib import Path

from parity.core.errors import InvalidInputError
from parity.core.records import Role

from .reaches import REACHES
from .target import GRAPH_OPTIMIZATIONS, RunnerSettings, Target

__all__ = ["DEFAULT_FILE", "RunnerSettings", "Target", "load_roles", "load_targets"]

DEFAULT_FILE = Path(__file__).with_name("targets.toml")


def _check(target: Target, source: str) -> Target:
    reach = REACHES.get(target.reach)
    problem = None
    if reach is None:
        problem = f"reach {target.reach!r} is not one of {', '.join(REACHES)}"
    elif target.graph_optimization not in GRAPH_OPTIMIZATIONS:
        problem = (
            f"graph_optimization {target.graph_optimization!r} is not one of {', '.join(GRAPH_OPTIMIZATIONS)}"
        )
    elif target.threads < 1:
        problem = f"threads must be at least 1, got {target.threads}"
    else:
        problem = reach.problem(target)
    if problem:
        raise InvalidInputError(f"{source}: target {target.name!r}: {problem}.")
    return target


def _read(path: str | os.PathLike[str] | None) -> tuple[Path, dict]:
    source = Path(path or os.environ.get("PARITY_TARGETS") or DEFAULT_FILE)
    try:
        return source, tomllib.loads(source.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise InvalidInputError(f"targets file {source}: {err}. Fix it or unset PARITY_TARGETS.") from err


def _role(value: object, what: str, source: Path) -> Role:
    try:
        return Role(str(value))
    except ValueError:
        roles = " or ".join(f'"{r}"' for r in Role)
        raise InvalidInputError(f"{source}: {what}: role {value!r} is not {roles}.") from None


def _role_as_required(entry: dict, source: Path) -> dict:
    """A target's ``role`` as the ``required`` flag it stands for (``deploy``: required)."""
    if "role" not in entry:
        return entry
    what = f"target {entry.get('name', '?')!r}"
    if "required" in entry:
        raise InvalidInputError(
            f'{source}: {what}: give role or required, not both (role = "deploy" is required).'
        )
    rest = {k: v for k, v in entry.items() if k != "role"}
    return {**rest, "required": _role(entry["role"], what, source) is Role.DEPLOY}


def load_roles(path: str | os.PathLike[str] | None = None) -> dict[str, Role]:
    """The installation's runtime roles: the targets file's ``[roles]`` table (runtime name → role).

    Parameters
    ----------
    path : path-like, optional
        As for :func:`load_targets`.

    Returns
    -------
    dict of str to Role
        Only the runtimes the file names; the others keep their default role. The names are checked
        against the runtimes that exist where they are used (:func:`parity.validators.roles_for`).

    Raises
    ------
    InvalidInputError
        For an unreadable file or a role other than ``deploy``/``witness``.
    """
    source, data = _read(path)
    roles = data.get("roles", {})
    if not isinstance(roles, dict):
        raise InvalidInputError(f'{source}: [roles] must be a table of runtime = "deploy" | "witness".')
    return {str(name): _role(value, f"[roles] {name}", source) for name, value in roles.items()}


def load_targets(path: str | os.PathLike[str] | None = None) -> dict[str, Target]:
    """Read the targets table.

    Parameters
    ----------
    path : path-like, optional
        A TOML file with ``[[target]]`` entries; default ``$PARITY_TARGETS``, else the built-in table.

    Returns
    -------
    dict of str to Target
        In file order; the first required target is the one others are compared against.

    Raises
    ------
    InvalidInputError
        For an unreadable file, unknown keys, duplicate names, impossible settings or no required target.
    """
    source, data = _read(path)
    entries = data.get("target", [])
    known = {f.name for f in fields(Target)} | {"role"}
    table: dict[str, Target] = {}
    for entry in entries:
        entry = _role_as_required(entry, source)
        unknown = set(entry) - known
        if unknown:
            raise InvalidInputError(
                f"{source}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}."
            )
        try:
            target = _check(Target(**entry), str(source))
        except TypeError as err:
            raise InvalidInputError(f"{source}: {err}.") from err
        if target.name in table:
            raise InvalidInputError(
                f"{source}: target {target.name!r} is defined twice; names must be unique."
            )
        table[target.name] = target
    if not any(t.required for t in table.values()):
        raise InvalidInputError(f"{source}: no required target; a model must pass somewhere to be archived.")
    return table
