"""Runtimes that are not thread-safe are used one call at a time: first use from several threads at once,
in fresh processes (JPype crashed 7 of 50 such processes before the lock), never crashes — neither while
evaluating nor at exit (2 of 10 aborted at Python's finalization before :func:`end_process`)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression

from parity.validators import RUNTIMES, formats
from parity.validators.runtimes import exclusive

#: Fresh processes and threads per process; each process is the first use of JPype's JVM.
PROCESSES, THREADS = 10, 4
#: A fresh process imports the validators and starts a JVM: 5-10 s quiet, 40 s at load 17 (2 cores).
PROCESS_DEADLINE_S = 300
#: Ten such processes two at a time, with room for a loaded machine (276 s seen for 12 at load 17).
HAMMER_TIMEOUT_S = 1500

_HAMMER = """
import sys, threading
from pathlib import Path
import pandas as pd
from parity.core.records import Conversion
from parity.validators import RUNTIMES
from parity.validators.validate import run_runtime, verification_check

# the record keeps the artifact's file name only; give it the path back
conversion = Conversion.model_validate_json(open(sys.argv[1]).read()).model_copy(
    update={"path": Path(sys.argv[4])}
)
X = pd.read_parquet(sys.argv[2])
runtime = RUNTIMES["jpmml_evaluator"]
barrier = threading.Barrier(int(sys.argv[3]))
failures = []

def hammer():
    barrier.wait()  # every thread's first call lands at once
    try:
        outputs = run_runtime(runtime, conversion, X)
        assert len(outputs["predict"]) == len(X), outputs.keys()
        check = verification_check(runtime, conversion, "linux-x86_64")
        assert check.verdict.value == "pass", check
    except BaseException as err:
        failures.append(repr(err))

threads = [threading.Thread(target=hammer) for _ in range(barrier.parties)]
for t in threads: t.start()
for t in threads: t.join()
print("failures:", failures)
from parity.core.exiting import end_process  # as the parity command ends
end_process(1 if failures else 0)
"""


def test_the_jpype_bridge_declares_itself_not_thread_safe_and_the_engine_is():
    from parity.validators.runtimes.pmml import JpmmlRuntime

    bridge = JpmmlRuntime()
    assert bridge.thread_safe is False
    assert exclusive(bridge) is exclusive(JpmmlRuntime())
    # what Parity validates with: the engine, whose client takes jobs from any thread
    assert RUNTIMES["jpmml_evaluator"].thread_safe is True
    assert RUNTIMES["onnxruntime"].thread_safe is True


@pytest.mark.slow
@pytest.mark.timeout(HAMMER_TIMEOUT_S)
def test_first_use_from_several_threads_never_crashes(tmp_path: Path, iris):
    X, y = iris
    conversion = formats.convert("pmml", LogisticRegression(max_iter=500).fit(X, y), X, tmp_path / "pmml")
    (tmp_path / "conversion.json").write_text(conversion.model_dump_json())
    X.to_parquet(tmp_path / "X.parquet")
    command = [sys.executable, "-c", _HAMMER, str(tmp_path / "conversion.json"), str(tmp_path / "X.parquet")]
    env = {**os.environ, "PARITY_CACHE_DIR": str(tmp_path / "cache")}

    def one(i: int) -> tuple[int, str]:
        done = subprocess.run(
            [*command, str(THREADS), str(conversion.path)], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=PROCESS_DEADLINE_S,
        )  # fmt: skip
        return done.returncode, done.stdout[-2000:] + done.stderr[-2000:]

    with ThreadPoolExecutor(max_workers=2) as pool:  # two at a time: a 2-core machine
        results = list(pool.map(one, range(PROCESSES)))
    crashed = [(code, tail) for code, tail in results if code != 0]
    assert not crashed, f"{len(crashed)} of {PROCESSES} processes failed; first: {crashed[0]}"
    assert not list(tmp_path.glob("hs_err_pid*.log")), "a JVM crashed and wrote its log into the cwd"
