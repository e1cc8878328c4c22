"""README's "The archive" runs as written: its training script (register_with_cv), then its commands against
a real S3 API server (moto's server mode; only the bucket's name is changed, to a fresh one)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import bagit
import pytest

from parity.archive import Archive
from tests.archive.test_ocfl import ocfl_valid
from tests.readme_blocks import readme_block
from tests.s3_server import exported

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
README_BUCKET = "s3://models/"
#: Bounds a hang of one README step (a `parity run` is 20-50 s quiet, several times that under load).
STEP_DEADLINE_S = 900


def _run(line: str, cwd: Path, env: dict[str, str]) -> str:
    words = shlex.split(line)
    assert words[0] == "parity", line
    done = subprocess.run(
        [str(BIN / "parity"), *words[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=STEP_DEADLINE_S,
        env=env,
    )
    assert done.returncode == 0, f"{line}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_the_readme_archive_section_runs_as_written(tmp_path: Path, s3_api, s3_archive) -> None:
    train = tmp_path / "train.py"
    train.write_text(readme_block("test_readme_archive.py", "train"))
    done = subprocess.run(
        [sys.executable, str(train)], cwd=tmp_path, capture_output=True, text=True, timeout=STEP_DEADLINE_S
    )
    assert done.returncode == 0, done.stderr[-3000:]
    bucket = s3_archive.removesuffix("archive")  # s3://<fresh bucket>/
    env = {**exported(s3_api), "PREFECT_HOME": str(tmp_path / "prefect")}
    lines = readme_block("test_readme_archive.py", "archive").strip().splitlines()
    assert all(README_BUCKET in line for line in lines)
    out = [_run(line.replace(README_BUCKET, bucket), tmp_path, env) for line in lines]

    shelf = Archive(f"{bucket}parity-archive")
    assert f"iris-cv:1: passed -> {shelf.object_url('iris-cv', 1)}" in out[0]
    assert ocfl_valid(shelf.object_url("iris-cv", 1))[0]
    row = next(line for line in out[1].splitlines() if "iris-cv" in line)
    assert "passed" in row and "pmml" in row and "onnx" in row
    assert out[2].startswith("# iris-cv v1: PASSED") and "pypmml" in out[2] and "onnxruntime" in out[2]
    # the audit's findings are the object's v2, with the CV re-check in them
    inventory = shelf.inventory("iris-cv", 1)
    assert inventory is not None and inventory.head == 2
    [kept] = [p for logical, p in inventory.state().items() if logical.startswith("audits/")]
    audit = json.loads(shelf.store.read(f"iris-cv/1/{kept}"))
    assert audit["status"] == "ok" and audit["cv"]["status"] == "ok", audit
    bag = bagit.Bag(str(tmp_path / "iris-cv-1-bag"))
    assert bag.validate()
    assert (tmp_path / "iris-cv-1-bag" / "data" / "model.pmml").read_bytes() == shelf.read(
        "iris-cv", 1, "model.pmml"
    )
