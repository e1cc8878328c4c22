"""Telemetry, proven: a failing sklearn2pmml conversion (whose jar posts an incident report to the internet)
tries no connection off the machine, seen by the kernel: ``strace -f`` inside a network namespace with no
network at all (``unshare -n``)."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

#: A conversion in a fresh process under strace -f: about 10 s quiet; generous for a loaded machine.
CONVERSION_DEADLINE_S = 400

_CONVERT = """
import sys
from pathlib import Path
from sklearn.datasets import load_iris
from sklearn.naive_bayes import BernoulliNB
from parity.validators import formats
X, y = load_iris(return_X_y=True, as_frame=True)
conversion = formats.convert("pmml", BernoulliNB().fit(X, y), X, Path(sys.argv[1]))
print("STATUS", conversion.status.value)
print(conversion.message)
"""

#: ``connect(3, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("1.2.3.4")}, 16)``, and the
#: AF_INET6 form with ``inet_pton(AF_INET6, "2001:db8::1", &sin6_addr)``.
_INET = re.compile(
    r'connect\(\d+, \{sa_family=AF_INET6?, .*?(?:inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)")'
)


def _why_not_here() -> str | None:
    if os.geteuid() != 0:
        return "needs root for `unshare -n` (a network namespace)"
    for tool in ("unshare", "strace"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (make test installs strace; unshare is util-linux)"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return f"`unshare -n` is not permitted here: {probe.stderr.strip()}"
    return None


def off_machine(trace: str) -> list[str]:
    """The AF_INET/AF_INET6 addresses in strace's ``connect`` lines that are not loopback."""
    found = []
    for match in _INET.finditer(trace):
        address = match[1] or match[2]
        if not ipaddress.ip_address(address.split("%")[0]).is_loopback and address != "::ffff:127.0.0.1":
            found.append(address)
    return found


def test_off_machine_parses_both_families():
    trace = (
        'connect(3, {sa_family=AF_UNIX, sun_path="/run/x"}, 110) = 0\n'
        'connect(4, {sa_family=AF_INET, sin_port=htons(1), sin_addr=inet_addr("127.0.0.1")}, 16) = -1\n'
        'connect(5, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", '
        "&sin6_addr), sin6_scope_id=0}, 28) = -1\n"
        'connect(6, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("104.21.3.4")}, 16) = -1\n'
        "connect(7, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "
        '"2606:4700::1", &sin6_addr), sin6_scope_id=0}, 28) = -1\n'
    )
    assert off_machine(trace) == ["104.21.3.4", "2606:4700::1"]


@pytest.mark.slow
def test_a_failing_conversion_connects_to_nothing_off_the_machine(tmp_path: Path):
    reason = _why_not_here()
    if reason:
        pytest.skip(reason)
    trace_file = tmp_path / "trace"
    command = [
        "unshare", "-n", "strace", "-f", "-qq", "-e", "trace=connect,execve", "-o", str(trace_file),
        sys.executable, "-c", _CONVERT, str(tmp_path / "pmml"),
    ]  # fmt: skip
    env = {
        **os.environ,
        "PARITY_CACHE_DIR": os.environ.get("PARITY_CACHE_DIR", str(Path.home() / ".cache/parity")),
    }
    done = subprocess.run(command, capture_output=True, text=True, timeout=CONVERSION_DEADLINE_S, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "STATUS unsupported" in done.stdout, done.stdout + done.stderr[-2000:]
    assert "blocked outgoing connection(s)" in done.stdout  # the jar did try to report the failure
    trace = trace_file.read_text()
    assert re.search(r'execve\("[^"]*/java"', trace), "strace did not follow the converter's JVM"
    assert off_machine(trace) == []
