"""Targets: the table, unavailable targets, the PMML runner, and differences between targets as findings."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LogisticRegression

from parity.core.columns import read_output, write_columns
from parity.core.defaults import host_platform
from parity.core.errors import InvalidInputError
from parity.registry import FileRegistry
from parity.validators import formats
from parity.validators.report import Verdict, outcome
from parity.validators.targets.pool import pool_unavailable
from parity.validators.targets.table import DEFAULT_FILE, Target, load_targets
from parity.validators.validate import ModelContext, validate_conversion

HOST = host_platform()


def write_table(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "targets.toml"
    path.write_text(text)
    return path


# -- the table -------------------------------------------------------------------------------------------
def test_default_table_is_valid_and_documents_every_key():
    table = load_targets(DEFAULT_FILE)
    assert [t.reach for t in table.values()][:2] == ["process", "emulator"]
    assert table["linux-x86_64"].required and table["linux-aarch64-emulated"].required
    assert not table["linux-x86_64-2-threads"].required
    documented = DEFAULT_FILE.read_text()
    for key in Target.__dataclass_fields__:
        assert f"#   {key}" in documented, key


def test_env_var_points_at_another_table(tmp_path, monkeypatch):
    path = write_table(tmp_path, f'[[target]]\nname = "only"\nplatform = "{HOST}"\nreach = "process"\n')
    monkeypatch.setenv("PARITY_TARGETS", str(path))
    assert list(load_targets()) == ["only"]


BAD_TABLES = {
    "unknown-reach": (
        '[[target]]\nname = "a"\nplatform = "{host}"\nreach = "ssh"\n',
        "reach 'ssh' is not one of",
    ),
    "foreign-process": (
        '[[target]]\nname = "a"\nplatform = "linux/riscv64"\nreach = "process"\n',
        "runs here",
    ),
    "no-emulator": (
        '[[target]]\nname = "a"\nplatform = "linux/riscv64"\nreach = "emulator"\n',
        "no emulator for",
    ),
    "pool-without-deployment": (
        '[[target]]\nname = "a"\nplatform = "linux/aarch64"\nreach = "work-pool"\n',
        "needs deployment",
    ),
    "duplicate": ('[[target]]\nname = "a"\nplatform = "{host}"\nreach = "process"\n' * 2, "defined twice"),
    "unknown-key": (
        '[[target]]\nname = "a"\nplatform = "{host}"\nreach = "process"\nthread = 2\n',
        "unknown key",
    ),
    "none-required": (
        '[[target]]\nname = "a"\nplatform = "{host}"\nreach = "process"\nrequired = false\n',
        "no required target",
    ),
    "bad-threads": (
        '[[target]]\nname = "a"\nplatform = "{host}"\nreach = "process"\nthreads = 0\n',
        "threads must be",
    ),
    "not-toml": ("[[target]\n", "targets file"),
}


@pytest.mark.parametrize("text, message", BAD_TABLES.values(), ids=BAD_TABLES.keys())
def test_bad_tables_are_refused_with_the_reason(tmp_path, text, message):
    with pytest.raises(InvalidInputError, match=message):
        load_targets(write_table(tmp_path, text.replace("{host}", HOST)))


# -- models used below -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gbr_model(diabetes, tmp_path_factory):
    """A boosted regressor whose float32 tree sum depends on onnxruntime's thread count."""
    X, y = diabetes
    root = tmp_path_factory.mktemp("registry")
    registry = FileRegistry(root)
    estimator = GradientBoostingRegressor(n_estimators=100, random_state=0).fit(X, y)
    ref = registry.register(estimator, X, "gbr", tolerances={"cross-target": {"atol": 0, "rtol": 0}})
    model = registry.open(ref)
    conversion = formats.convert("onnx", model.estimator, model.reference, root / "artifacts")
    return model, conversion


def _table(tmp_path: Path, extra: str) -> dict[str, Target]:
    base = f'[[target]]\nname = "host"\nplatform = "{HOST}"\nreach = "process"\n'
    return load_targets(write_table(tmp_path, base + extra))


def test_thread_count_difference_is_a_finding_that_names_the_target(gbr_model, tmp_path):
    model, conversion = gbr_model
    targets = _table(
        tmp_path, f'[[target]]\nname = "two-threads"\nplatform = "{HOST}"\nreach = "process"\nthreads = 2\n'
    )
    checks = validate_conversion(ModelContext(model), conversion, targets=targets)
    versus = [c for c in checks if c.against == "host"]
    assert len(versus) == 1
    finding = versus[0]
    # Summing 100 trees in float32 in another order: within the reference band, but not bit-identical.
    assert finding.target == "two-threads" and finding.verdict is Verdict.FAIL
    assert 0 < finding.max_abs < 1e-3 and finding.n_outside > 0 and finding.first_outside
    assert "two-threads differs" in finding.explanation
    against_reference = [c for c in checks if c.target == "two-threads" and c.kind == "value"]
    assert against_reference[0].verdict is Verdict.PASS
    assert outcome(checks, False) == "failed"
    assert checks[0].where.threads == 1 and against_reference[0].where.threads == 2


def test_an_optional_target_reports_without_blocking(gbr_model, tmp_path):
    model, conversion = gbr_model
    targets = _table(
        tmp_path,
        f'[[target]]\nname = "two-threads"\nplatform = "{HOST}"\nreach = "process"\nthreads = 2\nrequired = false\n',
    )
    checks = validate_conversion(ModelContext(model), conversion, targets=targets)
    assert any(c.verdict is Verdict.FAIL and not c.required for c in checks)
    assert outcome(checks, False) == "passed"


@pytest.mark.parametrize("required", [True, False], ids=["required", "optional"])
def test_missing_emulator_is_unavailable_with_the_setup_command(gbr_model, tmp_path, monkeypatch, required):
    model, conversion = gbr_model
    monkeypatch.setenv("PARITY_CACHE_DIR", str(tmp_path / "empty-cache"))
    targets = _table(
        tmp_path,
        f'[[target]]\nname = "arm"\nplatform = "linux/aarch64"\nreach = "emulator"\nrequired = {str(required).lower()}\n',
    )
    checks = validate_conversion(ModelContext(model), conversion, targets=targets)
    arm = [c for c in checks if c.target == "arm"]
    assert [c.verdict for c in arm] == [Verdict.UNAVAILABLE]
    assert "parity targets setup aarch64" in arm[0].explanation
    assert ("skipped" in arm[0].explanation) is (not required)
    assert outcome(checks, False) == ("failed" if required else "passed")


def test_pool_target_says_what_it_needs(monkeypatch, tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    pool = Target("arm-pool", "linux/aarch64", "work-pool", deployment="run-on-target/parity-aarch64")
    with temporary_settings(updates={PREFECT_API_URL: None}):
        assert "PREFECT_API_URL" in pool_unavailable(pool)
    monkeypatch.delenv("PARITY_SHARED_DIR", raising=False)
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert "PARITY_SHARED_DIR" in pool_unavailable(pool)
        monkeypatch.setenv("PARITY_SHARED_DIR", str(tmp_path))
        assert pool_unavailable(pool) is None


# -- the PMML runner -------------------------------------------------------------------------------------
def test_columns_keep_doubles_bit_for_bit_and_missing_values(tmp_path):
    frame = pd.DataFrame(
        {
            "x": [0.1, np.nextafter(1.0, 2.0), np.nan, -0.0, 1e-310],
            "s": ["a", None, "ü", "", "b"],
        }
    )
    path = tmp_path / "in.bin"
    write_columns(path, frame)
    raw = path.read_bytes()
    # mimic the runner's output file: magic, where, then the same columns
    magic_len = struct.unpack(">H", raw[:2])[0]
    where = b'{"machine": "test"}'
    (tmp_path / "out.bin").write_bytes(
        raw[: 2 + magic_len] + struct.pack(">H", len(where)) + where + raw[2 + magic_len :]
    )
    back, info = read_output(tmp_path / "out.bin")
    assert info == {"machine": "test"}
    assert back["x"].to_numpy().tobytes()[:16] == frame["x"].to_numpy().tobytes()[:16]
    np.testing.assert_array_equal(back["x"].to_numpy(), frame["x"].to_numpy())
    assert list(back["s"]) == ["a", None, "ü", "", "b"]


@pytest.mark.slow
def test_pmml_runner_natively_matches_jpmml_evaluator_exactly(iris, tmp_path):
    from parity.validators.runtimes.pmml import JpmmlRuntime
    from parity.validators.targets.pmml_runner import run_pmml_in

    X, y = iris
    estimator = LogisticRegression(max_iter=500).fit(X, y)
    conversion = formats.convert("pmml", estimator, X, tmp_path)
    frame, where = run_pmml_in(None, conversion.path, X)
    assert where["verification"] == "ok" and where["machine"] in ("amd64", "x86_64", "aarch64")
    expected = JpmmlRuntime().evaluate(conversion.path, X)
    columns = [f"probability({c})" for c in estimator.classes_]
    np.testing.assert_array_equal(frame[columns].to_numpy(), expected[columns].to_numpy(dtype=float))


@pytest.mark.aarch64
def test_a_table_without_a_process_target_still_compares_every_row_on_the_first_deploy_target(
    gbr_model, tmp_path
):
    """Sampling is for extra targets: the first deploy target evaluates every reference row."""
    from parity.validators.targets import setup_aarch64

    setup_aarch64(log=lambda line: None)
    model, conversion = gbr_model
    rows = len(model.reference)
    targets = load_targets(
        write_table(
            tmp_path,
            '[[target]]\nname = "arm"\nplatform = "linux/aarch64"\nreach = "emulator"\nsample_rows = 50\n\n'
            '[[target]]\nname = "arm-again"\nplatform = "linux/aarch64"\nreach = "emulator"\nsample_rows = 50\n'
            "required = false\n",
        )
    )
    checks = validate_conversion(ModelContext(model), conversion, targets=targets, roles={})
    (coverage,) = [c for c in checks if c.kind == "coverage" and c.output == "predict"]
    assert (coverage.verdict, coverage.rows) == (Verdict.PASS, rows)
    assert coverage.explanation == f"{rows} of {rows} reference rows compared by onnxruntime@arm"
    (sampled,) = [c for c in checks if c.target == "arm-again" and c.against == "scikit-learn"]
    assert sampled.rows == 50
