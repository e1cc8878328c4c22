"""The family tables — formats, runtimes, reaches — tested entry by entry, generated from the tables
themselves: a new entry gets these tests without an edit here (or fails the coverage checks below)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from parity.core.defaults import host_platform
from parity.core.errors import RecordError
from parity.core.records import Conversion, ConversionStatus, OnnxDetails, PmmlDetails
from parity.core.tables import table_of
from parity.validators import RUNTIMES, runtimes_for
from parity.validators.formats import FORMATS, FormatSpec, format_of
from parity.validators.runtimes import Runtime
from parity.validators.targets.reaches import REACHES, Reach, ran_on
from parity.validators.targets.runners import where_of
from parity.validators.targets.table import RunnerSettings, Target

#: Formats whose runtimes or runner start a JVM: their tests are slow.
JVM_FORMATS = {name for name, spec in FORMATS.items() if spec.starts_jvm}


def _format_param(name: str):
    return pytest.param(name, id=name, marks=[pytest.mark.slow] if name in JVM_FORMATS else [])


@pytest.fixture(scope="module")
def fitted(iris) -> tuple[LogisticRegression, pd.DataFrame]:
    X, y = iris
    return LogisticRegression(max_iter=1000).fit(X, y), X


@pytest.fixture(scope="module")
def converted(fitted, tmp_path_factory) -> dict[str, Conversion]:
    """Each format's conversion of the same model, made lazily per format by the tests that need it."""
    estimator, X = fitted
    root = tmp_path_factory.mktemp("tables")
    made: dict[str, Conversion] = {}

    class Lazy(dict):
        def __missing__(self, fmt: str) -> Conversion:
            made[fmt] = FORMATS[fmt].convert(estimator, X, root / fmt)
            return made[fmt]

    return Lazy()


# --- formats ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(FORMATS))
def test_a_format_lists_only_its_own_runtimes_and_names_its_engine(name: str):
    spec = FORMATS[name]
    assert spec.name == name
    assert spec.runtimes, f"{name} has no runtime"
    assert all(r.format == name for r in spec.runtimes)
    assert spec.engine in [r.name for r in spec.runtimes]
    assert spec.same_engine(spec.engine) and spec.same_engine(spec.remote.runtime)
    assert not any(spec.same_engine(r.name) for r in spec.runtimes if r.name != spec.engine)
    assert spec.remote.inputs_file != spec.remote.outputs_file
    assert [r.name for r in runtimes_for(name)] == [r.name for r in spec.runtimes]


def test_formats_have_distinct_artifact_files_and_pmml_comes_first():
    assert len({spec.filename for spec in FORMATS.values()}) == len(FORMATS)
    assert next(iter(FORMATS)) == "pmml"  # archive priority: PMML is the long-term format


def test_an_unknown_format_names_the_known_ones():
    with pytest.raises(KeyError, match="no format 'joblib'; known formats: pmml, onnx"):
        format_of("joblib")
    with pytest.raises(KeyError, match="known formats"):
        runtimes_for("joblib")


@pytest.mark.parametrize("name", [_format_param(n) for n in FORMATS])
def test_a_conversion_writes_its_artifact_and_its_own_details(name: str, converted):
    spec, conversion = FORMATS[name], converted[name]
    assert conversion.status is ConversionStatus.CONVERTED, conversion.message
    assert conversion.format == name and conversion.path is not None
    assert conversion.path.name == spec.filename and conversion.path.is_file()
    assert isinstance(spec.details(conversion), OnnxDetails | PmmlDetails)
    assert spec.precision(conversion) in ("float32", "float64")
    others = [other for other in FORMATS.values() if other is not spec]
    for other in others:
        with pytest.raises(ValueError, match=f"has no {other.name} details"):
            other.details(conversion)


@pytest.mark.parametrize("name", [_format_param(n) for n in FORMATS])
def test_the_engine_outputs_map_onto_the_estimator_outputs(name: str, converted, fitted):
    estimator, X = fitted
    spec, conversion = FORMATS[name], converted[name]
    engine = RUNTIMES[spec.engine]
    outputs = spec.outputs(engine.evaluate(conversion.path, spec.feeds(conversion, X)), conversion)
    assert outputs and set(outputs) <= {"predict", "predict_proba"}
    np.testing.assert_array_equal(outputs["predict"].astype(str), estimator.predict(X).astype(str))
    np.testing.assert_allclose(outputs["predict_proba"], estimator.predict_proba(X), atol=1e-4)


@pytest.mark.parametrize("name", [_format_param(n) for n in FORMATS])
def test_the_runner_natively_agrees_with_the_same_engine_in_process(
    name: str, converted, fitted, tmp_path: Path
):
    _, X = fitted
    spec, conversion = FORMATS[name], converted[name]
    runner = spec.remote
    given, made = tmp_path / runner.inputs_file, tmp_path / runner.outputs_file
    runner.write_inputs(given, spec.remote_inputs(conversion, X))
    runner.run_files(None, conversion.path, given, made, RunnerSettings())
    result = runner.read_outputs(made)
    assert ran_on(result.where) == host_platform()
    remote = spec.outputs(result.outputs, conversion)
    engine = RUNTIMES[spec.engine]
    local = spec.outputs(engine.evaluate(conversion.path, spec.feeds(conversion, X)), conversion)
    assert set(remote) == set(local)
    for output in local:  # bit for bit: the same engine on the same machine (labels may come as numbers)
        np.testing.assert_array_equal(_comparable(remote[output]), _comparable(local[output]))
    if runner.replays_verification:
        assert result.where.verification == "ok"


def _comparable(values: np.ndarray) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return np.asarray(values).astype(str)


# --- runtimes --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(RUNTIMES))
def test_a_runtime_declares_its_capabilities(name: str):
    runtime: Runtime = RUNTIMES[name]
    assert runtime.name == name and runtime.format in FORMATS
    assert runtime.sample_rows is None or runtime.sample_rows > 0
    assert isinstance(runtime.verifies, bool) and isinstance(runtime.tuned_by, tuple)
    assert set(runtime.tuned_by) <= {"threads", "graph_optimization", "cpu"}
    if not runtime.verifies:
        with pytest.raises(NotImplementedError, match="does not replay embedded verification"):
            runtime.verify(Path("model"))


@pytest.mark.parametrize("name", list(RUNTIMES))
def test_a_runtime_tuned_for_a_target_carries_the_target_settings(name: str):
    runtime = RUNTIMES[name]
    target = Target("two", host_platform(), "process", threads=2, graph_optimization="basic")
    tuned = runtime.for_target(target)
    assert (tuned.name, tuned.format) == (runtime.name, runtime.format)
    if "threads" in runtime.tuned_by:
        assert tuned is not runtime and tuned.threads == 2 and tuned.graph_optimization == "basic"  # type: ignore[attr-defined]
        assert runtime.for_target(target) is tuned  # one instance per setting: its session cache is shared
    else:
        assert tuned is runtime


# --- reaches ---------------------------------------------------------------------------------------------
#: One target per reach that the reach must refuse, and why.
REFUSED: dict[str, tuple[Target, str]] = {
    "process": (Target("elsewhere", "linux/sparc64", "process"), "a process target runs here"),
    "emulator": (Target("riscv", "linux/riscv64", "emulator"), "no emulator for linux/riscv64"),
    "work-pool": (Target("pool", "linux/aarch64", "work-pool"), "needs deployment"),
}


def test_every_reach_has_a_refusal_case():
    assert set(REFUSED) == set(REACHES)


@pytest.mark.parametrize("name", list(REACHES))
def test_a_reach_refuses_a_target_it_cannot_serve(name: str):
    reach: Reach = REACHES[name]
    target, why = REFUSED[name]
    assert reach.name == name
    problem = reach.problem(target)
    assert problem is not None and why in problem


@pytest.mark.parametrize("name", list(REACHES))
def test_a_reach_says_how_many_rows_a_target_evaluates(name: str):
    reach = REACHES[name]
    plain = Target("t", host_platform(), name)
    assert reach.rows_limit(plain) == (None if reach.in_process else 200)
    assert reach.rows_limit(Target("t", host_platform(), name, sample_rows=7)) == 7


def test_the_process_reach_runs_no_runner():
    reach = REACHES["process"]
    assert reach.in_process and reach.unavailable(Target("here", host_platform(), "process")) is None
    with pytest.raises(NotImplementedError, match="does not run runners"):
        reach.run(Target("here", host_platform(), "process"), "onnx", FORMATS["onnx"].remote, Path("m"), {})


def test_format_specs_are_the_only_format_table():
    assert all(isinstance(spec, FormatSpec) for spec in FORMATS.values())
    assert {r.format for r in RUNTIMES.values()} == set(FORMATS)


@pytest.mark.parametrize(
    ("family", "entries"),
    [
        pytest.param("format", list(FORMATS.values()), id="formats"),
        pytest.param("runtime", list(RUNTIMES.values()), id="runtimes"),
        pytest.param("reach", list(REACHES.values()), id="reaches"),
    ],
)
def test_a_table_refuses_a_second_entry_of_the_same_name(family: str, entries: list):
    assert list(table_of(family, entries)) == [e.name for e in entries]
    with pytest.raises(ValueError, match=f"{family} '{entries[0].name}' registered twice"):
        table_of(family, [*entries, entries[0]])


def test_a_runner_description_with_unknown_fields_names_its_file():
    with pytest.raises(RecordError, match=r"outputs\.npz: the runner's description .*surprise"):
        where_of({"machine": "aarch64", "surprise": 1}, Path("jobs/1/outputs.npz"))
    assert where_of({"machine": "aarch64", "threads": 1}, Path("x")).machine == "aarch64"
