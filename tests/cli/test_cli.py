"""The ``parity`` command line, in-process through ``main`` and as the installed console script."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import socket
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
from tests.archive.test_ocfl import ocfl_valid
from tests.registry.bad_references import BAD_REFERENCES, make_bad_reference

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


#: Bounds a hang of the console script (each call ends when the command does): a `parity run` is 20-50 s on
#: a quiet 2-core machine and several times that at load 10; even `--help` pays 5-10 s of imports quiet.
CLI_DEADLINE_S = 600


def _parity(
    args: list[str],
    cwd: Path,
    *,
    java: bool = True,
    timeout: float = CLI_DEADLINE_S,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """Run the console script in a fresh process (after ``prefix``, a command that runs it); without Java,
    PATH holds only the venv's bin."""
    env = dict(os.environ, PREFECT_HOME=str(cwd / "prefect-home"), **(env or {}))
    if not java:
        env["PATH"] = str(BIN)
        env.pop("JAVA_HOME", None)
    return subprocess.run(
        [*prefix, str(PARITY), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
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


def test_register_with_a_role_records_it(model_file, tmp_path, registry_dir, iris):
    reference = tmp_path / "reference.csv"
    iris[0].to_csv(reference, index=False)
    args = [*_register_args(model_file, reference, registry_dir), "--role", "pypmml=deploy"]
    assert main(args) == EXIT_OK
    assert FileRegistry(registry_dir).record(ModelRef("iris-lr", 1)).roles == {"pypmml": "deploy"}


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
        ("--role", "pypmml", r"--role 'pypmml' must look like RUNTIME=deploy\|witness"),
        ("--role", "pypml=deploy", r"--role: role for 'pypml': no runtime of that name; runtimes: .*pypmml"),
        ("--role", "pypmml=judge", r"--role: role for 'pypmml': 'judge' is not deploy or witness"),
    ],
    ids=[
        "cv-no-equals",
        "cv-not-number",
        "tol-no-equals",
        "tol-unknown-band",
        "tol-not-number",
        "role-no-equals",
        "role-unknown-runtime",
        "role-unknown-role",
    ],
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
    done = _parity(["doctor"], tmp_path, java=False)
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
    summary = _blocks(done.stdout)[0]
    assert summary[0] == f"iris-lr:1: passed -> {shelf.root / 'iris-lr' / '1'}"
    # logistic regression: neither converter emits decision_function, and the summary says so
    spread = next(i for i, line in enumerate(summary) if line.startswith("iris-spread:1: unsupported -> "))
    assert [line.split()[:3] for line in summary[1:spread]] == [
        ["not", "covered", "pmml/deploy/*/decision_function:"],
        ["not", "covered", "onnx/deploy/*/decision_function:"],
    ]
    reasons = [line.split(maxsplit=1) for line in summary[spread + 1 :]]
    assert {(verdict, line.split(": ")[:2][1]) for verdict, line in reasons} == {("unsupported", "convert")}
    assert {line.split(": ")[0] for _, line in reasons} == {
        "onnx/converter/*/conversion",
        "pmml/converter/*/conversion",
    }
    rows = _detail_rows(done.stdout)
    verdicts = {(r["model"], r["runtime"], r["target"], r["output"], r["vs"]): r["verdict"] for r in rows}
    assert (
        verdicts[("iris-lr:1", "onnx/onnxruntime", "linux-x86_64", "predict_proba", "vs scikit-learn")]
        == "pass"
    )
    assert (
        verdicts[("iris-lr:1", "pmml/jpmml_evaluator", "linux-x86_64", "predict", "vs scikit-learn")]
        == "pass"
    )
    assert {v for (model, *_), v in verdicts.items() if model == "iris-lr:1"} == {"pass", "not covered"}
    assert {v for (model, *_), v in verdicts.items() if model == "iris-spread:1"} == {"unsupported"}

    assert shelf.is_archived("iris-lr", 1) and shelf.check(shelf.bundle_path("iris-lr", 1)) == []
    assert not shelf.bundle_path("iris-spread", 1).exists()
    [rejected] = shelf.rejected("iris-spread", 1)
    report = json.loads(shelf.read_at(rejected, "report.json"))
    # what `parity run` writes is an OCFL 1.1 object, by an independent validator
    assert ocfl_valid(shelf.object_url("iris-lr", 1)) == (True, "")
    assert ocfl_valid(shelf.store.url(rejected))[0]
    assert report["outcome"] == "unsupported"
    assert {c["verdict"] for c in report["checks"]} == {"unsupported"}
    assert all(c["explanation"] for c in report["checks"])
    assert "LabelSpreading" in report["conversions"]["onnx"]["message"]
    assert report["conversions"]["pmml"]["status"] == "unsupported"

    assert main(["models", "--registry", str(registry.root), "--archive", str(shelf.root)]) == EXIT_OK
    states = {r["name"]: (r["outcome"], r["archived"]) for r in _table(capsys.readouterr().out)}
    assert states == {"iris-lr": ("passed", "yes"), "iris-spread": ("unsupported", "no")}


# -- bad input and a broken environment: exit 2, the fix, no traceback, nothing validated ----------------
#: Bad reference files taken through the console script (every case is tested in tests/registry).
CLI_BAD_REFERENCES = ["empty-parquet", "csv-named-parquet", "latin-1-csv", "text-in-a-numeric-column-csv"]


@pytest.mark.parametrize(
    "case", [c for c in BAD_REFERENCES if c.id in CLI_BAD_REFERENCES], ids=lambda c: c.id
)
def test_register_a_bad_reference_file_exits_2_naming_it(case, model_file, tmp_path, registry_dir, iris):
    reference = make_bad_reference(case, tmp_path, iris[0])
    done = _parity(_register_args(model_file, reference, registry_dir), tmp_path, timeout=300)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr.startswith(f"parity: error: reference data file {reference}"), done.stderr
    assert re.search(case.message, done.stderr), done.stderr
    assert "Traceback" not in done.stderr and ".staging" not in done.stderr and done.stdout == ""
    assert FileRegistry(registry_dir).refs() == []


@pytest.fixture
def registered(tmp_path, logreg, iris) -> FileRegistry:
    registry = FileRegistry(tmp_path / "registry")
    registry.register(logreg, iris[0], "iris-lr")
    return registry


@pytest.fixture
def prefect_defaults(monkeypatch):
    """An in-process run applies Prefect's defaults to the environment: undone after the test."""
    from parity.core.prefect_env import DEFAULTS

    for key, value in DEFAULTS.items():
        monkeypatch.setenv(key, os.environ.get(key, value))


def _nothing_validated(archive: Path) -> bool:
    """No bundle and no rejected attempt of iris-lr:1 (the archive need not exist)."""
    shelf = Archive(archive)
    return not shelf.is_archived("iris-lr", 1) and shelf.rejected("iris-lr", 1) == []


@pytest.mark.parametrize(
    "version", ["²", "١", "1²"], ids=["superscript", "arabic-indic", "digit-superscript"]
)
def test_run_with_a_unicode_digit_version_exits_2(tmp_path, registered, capsys, version):
    args = ["run", "--registry", str(registered.root), "--archive", str(tmp_path / "a")]
    assert main([*args, "--model", f"iris-lr:{version}"]) == EXIT_USAGE
    assert capsys.readouterr().err == (
        f"parity: error: 'iris-lr:{version}': the version must be a positive integer, e.g. iris-lr:1.\n"
    )
    assert not (tmp_path / "a").exists()


def test_run_with_a_dead_prefect_api_exits_2_before_validating(tmp_path, registered):
    with socket.socket() as probe:  # a port nobody listens on: bound, read, released
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    archive = tmp_path / "archive"
    args = ["run", "--registry", str(registered.root), "--archive", str(archive)]
    done = _parity(args, tmp_path, env={"PREFECT_API_URL": url}, timeout=300)
    assert done.returncode == EXIT_USAGE, done.stderr[-3000:]
    assert done.stderr.startswith(f"parity: error: prefect api: {url} unreachable: "), done.stderr
    assert "Start the server (`prefect server start`) or unset PREFECT_API_URL" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert _nothing_validated(archive) and not archive.exists()


@pytest.mark.parametrize("where", ["under-a-file", "a-file"])
def test_run_with_an_archive_that_cannot_be_written_exits_2_before_validating(
    tmp_path, registered, capsys, prefect_defaults, where
):
    # Tests run as root, whom permission bits do not stop: a path under a regular file stops everyone.
    blocker = tmp_path / "file.txt"
    blocker.write_text("a regular file\n")
    archive = blocker / "sub" if where == "under-a-file" else blocker
    assert main(["run", "--registry", str(registered.root), "--archive", str(archive)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"parity: error: archive: {archive} cannot be a folder: {blocker} is a file. "), err
    assert "Pass --archive a folder" in err and "(see `parity doctor`)" in err
    assert blocker.read_text() == "a regular file\n"


def test_run_with_a_required_target_not_ready_exits_2_before_validating(
    tmp_path, registered, capsys, monkeypatch, prefect_defaults
):
    monkeypatch.setenv("PARITY_CACHE_DIR", str(tmp_path / "empty-cache"))  # no emulator set up here
    table = tmp_path / "targets.toml"
    table.write_text(
        f'[[target]]\nname = "here"\nplatform = "{host_platform()}"\nreach = "process"\n\n'
        '[[target]]\nname = "arm"\nplatform = "linux/aarch64"\nreach = "emulator"\nrequired = true\n'
    )
    archive = tmp_path / "archive"
    args = ["run", "--registry", str(registered.root), "--archive", str(archive), "--targets", str(table)]
    assert main(args) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("parity: error: targets: arm: "), err
    assert "parity targets setup aarch64" in err and "Set up the required targets" in err
    assert _nothing_validated(archive) and not archive.exists()


def _read_only_mount(folder: Path) -> tuple[str, ...]:
    """A command prefix that runs what follows with ``folder`` a read-only tmpfs, in a mount namespace of its
    own (gone with the process: nothing to unmount); skips the test where that is not permitted."""
    prefix = ("unshare", "--mount", "sh", "-c", f'mount -t tmpfs -o ro tmpfs "{folder}" && exec "$@"', "-")
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=60, check=False)
    if probe.returncode != 0:
        pytest.skip(f"no read-only mount here (needs root with CAP_SYS_ADMIN): {probe.stderr.strip()}")
    return prefix


def test_run_with_an_archive_on_a_read_only_mount_exits_2_before_validating(tmp_path, registered):
    archive = tmp_path / "archive"
    archive.mkdir()
    args = ["run", "--registry", str(registered.root), "--archive", str(archive)]
    done = _parity(args, tmp_path, prefix=_read_only_mount(archive), timeout=300)
    assert done.returncode == EXIT_USAGE, done.stderr[-3000:]
    assert done.stderr.startswith(
        f"parity: error: archive: {archive} is not writable: writing in {archive} failed (Read-only file system)"
    ), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert list(archive.iterdir()) == []  # outside the namespace: the folder as it was, nothing validated


@pytest.mark.parametrize("writable", [True, False], ids=["writable", "read-only-mode"])
def test_check_archive_agrees_with_a_real_write(tmp_path, writable):
    from parity.cli.doctor import check_archive

    folder = tmp_path / "archive"
    folder.mkdir(mode=0o755 if writable else 0o555)
    try:
        try:  # what the file system says, whoever runs the test (root writes into a 0o555 folder)
            (folder / "probe").write_text("x")
            (folder / "probe").unlink()
            can_write = True
        except PermissionError:
            can_write = False
        finding = check_archive(folder / "new")
        assert finding.ok is can_write, finding
        assert finding.detail == (
            f"{folder / 'new'} is writable (to be created)"
            if can_write
            else f"{folder / 'new'} is not writable: writing in {folder} failed (Permission denied)"
        )
        assert list(folder.iterdir()) == []  # the probe left nothing
    finally:
        folder.chmod(0o755)


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
    done = _parity(args, tmp_path)
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
    # every row ran on the one target; the coverage rows (one per output) are the model's, on all targets
    assert {r["target"] for r in _detail_rows(done.stdout)} == {"only-here", "*"}
    assert ("Finished in state" in done.stderr) is verbose, done.stderr[-3000:]
    # quiet means quiet to the end: Prefect logs its temporary server's shutdown at exit, at INFO
    assert ("| INFO" in done.stderr) is verbose, done.stderr[-3000:]
    assert "iris-lr:1 passed" in done.stderr  # Parity's own progress line, verbose or not


# -- the verdict table -----------------------------------------------------------------------------------
AWAY = "linux-aarch64-emulated"
COMPARE_REASON = "3 row(s) outside atol 1e-09 in a double-precision artifact: a conversion bug, not rounding."


def _cell(output: str, verdict: Verdict = Verdict.PASS, **fields) -> Check:
    base = {"format": "pmml", "runtime": "jpmml_evaluator", "target": "linux-x86_64", "rows": 150}
    return Check(**{**base, **fields}, output=output, verdict=verdict)


def _verdict_report(name: str, checks: list[Check], outcome: str) -> Report:
    data = {"name": name, "version": 1, "outcome": outcome, "validated_at": "2026-12-02T00:00:00+00:00"}
    return Report(**data, estimator="LogisticRegression", reference_rows=150, checks=checks).filed(1.0, "/a")


def _reports() -> list[Report]:
    failing = [
        _cell("predict"),
        _cell("predict_proba", Verdict.FAIL, stage="compare", max_abs=0.5, n_outside=3,
              explanation=COMPARE_REASON + " Compare the runtimes' rows to see which side is wrong."),
        _cell("predict", Verdict.FAIL, runtime="pypmml", role="witness", required=False,
              explanation="40 row(s) outside the band. JPMML and scikit-learn agree."),
        _cell("decision_function", Verdict.NOT_COVERED, stage="coverage", rows=0,
              explanation="sklearn2pmml emits no decision values for this estimator. Reported, never blocking."),
        _cell("predict", runtime="jpmml", target=AWAY, rows=200),
        _cell("predict", Verdict.FAIL, runtime="jpmml", target=AWAY, against="linux-x86_64", rows=200,
              n_outside=1, explanation=f"{AWAY}/jpmml vs linux-x86_64/jpmml_evaluator: DISAGREE on 1 row(s)."),
        _cell("*", Verdict.UNAVAILABLE, target="linux-x86_64-2-threads", required=False, rows=0,
              explanation="skipped (optional target): set it up with `parity targets setup`."),
    ]  # fmt: skip
    return [
        _verdict_report("churn", failing, "failed"),
        _verdict_report("iris-lr", [_cell("predict")], "passed"),
    ]


def _blocks(text: str) -> list[list[str]]:
    """The verdict table's blocks (the summary, then one per model and target), lines without padding."""
    return [[line.rstrip() for line in block.splitlines()] for block in text.strip().split("\n\n")]


def _detail_rows(text: str) -> list[dict[str, str]]:
    """Every row of the verdict table's detail, with its model and target (from each block's heading)."""
    rows = []
    for heading, *table in _blocks(text)[1:]:
        if not table:  # the sweep's own line, after the table
            continue
        model, _, target = heading.partition(" on ")
        target = target.rsplit(" (", 1)[0] if target else "*"
        model = model.removesuffix(" (all targets)")
        rows += [{"model": model, "target": target, **r} for r in _table("\n".join(table))]
    return rows


def test_the_summary_lists_each_failing_cell_with_its_stage_and_reason_before_the_detail(capsys):
    from parity.cli.table import print_verdicts

    print_verdicts(_reports())
    summary, *details = _blocks(capsys.readouterr().out)
    assert summary[0] == "churn:1: failed -> /a"
    cells = [line.split(maxsplit=1) for line in summary[1:6]]
    assert cells[0] == ["fail", f"pmml/jpmml_evaluator/linux-x86_64/predict_proba: compare: {COMPARE_REASON}"]
    assert cells[1] == ["fail", f"pmml/jpmml/{AWAY}/predict vs linux-x86_64: compare: {AWAY}/jpmml vs "
                        "linux-x86_64/jpmml_evaluator: DISAGREE on 1 row(s)."]  # fmt: skip
    assert cells[2] == ["not", "covered  pmml/jpmml_evaluator/linux-x86_64/decision_function: coverage: "
                        "sklearn2pmml emits no decision values for this estimator."]  # fmt: skip
    assert cells[3] == ["fail", "pmml/pypmml/linux-x86_64/predict: compare: 40 row(s) outside the band. "
                        "(not blocking: witness runtime)"]  # fmt: skip
    assert cells[4][0] == "unavailable" and cells[4][1].endswith("(not blocking: optional target)")
    assert summary[6:] == ["iris-lr:1: passed -> /a"]
    assert "Compare the runtimes' rows" not in "\n".join(summary)  # the first sentence only
    assert [block[0] for block in details] == [
        "churn:1 on linux-x86_64 (required)",
        f"churn:1 on {AWAY} (required)",
        "churn:1 on linux-x86_64-2-threads (optional)",
        "iris-lr:1 on linux-x86_64 (required)",
    ]


def test_a_cross_target_row_says_which_target_it_is_compared_with(capsys):
    from parity.cli.table import print_verdicts

    print_verdicts(_reports())
    details = {block[0]: _table("\n".join(block[1:])) for block in _blocks(capsys.readouterr().out)[1:]}
    away = details[f"churn:1 on {AWAY} (required)"]
    assert [(r["output"], r["vs"], r["verdict"]) for r in away] == [
        ("predict", "vs scikit-learn", "pass"),
        ("predict", "vs linux-x86_64", "fail"),
    ]
    here = details["churn:1 on linux-x86_64 (required)"]
    assert [r["runtime"] for r in here] == ["pmml/jpmml_evaluator"] * 2 + ["pmml/pypmml (witness)"] + [
        "pmml/jpmml_evaluator"
    ]
    assert here[3]["verdict"] == "not covered"
    assert details["churn:1 on linux-x86_64-2-threads (optional)"][0]["verdict"] == "unavailable"


def test_the_verdict_table_fits_100_columns_without_cutting_a_cell():
    from rich.console import Console

    from parity.cli.table import print_verdicts

    with open(os.devnull, "w") as sink:
        console = Console(width=100, record=True, file=sink, color_system=None)
        print_verdicts(_reports(), console)
    text = console.export_text()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 100
    details = [_table("\n".join(block[1:])) for block in _blocks(text)[1:]]
    assert [r["runtime"] for r in details[0]][2] == "pmml/pypmml (witness)"  # each detail row on one line
    assert {r["vs"] for rows in details for r in rows} == {"vs scikit-learn", "vs linux-x86_64", ""}
