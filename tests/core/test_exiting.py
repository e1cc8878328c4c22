"""end_process: exit handlers run and output is flushed, the status is kept, finalization is skipped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_CHILD = """
import atexit, sys
from pathlib import Path
from parity.core.exiting import end_process
atexit.register(lambda: Path(sys.argv[1]).write_text("handler ran"))
class Finalized:
    def __del__(self):
        print("finalized", flush=True)
keep = Finalized()  # a module global: only finalization would delete it
print("buffered, no newline", end="")
end_process(3)
"""


def test_end_process_runs_handlers_flushes_and_keeps_the_status(tmp_path: Path):
    marker = tmp_path / "marker"
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(marker)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout == "buffered, no newline"  # flushed, and no finalizer ran
    assert marker.read_text() == "handler ran"


def test_the_console_script_keeps_its_exit_codes():
    parity = Path(sys.executable).with_name("parity")
    done = subprocess.run(
        [str(parity), "run", "--model", "no such!"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
