"""Hostile model files: crafted compiled trees, files that crash or exhaust the loader, swaps while a file is
read, and the fuzz run. What must hold: nothing untrusted runs, Parity never goes down, every refusal says why.
"""

from __future__ import annotations

import functools
import io
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from parity.core.errors import ParityError, UntrustedModelError
from parity.registry import ALLOWLIST, FileRegistry, RegisteredModel
from parity.registry.loading import load_model
from parity.registry.structure import STRUCTURE_CHECKS

REPO = Path(__file__).resolve().parents[2]


# -- crafting ----------------------------------------------------------------------------------------------
def _arrays_under(node: object, key: str = "") -> list[tuple[str, str]]:
    """(key path, npy file) of every array stored under a schema node, in file order."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        if "file" in node and node.get("__loader__") == "NdArrayNode":
            found.append((key, node["file"]))
        for name, value in node.items():
            found += _arrays_under(value, f"{key}.{name}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _arrays_under(value, f"{key}.{i}")
    return found


def _first(node: object, cls: str) -> dict | None:
    if isinstance(node, dict):
        if node.get("__class__") == cls:
            return node
        values = list(node.values())
    elif isinstance(node, list):
        values = node
    else:
        return None
    return next((hit for value in values if (hit := _first(value, cls)) is not None), None)


def craft(model: object, cls: str, key: str, edit: Callable[[np.ndarray], None]) -> bytes:
    """A skops dump of ``model`` with one array of its first ``cls`` object (the one whose key path ends
    with ``key``) changed by ``edit``."""
    payload = sio.dumps(model)
    with zipfile.ZipFile(io.BytesIO(payload)) as zipped:
        members = {name: zipped.read(name) for name in zipped.namelist()}
    node = _first(json.loads(members["schema.json"]), cls)
    assert node is not None, f"no {cls} in the dump"
    (file,) = [f for path, f in _arrays_under(node) if path.endswith(key)][:1]
    array = np.load(io.BytesIO(members[file]), allow_pickle=False)
    edit(array)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    members[file] = buffer.getvalue()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    return out.getvalue()


def _set(field: str | None, value: int, where: Callable[[np.ndarray], int] = lambda a: 0):
    def edit(array: np.ndarray) -> None:
        column = array[field] if field else array
        column[where(array)] = value

    return edit


def _first_split(array: np.ndarray) -> int:
    return int(np.flatnonzero(array["is_leaf"] == 0)[0])


#: One crafted file per structural check: (model, its class in the dump, the array, the change, the refusal).
CRAFTED = {
    "sklearn.tree._tree.Tree": (
        lambda X, y: DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y),
        "Tree", "nodes", _set("left_child", 10**6), r"node 0's left child is 1000000, outside nodes 1\.\.",
    ),
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor": (
        lambda X, y: HistGradientBoostingClassifier(max_iter=2, max_depth=3).fit(X, y),
        "TreePredictor", "nodes", _set("right", 10**6, _first_split), r"right child is 1000000",
    ),
    "sklearn.neighbors._kd_tree.KDTree": (
        lambda X, y: KNeighborsClassifier(algorithm="kd_tree", leaf_size=5).fit(X, y),
        "KDTree", "content.content.1", _set(None, 10**6), r"a sample index points outside the data",
    ),
    "sklearn.neighbors._ball_tree.BallTree": (
        lambda X, y: KNeighborsClassifier(algorithm="ball_tree", leaf_size=5).fit(X, y),
        "BallTree", "content.content.2", _set("idx_end", 10**6), r"a node's sample range lies outside the data",
    ),
}  # fmt: skip


def test_every_structural_check_has_a_crafted_file_and_is_on_the_allowlist():
    assert set(CRAFTED) == set(STRUCTURE_CHECKS)
    assert set(STRUCTURE_CHECKS) <= ALLOWLIST


@pytest.mark.parametrize("type_name", sorted(CRAFTED), ids=lambda name: name.rsplit(".", 1)[-1])
def test_a_crafted_compiled_tree_is_refused_at_registration_naming_the_file(type_name, iris, tmp_path):
    fit, cls, key, edit, message = CRAFTED[type_name]
    path = tmp_path / "crafted.skops"
    path.write_bytes(craft(fit(*iris), cls, key, edit))
    registry = FileRegistry(tmp_path / "registry")
    with pytest.raises(UntrustedModelError, match=message) as refused:
        registry.register(None, iris[0], "crafted", model_file=path)
    assert str(path) in str(refused.value) and ".staging" not in str(refused.value)
    assert "malformed or crafted" in str(refused.value)
    assert registry.refs() == []


def test_the_crafted_tree_really_crashes_an_unchecked_loader(iris, tmp_path):
    """The crafted Tree is live: built with skops' full trust and used for a prediction, it kills the process."""
    fit, cls, key, edit, _ = CRAFTED["sklearn.tree._tree.Tree"]
    path = tmp_path / "crafted.skops"
    path.write_bytes(craft(fit(*iris), cls, key, edit))
    iris[0].to_parquet(tmp_path / "rows.parquet")
    script = (
        "import skops.io as sio, pandas as pd, sys; data = open(sys.argv[1], 'rb').read(); "
        "sio.loads(data, trusted=sio.get_untrusted_types(data=data)).predict(pd.read_parquet(sys.argv[2]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), str(tmp_path / "rows.parquet")], timeout=300
    )
    assert done.returncode == -signal.SIGSEGV


CRASHER = '''
import ctypes
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class Crasher(BaseEstimator, ClassifierMixin):
    """Fits like a classifier; predicting reads address 0."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        ctypes.string_at(0)
'''

REGISTER_CRASHER = """
import hashlib, sys, skops.io as sio
from sklearn.datasets import load_iris
from crasher import Crasher
from parity.core.errors import ParityError
from parity.registry import FileRegistry

X, y = load_iris(return_X_y=True, as_frame=True)
sio.dump(Crasher().fit(X, y), "crasher.skops")
digest = hashlib.sha256(open("crasher.skops", "rb").read()).hexdigest()
for sha256 in (None, digest):  # a hash the registrant gives must not skip the child loader
    try:
        FileRegistry("registry").register(
            None, X, "crasher", model_file="crasher.skops", trusted_types=["crasher.Crasher"], sha256=sha256
        )
    except ParityError as err:
        print("REFUSED", err)
        continue
    print("REGISTERED")
    sys.exit(3)
"""


def test_a_model_that_crashes_the_loader_is_refused_and_parity_lives_on(tmp_path):
    """A trusted type of the user's own that crashes when it predicts: the child loader dies, not Parity."""
    (tmp_path / "crasher.py").write_text(textwrap.dedent(CRASHER))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-c", REGISTER_CRASHER],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    refusal = "REFUSED crasher.skops: the model file crashed the loader (SIGSEGV): refused"
    assert done.stdout.count(refusal) == 2, done.stdout
    assert not (tmp_path / "registry" / "crasher").exists()


def _float_count(model):
    model.n_features_in_ = float(model.n_features_in_)
    return model


def _no_count(model):
    del model.n_features_in_
    return model


def _pipeline_tree_without_count(X, y):
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline

    pipeline = make_pipeline(PCA(2), DecisionTreeClassifier(max_depth=3)).fit(X, y)
    del pipeline.steps[-1][1].n_features_in_  # must not borrow the pipeline's 4 columns: its rows have 2
    return pipeline


#: Estimators whose feature count scikit-learn would not check (absent) or that is no count (a float): no
#: feature index of theirs can be bounded, so they are refused.
UNCOUNTED = {
    "tree-float-count": lambda X, y: _float_count(DecisionTreeClassifier(max_depth=3).fit(X, y)),
    "hgb-float-count": lambda X, y: _float_count(HistGradientBoostingClassifier(max_iter=2).fit(X, y)),
    "hgb-no-count": lambda X, y: _no_count(HistGradientBoostingClassifier(max_iter=2).fit(X, y)),
    "knn-no-count": lambda X, y: _no_count(KNeighborsClassifier(algorithm="kd_tree").fit(X, y)),
    "pipeline-tree-no-count": _pipeline_tree_without_count,
}


@pytest.mark.parametrize("case", sorted(UNCOUNTED))
def test_a_compiled_tree_whose_estimator_has_no_feature_count_is_refused(case, iris):
    from parity.registry.structure import check_structure

    with pytest.raises(UntrustedModelError, match=r"n_features_in_"):
        check_structure(UNCOUNTED[case](*iris), "model.skops")


FIT_THEN_REGISTER = """
from sklearn.datasets import load_iris
from sklearn.ensemble import HistGradientBoostingClassifier
from parity.registry import FileRegistry

X, y = load_iris(return_X_y=True, as_frame=True)
model = HistGradientBoostingClassifier(max_iter=5).fit(X, y)  # leaves OpenMP's thread pool in this process
model.predict(X)
print("REGISTERED", FileRegistry("registry").register(model, X, "hgb"))
"""


def test_registering_right_after_fitting_with_openmp_does_not_hang_the_child(tmp_path):
    """A child forked from a process whose OpenMP pool is warm must not wait on it (libgomp is not fork-safe)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PARITY_LOADER_DEADLINE_S": "120"}
    done = subprocess.run(
        [sys.executable, "-c", FIT_THEN_REGISTER],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0 and "REGISTERED hgb:1" in done.stdout, done.stdout + done.stderr[-2000:]


def test_a_model_over_the_loaders_memory_limit_is_refused(iris, tmp_path, monkeypatch):
    scaler = StandardScaler().fit(iris[0])
    wide = 20_000_000  # three arrays of 160 MB each (zeros and ones: a small compressed file, a zip bomb)
    scaler.mean_, scaler.scale_, scaler.var_ = np.zeros(wide), np.ones(wide), np.ones(wide)
    path = tmp_path / "wide.skops"
    sio.dump(scaler, path, compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 10_000_000
    monkeypatch.setenv("PARITY_LOADER_MEMORY_MB", "128")
    with pytest.raises(UntrustedModelError, match=r"wide\.skops: loading the model needed more than 128 MiB"):
        load_model(path, "skops")


def test_a_model_over_the_loaders_deadline_is_refused(iris, tmp_path, monkeypatch):
    path = tmp_path / "slow.skops"
    sio.dump(LogisticRegression(max_iter=500).fit(*iris), path)
    monkeypatch.setenv("PARITY_LOADER_DEADLINE_S", "0.001")
    with pytest.raises(UntrustedModelError, match=r"slow\.skops: loading the model did not finish within"):
        load_model(path, "skops")


# -- swaps while a file is read ----------------------------------------------------------------------------
def canary_model(canary: Path, X: pd.DataFrame) -> bytes:
    """A skops file whose transform writes ``canary``: exec(source, {}, X) runs the source."""
    source = f"__import__('pathlib').Path({str(canary)!r}).write_text('the payload ran')"
    return sio.dumps(FunctionTransformer(func=functools.partial(exec, source, {})).fit(X))


def test_the_canary_model_is_live(iris, tmp_path):
    canary = tmp_path / "CANARY"
    payload = canary_model(canary, iris[0])
    sio.loads(payload, trusted=sio.get_untrusted_types(data=payload)).transform(iris[0])
    assert canary.read_text() == "the payload ran"


def _swap(path: str, variants: list[bytes], stop: multiprocessing.synchronize.Event) -> None:
    """Rewrite ``path`` with each variant in turn, in place (a reader can see a partial file) and by rename."""
    turn = 0
    while not stop.is_set():
        data = variants[turn % len(variants)]
        if turn % 2:
            with open(path, "wb") as handle:
                handle.write(data[: len(data) // 2])
                handle.flush()
                handle.write(data[len(data) // 2 :])
        else:
            with open(path + ".new", "wb") as handle:
                handle.write(data)
            os.replace(path + ".new", path)
        turn += 1


@pytest.mark.slow
def test_a_file_swapped_while_it_is_registered_or_opened_never_runs_its_payload(iris, tmp_path):
    """The bytes are read once, then hashed, checked and loaded: a writer swapping the file meanwhile can only
    make the read fail (a clear refusal), never get its code run."""
    X, y = iris
    canary = tmp_path / "CANARY"
    hostile = canary_model(canary, X)
    benign = sio.dumps(LogisticRegression(max_iter=500).fit(X, y))
    registry = FileRegistry(tmp_path / "registry")
    ref = registry.register(LogisticRegression(max_iter=500).fit(X, y), X, "swapped")
    registered = registry.path(ref) / registry.record(ref).model.file
    original = registered.read_bytes()
    upload = tmp_path / "upload.skops"
    upload.write_bytes(benign)
    outcomes: Counter[str] = Counter()
    context = multiprocessing.get_context("spawn")
    for target, good, attempts, action in (
        (registered, original, 300, lambda: registry.open(ref)),
        (upload, benign, 40, lambda: registry.register(None, X, "uploaded", model_file=upload, trusted_types=["functools.partial"])),
    ):  # fmt: skip
        stop = context.Event()
        writer = context.Process(target=_swap, args=(str(target), [hostile, good], stop), daemon=True)
        writer.start()
        try:
            for _ in range(attempts):
                try:
                    result = action()
                    if isinstance(result, RegisteredModel):  # only ever the registered model
                        assert type(result.estimator) is LogisticRegression
                    outcomes["loaded"] += 1
                except ParityError as err:
                    assert str(err), "a refusal without a message"
                    outcomes[type(err).__name__] += 1
        finally:
            stop.set()
            writer.join(60)
        target.write_bytes(good)
    assert not canary.exists(), f"the payload ran: {outcomes}"
    assert outcomes["loaded"] > 0 and sum(outcomes.values()) == 340, outcomes
    assert registry.open(ref).estimator is not None  # the registered version is still good
    for uploaded in registry.refs("uploaded"):  # each registration kept the bytes it checked: the benign ones
        assert type(registry.open(uploaded).estimator) is LogisticRegression


# -- the fuzz run ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_fuzzed_skops_files_never_crash_parity_never_run_and_every_refusal_names_the_file(tmp_path):
    """tools/fuzz_skops.py in its own process (a crash would show as a signal, not kill the test run)."""
    summary = tmp_path / "fuzz.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "fuzz_skops.py"), "--mutants", "120", "--seed", "9", "--json", str(summary)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(summary.read_text())
    assert result["canary_written"] is False and result["unclear"] == []
    assert sum(result["outcomes"].values()) == 120 + 2  # the mutants, and the canary file trusted and not
    assert result["outcomes"]["canary refused"] == 2
    assert result["refusals"].get("a structural check refused it", 0) > 0, result
