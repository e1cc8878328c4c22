"""One mutation suite per session (families fitted and converted once), and its counts in the summary."""

from __future__ import annotations

import pytest

from tests.fidelity.suite import Suite, counts_table

_SUITE = pytest.StashKey[Suite]()


@pytest.fixture(scope="session")
def suite(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Suite:
    """The families, their correct conversions, and every mutant validated so far."""
    made = Suite(tmp_path_factory.mktemp("fidelity"))
    request.config.stash[_SUITE] = made
    return made


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Mutants by class (caught / not observable / missed), and each missed one with its cells."""
    made = config.stash.get(_SUITE, None)
    if made is None or not made.results:
        return
    terminalreporter.write_sep("-", "mutation suite: mutants by class")
    terminalreporter.write_line(counts_table(made.results))
    for result in made.results:
        if result.status == "missed":
            cells = "; ".join(f"{c.cell}: {c.verdict}" for c in result.checks) or "no cells"
            terminalreporter.write_line(f"missed {result.id} ({result.observable}): {cells}")
