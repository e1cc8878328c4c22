"""README's "Validating models from MLflow" runs as written: its training script against a real MLflow server,
then its commands (only the server's address is changed, to the test server's)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from parity.registry.mlflow import TAG_VERDICT, VALIDATED_ALIAS
from tests.mlflow_server import mlflow_server
from tests.readme_blocks import readme_block

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
README_SERVER = "http://127.0.0.1:5000"
#: Bounds a hang of one README step (a `parity run` is 20-50 s quiet, several times that under load).
STEP_DEADLINE_S = 900


def block(name: str) -> str:
    """The code block right after the README's marker ``name`` for this test."""
    return readme_block("test_readme_mlflow.py", name)


def test_the_readme_section_runs_as_written(tmp_path: Path, monkeypatch) -> None:
    with mlflow_server(tmp_path / "mlflow") as server:
        train = tmp_path / "train.py"
        train.write_text(block("train").replace(README_SERVER, server.url))
        done = subprocess.run(
            [sys.executable, str(train)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=STEP_DEADLINE_S,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        env = {"PARITY_MLFLOW_CACHE": str(tmp_path / "mirror"), "PREFECT_HOME": str(tmp_path / "prefect")}
        outputs = []
        for line in block("run").strip().splitlines():
            words = shlex.split(line.replace(README_SERVER, server.url))
            assert words[0] == "parity", line
            done = subprocess.run(
                [str(BIN / "parity"), *words[1:]],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=STEP_DEADLINE_S,
                env={**os.environ, **env},
            )
            assert done.returncode == 0, f"{line}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            outputs.append(done.stdout)
        assert "cancer-logreg:1: passed" in outputs[0]
        assert re.search(r"cancer-logreg\s+1\s.*passed\s+yes", outputs[1]), outputs[1]
        client = server.client()
        assert client.get_model_version("cancer-logreg", "1").tags[TAG_VERDICT] == "passed"
        assert client.get_registered_model("cancer-logreg").aliases[VALIDATED_ALIAS] == "1"
