"""One target: a place artifacts run, with the settings that change numerics (see ``targets.toml``)."""

from __future__ import annotations

from dataclasses import dataclass

from parity.core.records import Role

GRAPH_OPTIMIZATIONS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class RunnerSettings:
    """What a runner is told about the target it runs for (the same fields wherever it runs)."""

    threads: int = 1
    graph_optimization: str = "all"
    #: the emulated CPU model (emulated targets only)
    cpu: str | None = None


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

    @property
    def role(self) -> Role:
        """``deploy`` for a required target (its failures block the model), ``witness`` otherwise."""
        return Role.DEPLOY if self.required else Role.WITNESS

    def settings(self) -> dict[str, int | str]:
        """The settings that change numerics, for the report."""
        data: dict[str, int | str] = {"threads": self.threads, "graph_optimization": self.graph_optimization}
        if self.cpu:
            data["cpu"] = self.cpu
        return data

    def runner_settings(self) -> RunnerSettings:
        return RunnerSettings(self.threads, self.graph_optimization, self.cpu)
