"""Test-wide set-up. Prefect freezes its settings at first import, so they are set here, first."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_PREFECT_HOME = tempfile.mkdtemp(prefix="parity-test-prefect-")
# Registered before Prefect is imported, so it runs after Prefect's own exit handlers (atexit is LIFO).
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "300"  # as parity.core.prefect_env
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PREFECT_API_KEY", None)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from sklearn.datasets import load_diabetes, load_iris  # noqa: E402

#: Time limit (s) of a test, by its most expensive marker (None: plain tests); a test's own
#: ``@pytest.mark.timeout`` wins, and so does ``--timeout`` on the command line. A limit catches a hang, never
#: a slow machine: the slowest test of each marker (setup + call + teardown, the first test paying for the
#: server or JVM start) on a 2-core machine, December 2026 (quiet / loaded, tracemalloc on): plain 4.5 s /
#: 97 s (test_targets' 100-tree regressor fixture: tracemalloc slows its fit 80x; pass ``--timeout=0`` when
#: tracing allocations); slow 53 s (cli `run`) / 52 s; prefect_server 65 s / 139 s; aarch64 110 s / 205 s
#: (the fan-out to the aarch64 work pool). Under `benchmarks/stress_suite.py --cpu 8` beside other runs
#: (1-minute load median 25, peak 63; issue 9) the slowest were: slow 292 s (cli `run`, over the old 240 s
#: limit), prefect_server 402 s (the `triggered` fixture of tests/deployments), aarch64 400 s; so each limit
#: is 3-6x that. prefect_server's also stays above the longest chain of one test's own bounded waits (that
#: fixture: 1800 s), so a wait fails first, with its message.
TIMEOUTS: dict[str | None, int] = {
    None: 600,
    "slow": 900,
    "prefect_server": 2400,
    "aarch64": 1200,
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every test the time limit of its most expensive marker (see :data:`TIMEOUTS`)."""
    if not config.pluginmanager.hasplugin("timeout") or config.getoption("timeout") is not None:
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            limit = max(t for m, t in TIMEOUTS.items() if m is None or item.get_closest_marker(m))
            item.add_marker(pytest.mark.timeout(limit))


@pytest.fixture(scope="session")
def iris() -> tuple[pd.DataFrame, pd.Series]:
    """Iris with named columns."""
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="session")
def diabetes() -> tuple[pd.DataFrame, pd.Series]:
    """Diabetes (unscaled) with named columns."""
    X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    return X, y


@pytest.fixture(scope="session")
def mixed() -> tuple[pd.DataFrame, pd.Series]:
    """Wine with string categories and missing numeric values (the demo's mixed-types data)."""
    from parity.cli.demo import mixed_frame

    return mixed_frame()


@pytest.fixture(scope="session")
def prefect_server():
    """One real Prefect server for the whole session (start-up is 18-24 s quiet, several times that at load
    10: the limit only bounds a hang)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=300):
        yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def s3_api(tmp_path_factory: pytest.TempPathFactory):
    """One real S3 API server (moto's server mode) for the session: see tests/s3_server.py."""
    from tests.s3_server import s3_server

    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def s3_archive(s3_api, monkeypatch: pytest.MonkeyPatch) -> str:
    """An ``s3://`` archive URL in a fresh bucket, the S3 credentials and endpoint exported the standard way."""
    for key, value in s3_api.env.items():
        monkeypatch.setenv(key, value)
    return f"s3://{s3_api.bucket()}/archive"
