"""`parity run` and `parity audit` with ``--archive s3://…`` on a real S3 API server (moto's server mode): the
bundles they write are OCFL objects that ocfl-py validates on S3 itself; the audit's findings become a new
version."""

from __future__ import annotations

import json

import pytest
from sklearn.linear_model import LogisticRegression

from parity.archive import Archive
from parity.cli.exits import EXIT_OK, EXIT_USAGE
from parity.registry import FileRegistry
from tests.archive.test_ocfl import ocfl_valid
from tests.cli.test_cli import _parity


@pytest.mark.slow
def test_run_and_audit_on_s3_write_valid_ocfl_objects(tmp_path, iris, s3_archive):
    X, y = iris
    registry = FileRegistry(tmp_path / "registry")
    registry.register(LogisticRegression(max_iter=1000).fit(X, y), X, "iris-lr")
    done = _parity(["run", "--registry", str(registry.root), "--archive", s3_archive], tmp_path)
    assert done.returncode == EXIT_OK, done.stderr[-3000:]
    shelf = Archive(s3_archive)
    assert f"iris-lr:1: passed -> {shelf.object_url('iris-lr', 1)}" in done.stdout
    valid, status = ocfl_valid(shelf.object_url("iris-lr", 1))
    assert valid, status
    report = json.loads(shelf.read("iris-lr", 1, "report.json"))
    assert report["outcome"] == "passed"
    assert {"model.pmml", "model.onnx", "model.skops"} <= set(shelf.inventory("iris-lr", 1).state())

    audited = _parity(["audit", "--archive", s3_archive, "--registry", str(registry.root)], tmp_path)
    assert audited.returncode == EXIT_OK, audited.stderr[-3000:]
    inventory = shelf.inventory("iris-lr", 1)
    assert inventory.head == 2
    [audit] = [p for p in inventory.state() if p.startswith("audits/")]
    kept = json.loads(shelf.store.read(f"iris-lr/1/{inventory.state()[audit]}"))
    assert (kept["status"], kept["name"], kept["version"]) == ("ok", "iris-lr", 1)
    assert kept["replayed"] > 0
    assert ocfl_valid(shelf.object_url("iris-lr", 1))[0]


def test_run_with_an_archive_url_nobody_can_open_exits_2(tmp_path, iris):
    registry = FileRegistry(tmp_path / "registry")
    registry.register(LogisticRegression(max_iter=1000).fit(*iris), iris[0], "iris-lr")
    done = _parity(["run", "--registry", str(registry.root), "--archive", "nosuch://bucket/x"], tmp_path)
    assert done.returncode == EXIT_USAGE, done.stderr[-3000:]
    assert "--archive nosuch://bucket/x: fsspec cannot open this URL" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("command", "endpoint", "message"),
    [
        (["archive", "ls"], None, "the bucket 'parity-no-such-bucket' does not exist"),
        (["audit", "--no-replay"], None, "the bucket 'parity-no-such-bucket' does not exist"),
        (["archive", "show", "iris-lr:1"], "http://127.0.0.1:9", "the archive's storage failed"),
    ],
    ids=["ls-no-bucket", "audit-no-bucket", "show-unreachable"],
)
def test_an_archive_on_s3_that_cannot_be_read_exits_2_saying_why(
    tmp_path, s3_archive, command, endpoint, message
):
    env = {"AWS_ENDPOINT_URL": endpoint} if endpoint else {}
    done = _parity([*command, "--archive", "s3://parity-no-such-bucket/archive"], tmp_path, env=env)
    assert done.returncode == EXIT_USAGE, done.stdout[-2000:] + done.stderr[-3000:]
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]
