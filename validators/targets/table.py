"""The targets table: where each artifact runs, with the settings that change numerics."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from parity.core.defaults import host_platform
from parity.core.errors import InvalidInputError

DEFAULT_FILE = Path(__file__).with_name("targets.toml")
REACHES = ("process", "emulator", "work-pool")
GRAPH_OPTIMIZATIONS = ("disable", "basic", "extended", "all")
#: Reference rows evaluated on a target that is not this process, unless the table says otherwise.
REMOTE_SAMPLE_ROWS = 200
EMULATED_PLATFORMS = {"linux/aarch64": "aarch64"}


@dataclass(frozen=True)
class Target:
    """One place artifacts run. See ``targets.toml`` for what each field means."""

    name: str
    platform: str
    reach: str
    required: bool = True
    threads: int = 1
    graph_optimization: str = "all"
    cpu: str | None = None
    sample_rows: int | None = None
    deployment: str | None = None

    def rows_limit(self) -> int | None:
        """How many reference rows this target evaluates (None: all)."""
        if self.sample_rows is not None:
            return self.sample_rows
        return None if self.reach == "process" else REMOTE_SAMPLE_ROWS

    def settings(self) -> dict:
        """The settings that change numerics, for the report."""
        data = {"threads": self.threads, "graph_optimization": self.graph_optimization}
        if self.cpu:
            data["cpu"] = self.cpu
        return data


def _check(target: Target, source: str) -> Target:
    problem = None
    if target.reach not in REACHES:
        problem = f"reach {target.reach!r} is not one of {', '.join(REACHES)}"
    elif target.graph_optimization not in GRAPH_OPTIMIZATIONS:
        problem = (
            f"graph_optimization {target.graph_optimization!r} is not one of {', '.join(GRAPH_OPTIMIZATIONS)}"
        )
    elif target.threads < 1:
        problem = f"threads must be at least 1, got {target.threads}"
    elif target.reach == "process" and target.platform != host_platform():
        problem = f"a process target runs here, on {host_platform()}, not on {target.platform}"
    elif target.reach == "emulator" and target.platform not in EMULATED_PLATFORMS:
        problem = f"no emulator for {target.platform}; emulated platforms: {', '.join(EMULATED_PLATFORMS)}"
    elif target.reach == "work-pool" and not target.deployment:
        problem = "a work-pool target needs deployment = 'flow-name/deployment-name'"
    if problem:
        raise InvalidInputError(f"{source}: target {target.name!r}: {problem}.")
    return target


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
    source = Path(path or os.environ.get("PARITY_TARGETS") or DEFAULT_FILE)
    try:
        entries = tomllib.loads(source.read_text()).get("target", [])
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise InvalidInputError(f"targets file {source}: {err}. Fix it or unset PARITY_TARGETS.") from err
    known = {f.name for f in fields(Target)}
    table: dict[str, Target] = {}
    for entry in entries:
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
