"""The ``parity`` command line, in-process through ``main`` and as the installed console script."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.semi_supervised import LabelSpreading

from parity.archive import Archive, file_model
from parity.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from parity.cli.doctor import CHECKS
from parity.core.defaults import host_platform
from parity.core.records import Report
from parity.registry import FileRegistry, ModelRef
from parity.validators.report import Check, Verdict

BIN = Path(sys.executable).parent  # the venv's bin: python and the console scripts, no java
PARITY = BIN / "parity"
APT_FIX = "apt-get install -y openjdk-17-jre-headless"
# what each doctor check prints as its name, in CHECKS order
DOCTOR_NAMES = [
    "python",
    "java",
    "scikit-learn",
    "sklearn2pmml",
    "onnxruntime",
    "prefect api",
    "targets",
]


def _parity(
    args: list[str], cwd: Path, *, java: bool = True, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run the console script in a fresh process; without Java, PATH holds only the venv's bin."""
    env = dict(os.environ, PREFECT_HOME=str(cwd / "prefect-home"))
    if not java:
        env["PATH"] = str(BIN)
        env.pop("JAVA_HOME", None)
    return subprocess.run(
        [str(PARITY), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def logreg(iris: tuple[pd.DataFrame, pd.Series]) -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(*iris)


@pytest.fixture
def model_file(tmp_path: Path, logreg) -> Path:
    path = tmp_path / "iris-lr.skops"
    sio.dump(logreg, path)
    return path


@pytest.fixture(params=["csv", "parquet"])
def reference_file(request, tmp_path: Path, iris) -> Path:
    path = tmp_path / f"reference.{request.param}"
    if request.param == "csv":
        iris[0].to_csv(path, index=False)
    else:
        iris[0].to_parquet(path, index=False)
    return path


@pytest.fixture
def registry_dir(tmp_path: Path) -> Path:
    return tmp_path / "registry"


def _register_args(model_file: Path, reference: Path, registry: Path, *extra: str) -> list[str]:
    return ["register", str(model_file), "--reference", str(reference), "--name", "iris-lr",
            "--registry", str(registry), *extra]  # fmt: skip


# -- register --------------------------------------------------------------------------------------------
def test_register_writes_the_record(model_file, reference_file, registry_dir, tmp_path, capsys, iris):
    train_py = tmp_path / "train.py"
    train_py.write_text("# training\n")
    args = _register_args(
        model_file,
        reference_file,
        registry_dir,
        "--cv-score",
        "accuracy=0.96",
        "--cv-score",
        "cv3=0.9,0.95,1",
        "--tolerance",
        "probability=atol:1e-3,rtol:1e-2",
        "--source",
        str(train_py),
        "--training-data",
        "s3://bucket/iris.csv",
    )
    assert main(args) == EXIT_OK
    assert capsys.readouterr().out == f"registered iris-lr:1 in {registry_dir}\n"
    record = json.loads((registry_dir / "iris-lr" / "1" / "registration.json").read_text())
    assert record["name"] == "iris-lr" and record["version"] == 1
    assert record["estimator_summary"] == "LogisticRegression"
    assert record["reference"]["rows"] == len(iris[0])
    assert record["tolerances"] == {"probability": {"atol": 1e-3, "rtol": 1e-2}}
    provenance = record["provenance"]
    assert provenance["cv_scores"] == {"accuracy": 0.96, "cv3": [0.9, 0.95, 1.0]}
    assert provenance["training_data"]["uri"] == "s3://bucket/iris.csv"
    assert provenance["source"]["origin"] == "given"
    assert [f["file"] for f in provenance["source"]["files"]] == ["source/train.py"]
    assert main([*args[:-4], "--version", "5"]) == EXIT_OK
    assert FileRegistry(registry_dir).refs() == [ModelRef("iris-lr", 1), ModelRef("iris-lr", 5)]


def test_register_without_source_keeps_none(model_file, tmp_path, registry_dir, iris):
    reference = tmp_path / "reference.csv"
    iris[0].to_csv(reference, index=False)
    assert main(_register_args(model_file, reference, registry_dir)) == EXIT_OK
    record = FileRegistry(registry_dir).record(ModelRef("iris-lr", 1))
    assert record.provenance.source.to_json() == {"origin": "given", "files": []}


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--cv-score", "accuracy", r"--cv-score 'accuracy' must look like NAME=VALUE\[,VALUE\.\.\.\]"),
        ("--cv-score", "accuracy=high", r"--cv-score accuracy=high: scores must be numbers"),
        ("--tolerance", "probability", r"--tolerance 'probability' must look like KIND=atol:X"),
        (
            "--tolerance",
            "probability=tol:1",
            r"--tolerance probability: use atol:X and/or rtol:Y, got 'tol:1'",
        ),
        ("--tolerance", "probability=atol:big", r"--tolerance probability: 'big' is not a number"),
    ],
    ids=["cv-no-equals", "cv-not-number", "tol-no-equals", "tol-unknown-band", "tol-not-number"],
)
def test_register_bad_option_syntax(model_file, tmp_path, registry_dir, iris, capsys, option, value, message):
    reference = tmp_path / "reference.csv"
    iris[0].to_csv(reference, index=False)
    assert main(_register_args(model_file, reference, registry_dir, option, value)) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("parity: error: ")
    assert re.search(message, err), err
    assert not (registry_dir / "iris-lr").exists()


def test_register_pickle_needs_trust(logreg, tmp_path, registry_dir, iris, capsys):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(logreg))
    reference = tmp_path / "reference.csv"
    iris[0].to_csv(reference, index=False)
    assert main(_register_args(path, reference, registry_dir)) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--trust-pickle" in err and "--sha256" in err
    assert FileRegistry(registry_dir).refs() == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing.csv", "reference data file {} does not exist."),
        ("reference.txt", "{}: reference data must be .parquet or .csv, got .txt."),
    ],
    ids=["missing", "wrong-suffix"],
)
def test_register_bad_reference_file(model_file, tmp_path, registry_dir, capsys, name, message):
    reference = tmp_path / name
    if name.endswith(".txt"):
        reference.write_text("a,b\n1,2\n")
    assert main(_register_args(model_file, reference, registry_dir)) == EXIT_USAGE
    assert capsys.readouterr().err == f"parity: error: {message.format(reference)}\n"
    assert not registry_dir.exists()


def test_register_requires_reference_and_name(model_file, capsys):
    assert main(["register", str(model_file)]) == EXIT_USAGE
    assert "parity: error: Missing option '--reference'." in capsys.readouterr().err
    assert main(["register", str(model_file), "--reference", "rows.csv"]) == EXIT_USAGE
    assert "parity: error: Missing option '--name'." in capsys.readouterr().err


# -- models ----------------------------------------------------------------------------------------------
def _table(text: str) -> list[dict[str, str]]:
    """Rows of a table printed by the CLI, cut at the columns its dashed rule marks (cells may be empty)."""
    lines = [line for line in text.splitlines() if line.strip()]
    spans = [m.span() for m in re.finditer(r"-+", lines[1])]
    header = [lines[0][a:b].strip() for a, b in spans]
    return [{h: line[a:b].strip() for h, (a, b) in zip(header, spans, strict=True)} for line in lines[2:]]


def test_models_shows_the_newest_outcome_of_each_validated_version(tmp_path, logreg, iris, capsys):
    X, _ = iris
    registry, shelf = FileRegistry(tmp_path / "registry"), Archive(tmp_path / "archive")
    cell = {"format": "onnx", "runtime": "onnxruntime", "output": "predict"}
    passed, failed = Check(**cell, verdict=Verdict.PASS), Check(**cell, verdict=Verdict.FAIL)
    unsupported = Check(format="pmml", runtime="converter", output="conversion", target="*",
                        kind="conversion", verdict=Verdict.UNSUPPORTED)  # fmt: skip
    good = registry.register(logreg, X, "good")
    file_model(shelf, registry.open(good), {}, [passed])
    bad = registry.register(logreg, X, "bad")
    file_model(shelf, registry.open(bad), {}, [passed, failed])
    odd = registry.register(logreg, X, "odd")
    file_model(shelf, registry.open(odd), {}, [passed, unsupported])
    registry.register(StandardScaler().fit(X), X, "scaler")
    both = registry.register(logreg, X, "good")
    file_model(shelf, registry.open(both), {}, [failed])
    file_model(shelf, registry.open(both), {}, [passed])
    crashed = registry.register(logreg, X, "bad")
    identity = {"model_sha256": "ab" * 32, "reference_sha256": "cd" * 32}
    report = Report.crashed("bad", crashed.version, "the runner died").to_bytes()
    shelf.write_rejected("bad", crashed.version, {"report.json": report}, identity)

    args = ["models", "--registry", str(registry.root), "--archive", str(shelf.root)]
    assert main(args) == EXIT_OK
    rows = _table(capsys.readouterr().out)
    listed = {(r["name"], r["version"]): (r["outcome"], r["archived"], r["attempts"]) for r in rows}
    assert listed == {
        ("bad", "1"): ("failed", "no", "1"),
        ("bad", "2"): ("error", "no", "1"),
        ("good", "1"): ("passed", "yes", "1"),
        ("good", "2"): ("passed", "yes", "2"),
        ("odd", "1"): ("unsupported", "no", "1"),
        ("scaler", "1"): ("not validated", "no", "0"),
    }
    assert {r["estimator"] for r in rows} == {"LogisticRegression", "StandardScaler"}
    assert all(
        r["registered_at"] == registry.record(ModelRef(r["name"], int(r["version"]))).registered_at
        for r in rows
    )


def test_models_on_an_empty_registry(tmp_path, capsys):
    assert main(["models", "--registry", str(tmp_path / "none"), "--archive", str(tmp_path / "a")]) == EXIT_OK
    assert capsys.readouterr().out == f"no models registered in {tmp_path / 'none'}\n"


# -- doctor ----------------------------------------------------------------------------------------------
def test_doctor_passes_here_and_prints_every_check(capsys):
    assert main(["doctor"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    checks = [line for line in lines if line.startswith("[")]
    assert len(checks) == len(CHECKS) == len(DOCTOR_NAMES)
    for line, name in zip(checks, DOCTOR_NAMES, strict=True):
        assert line.startswith(("[ok  ] ", "[warn] ")) and line[7:].startswith(f"{name}: "), line
    assert lines[-1] == "the pipeline can run"


def test_doctor_without_java_says_how_to_install_it(tmp_path):
    done = _parity(["doctor"], tmp_path, java=False, timeout=120)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert "[FAIL] java: not found on PATH or JAVA_HOME" in done.stdout
    assert f"fix: Install one (Debian/Ubuntu: `{APT_FIX}`)" in done.stdout
    assert "the pipeline cannot run: fix java" in done.stdout.splitlines()[-1]


def test_doctor_fails_when_a_required_target_is_not_set_up(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PARITY_CACHE_DIR", str(tmp_path / "empty-cache"))
    assert main(["doctor"]) == EXIT_USAGE
    out = capsys.readouterr().out
    assert "[FAIL] targets: linux-aarch64-emulated:" in out
    assert "parity targets setup aarch64" in out
    assert out.splitlines()[-1] == "the pipeline cannot run: fix targets"


def test_targets_command_that_doctor_advertises_exists(capsys):
    assert main(["targets", "--help"]) == EXIT_OK
    assert "setup  provision an emulated target" in capsys.readouterr().out


# -- run -------------------------------------------------------------------------------------------------
def test_run_without_java_refuses_before_starting(tmp_path, logreg, iris):
    registry = FileRegistry(tmp_path / "registry")
    registry.register(logreg, iris[0], "iris-lr")
    archive = tmp_path / "archive"
    done = _parity(
        ["run", "--registry", str(registry.root), "--archive", str(archive)],
        tmp_path,
        java=False,
        timeout=120,
    )
    assert done.returncode == EXIT_USAGE
    assert "parity: error: java: not found on PATH or JAVA_HOME" in done.stderr
    assert APT_FIX in done.stderr and "parity doctor" in done.stderr
    assert not archive.exists()
    assert done.stdout == ""


@pytest.mark.slow
def test_run_archives_the_good_model_and_rejects_the_unsupported(tmp_path, logreg, iris, capsys):
    X, y = iris
    registry, shelf = FileRegistry(tmp_path / "registry"), Archive(tmp_path / "archive")
    registry.register(logreg, X, "iris-lr")
    registry.register(LabelSpreading().fit(X, y), X, "iris-spread")

    done = _parity(["run", "--registry", str(registry.root), "--archive", str(shelf.root)], tmp_path)
    assert done.returncode == EXIT_FAILED, done.stderr[-3000:]
    rows = _table(done.stdout.split("\n\n")[0])
    verdicts = {(r["model"], r["format"], r["runtime"], r["output"]): r["verdict"] for r in rows}
    assert verdicts[("iris-lr:1", "onnx", "onnxruntime", "predict_proba")] == "pass"
    assert verdicts[("iris-lr:1", "pmml", "jpmml_evaluator", "predict")] == "pass"
    assert {v for (model, *_), v in verdicts.items() if model == "iris-lr:1"} == {"pass"}
    assert {v for (model, *_), v in verdicts.items() if model == "iris-spread:1"} == {"unsupported"}
    assert f"iris-lr:1: passed -> {shelf.root / 'iris-lr' / '1'}" in done.stdout
    assert "iris-spread:1: unsupported -> " in done.stdout

    assert shelf.is_archived("iris-lr", 1) and shelf.check(shelf.bundle_path("iris-lr", 1)) == []
    assert not shelf.bundle_path("iris-spread", 1).exists()
    [rejected] = shelf.rejected("iris-spread", 1)
    report = json.loads((rejected / "report.json").read_text())
    assert report["outcome"] == "unsupported"
    assert {c["verdict"] for c in report["checks"]} == {"unsupported"}
    assert all(c["explanation"] for c in report["checks"])
    assert "LabelSpreading" in report["conversions"]["onnx"]["message"]
    assert report["conversions"]["pmml"]["status"] == "unsupported"

    assert main(["models", "--registry", str(registry.root), "--archive", str(shelf.root)]) == EXIT_OK
    states = {r["name"]: r["archived"] for r in _table(capsys.readouterr().out)}
    assert states == {"iris-lr": "archived", "iris-spread": "rejected"}


# -- options, usage errors, settings ---------------------------------------------------------------------
def test_run_help_lists_its_options(capsys):
    assert main(["run", "--help"]) == EXIT_OK
    out = capsys.readouterr().out
    for option in ("--registry", "--archive", "--model NAME[:VERSION]", "--targets FILE", "--verbose"):
        assert option in out, out
    assert "targets table (default: $PARITY_TARGETS or the built-in)" in " ".join(out.split())  # wrapped


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--bogus"], "parity: error: No such option: --bogus"),
        (["register", "model.skops"], "parity: error: Missing option '--reference'."),
        (["targets", "setup", "arm"], "parity: error: Invalid value for 'platform'"),
        ([], "parity: error: Missing command."),
    ],
    ids=["unknown-option", "missing-required", "bad-choice", "no-command"],
)
def test_bad_usage_exits_2_with_a_message_and_no_traceback(tmp_path, args, message):
    done = _parity(args, tmp_path, timeout=120)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert message in done.stderr and "Usage: parity" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def _one_target_table(tmp_path: Path) -> Path:
    path = tmp_path / "targets.toml"
    path.write_text(f'[[target]]\nname = "only-here"\nplatform = "{host_platform()}"\nreach = "process"\n')
    return path


def test_targets_file_is_read_without_touching_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PARITY_TARGETS", raising=False)
    before = dict(os.environ)
    assert main(["targets", "--targets", str(_one_target_table(tmp_path))]) == EXIT_OK
    assert [r["name"] for r in _table(capsys.readouterr().out)] == ["only-here"]
    assert dict(os.environ) == before


def test_run_with_a_bad_targets_file_refuses_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PARITY_TARGETS", raising=False)
    before = dict(os.environ)
    missing = tmp_path / "missing.toml"
    args = [
        "run",
        "--targets",
        str(missing),
        "--registry",
        str(tmp_path / "r"),
        "--archive",
        str(tmp_path / "a"),
    ]
    assert main(args) == EXIT_USAGE
    assert capsys.readouterr().err.startswith(f"parity: error: targets file {missing}: ")
    assert dict(os.environ) == before
    assert not (tmp_path / "a").exists()


def test_table_cells_are_never_cut(capsys):
    from parity.cli.table import print_table

    long = "x" * 300 + " [not markup]"
    print_table([{"a": long, "b": "1"}], ["a", "b"])
    [row] = _table(capsys.readouterr().out)
    assert row == {"a": long, "b": "1"}


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_run_uses_the_targets_file_and_shows_prefect_lines_only_when_verbose(tmp_path, logreg, iris, verbose):
    registry = FileRegistry(tmp_path / "registry")
    registry.register(logreg, iris[0], "iris-lr")
    args = ["run", "--registry", str(registry.root), "--archive", str(tmp_path / "archive")]
    args += ["--targets", str(_one_target_table(tmp_path))] + (["--verbose"] if verbose else [])
    done = _parity(args, tmp_path)
    assert done.returncode == EXIT_OK, done.stderr[-3000:]
    rows = _table(done.stdout.split("\n\n")[0])
    assert {r["target"] for r in rows} - {""} == {"only-here"}
    assert ("Finished in state" in done.stderr) is verbose, done.stderr[-3000:]
    # quiet means quiet to the end: Prefect logs its temporary server's shutdown at exit, at INFO
    assert ("| INFO" in done.stderr) is verbose, done.stderr[-3000:]
    assert "iris-lr:1 passed" in done.stderr  # Parity's own progress line, verbose or not
