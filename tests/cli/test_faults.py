"""``parity run`` killed with SIGKILL (its whole group, and its main process alone) at three points leaves
nothing behind, and a rerun completes everything. The full version: ``benchmarks/faults.py`` (10+ kills)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import faults

#: Three killed runs and a final one, each starting Prefect's temporary server (15-20 s quiet, a minute
#: or more on a loaded 2-core machine); every wait inside has its own deadline (faults.*_DEADLINE_S).
FAULTS_TIMEOUT_S = 3000


@pytest.mark.slow
@pytest.mark.timeout(FAULTS_TIMEOUT_S)
def test_killed_runs_leave_nothing_behind_and_the_rerun_completes(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(faults, "POINTS", ("load", "validate", "archive"))
    result = faults.inject(kills=3, seed=7, scratch=tmp_path)

    kills, final = result["kills"], result["final"]
    assert isinstance(kills, list) and isinstance(final, dict)
    assert [k.whole_group for k in kills] == [True, False, True]
    for kill in kills:
        assert not kill.orphans, f"{kill.point}: processes outlived the killed run: {kill.orphans}"
        assert not kill.bad_bundles, f"{kill.point}: {kill.bad_bundles}"
        assert not kill.crash_logs, f"{kill.point}: JVM crash logs in the working folder: {kill.crash_logs}"
    assert final["exit"] == 0, (tmp_path / "run.log").read_text()[-3000:]
    assert final["not_archived"] == [] and final["rejected"] == []
    assert final["staging_left"] == [], "the rerun did not sweep the killed runs' staging folders"
    assert final["bad_bundles"] == [] and final["orphans"] == [] and final["crash_logs"] == []
    assert final["versions"] >= 3
