"""A real S3 API server for the tests: moto's server mode (``moto_server``), a subprocess on a free port.

Parity reads credentials and the endpoint the standard way (botocore's chain): the fixture exports
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION`` and ``AWS_ENDPOINT_URL`` for the
test (and for the processes it starts), and nothing in Parity is told about the server otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.deployments.prefect_processes import free_port, stop
from tests.waiting import wait_for

#: moto_server answers in about 2 s on a quiet machine (importing moto); 120 s bounds a hang under load.
START_TIMEOUT_S = 120


@dataclass
class S3Server:
    """A running S3 API server and the environment a client of it needs."""

    url: str
    process: subprocess.Popen
    log: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "parity-test",
            "AWS_SECRET_ACCESS_KEY": "parity-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.url,
        }

    def bucket(self) -> str:
        """A new, empty bucket; returns its name."""
        import boto3

        name = f"parity-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", **_client_kwargs(self.env)).create_bucket(Bucket=name)
        return name


def _client_kwargs(env: dict[str, str]) -> dict[str, str]:
    return {
        "endpoint_url": env["AWS_ENDPOINT_URL"],
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


@contextmanager
def s3_server(folder: Path) -> Iterator[S3Server]:
    """Start ``moto_server`` on a free port; stop it (its process group) at the end."""
    port = free_port()
    log = folder / "moto.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = S3Server(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_for(
            lambda: process.poll() is not None or _answers(f"{server.url}/moto-api/"),
            START_TIMEOUT_S,
            lambda: f"moto_server on port {port}\n{log.read_text(errors='replace')[-2000:]}",
            every=0.2,
        )
        assert process.poll() is None, log.read_text(errors="replace")
        yield server
    finally:
        stop(process)


def exported(server: S3Server) -> dict[str, str]:
    """``os.environ`` with the server's variables: for the subprocesses a test starts."""
    return {**os.environ, **server.env}
