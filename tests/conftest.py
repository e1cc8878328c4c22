"""Test-wide set-up. Prefect freezes its settings at first import, so they are set here, first."""

from __future__ import annotations

import os
import tempfile

_PREFECT_HOME = tempfile.mkdtemp(prefix="parity-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PREFECT_API_KEY", None)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from sklearn.datasets import load_diabetes, load_iris  # noqa: E402


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
    """One real Prefect server for the whole session (start-up is 18-24 s here)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
