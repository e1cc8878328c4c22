"""What a user installs: the wheel holds the parity.* namespace and nothing else, and both commands start.

The expected packages and data files are read from pyproject.toml, so adding a stage needs no edit here.
"""

from __future__ import annotations

import configparser
import importlib.util
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path, PurePosixPath

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]

#: Named in the design (README "Layout"): each must ship whatever the tables above say.
STAGES = ("registry", "converters", "validators", "archive", "flows", "deployments", "core", "cli")
DATA_FILES = (
    "parity/core/java/ParityEngine.java",
    "parity/core/java/ParityConverterServer.java",
    "parity/core/java/PmmlRunner.java",
    "parity/core/java/Pmml4sRunner.java",
    "parity/validators/targets/targets.toml",
    "parity/deployments/prefect.yaml",
)

#: What a build must not copy from the working tree (what .gitignore keeps out of the repository).
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".*_cache", ".lint", ".parity",
    "parity-registry", "parity-archive",
)  # fmt: skip

#: setuptools builds wheels by itself from 70.1 on; before that it needs the `wheel` package.
SETUPTOOLS_WITH_BDIST_WHEEL = Version("70.1")


def _source_dir(package: str) -> Path:
    """Where ``package`` lives in the repository, by [tool.setuptools.package-dir] (longest prefix wins)."""
    mapping = SETUPTOOLS["package-dir"]
    parts = package.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in mapping:
            return ROOT / mapping[prefix] / Path(*parts[n:])
    raise AssertionError(f"{package}: no [tool.setuptools.package-dir] entry maps it (or a parent)")


def source_modules() -> dict[str, Path]:
    """Every Python file of the namespace as the source tree holds it (not as the configuration lists it):
    wheel path → source file, walking each [tool.setuptools.package-dir] folder's packages."""
    mapping = SETUPTOOLS["package-dir"]
    mapped = {(ROOT / folder).resolve() for folder in mapping.values()}
    found: dict[str, Path] = {}
    for package, folder in mapping.items():
        root = (ROOT / folder).resolve()
        for init in sorted(root.rglob("__init__.py")):
            here = init.parent
            # a package below another mapped folder belongs to that mapping; a folder without __init__.py
            # on the way up is not a package
            inside = [p for p in [here, *here.parents] if p.is_relative_to(root) and p != root]
            if any(p in mapped for p in inside) or not all((p / "__init__.py").is_file() for p in inside):
                continue
            for module in sorted(here.glob("*.py")):
                wheel_path = PurePosixPath(*package.split("."), module.relative_to(root).as_posix())
                found[str(wheel_path)] = module
    return found


def expected_packages() -> list[str]:
    """Every package of the source tree, as ``parity/.../__init__.py`` (see :func:`source_modules`)."""
    return sorted(path for path in source_modules() if path.endswith("/__init__.py"))


def expected_data_files() -> list[str]:
    """Every file of the repository that [tool.setuptools.package-data] selects, as a path in the wheel."""
    found = []
    for package, patterns in SETUPTOOLS["package-data"].items():
        source = _source_dir(package)
        for pattern in patterns:
            for path in sorted(source.glob(pattern)):
                found.append(str(PurePosixPath(*package.split("."), path.relative_to(source).as_posix())))
    return found


def _build_here() -> bool:
    """Whether this environment meets [build-system] requires (and can make wheels), so no isolation is needed."""
    for line in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(line)
        try:
            installed = Version(metadata.version(requirement.name))
        except metadata.PackageNotFoundError:
            return False
        if installed not in requirement.specifier:
            return False
    setuptools = Version(metadata.version("setuptools"))
    return setuptools >= SETUPTOOLS_WITH_BDIST_WHEEL or importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Iterator[zipfile.ZipFile]:
    """The wheel ``pip wheel`` builds from a clean copy of the working tree (no stale build/ to hide a gap)."""
    source = tmp_path_factory.mktemp("source") / "parity"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    out = tmp_path_factory.mktemp("wheel")
    isolation = (
        ["--no-build-isolation"] if _build_here() else []
    )  # else pip fetches setuptools from the index
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        *isolation,
        "-q",
        "-w",
        str(out),
        str(source),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-4000:]}"
    (path,) = out.glob("parity-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def _dist_info(wheel: zipfile.ZipFile) -> str:
    (name,) = {n.split("/")[0] for n in wheel.namelist() if n.split("/")[0].endswith(".dist-info")}
    return name


def test_the_configuration_names_every_stage_and_data_file():
    """The tables this module reads are not empty or stale: each stage and data file of the design is in them."""
    assert set(expected_packages()) >= {f"parity/{stage}/__init__.py" for stage in STAGES}
    assert set(expected_data_files()) >= set(DATA_FILES)
    for package in SETUPTOOLS["packages"]:
        assert (_source_dir(package) / "__init__.py").is_file(), f"{package}: no __init__.py where mapped"


def test_the_configuration_lists_every_package_of_the_source_tree():
    """setuptools ships only the listed packages (not their subpackages): a package left off the list would
    be missing from every wheel while editable installs, which read the folders, still import it."""
    listed = {f"{package.replace('.', '/')}/__init__.py" for package in SETUPTOOLS["packages"]}
    unlisted = sorted(set(expected_packages()) - listed)
    assert not unlisted, (
        f"add to [tool.setuptools] packages: {[p.removesuffix('/__init__.py') for p in unlisted]}"
    )


@pytest.mark.slow
def test_wheel_holds_only_the_parity_namespace(wheel: zipfile.ZipFile):
    top_level = {name.split("/")[0] for name in wheel.namelist()}
    assert top_level == {"parity", _dist_info(wheel)}


@pytest.mark.slow
def test_wheel_holds_every_package_and_its_data(wheel: zipfile.ZipFile):
    names = set(wheel.namelist())
    missing = [path for path in [*source_modules(), *expected_data_files()] if path not in names]
    assert not missing, f"the wheel lacks {missing}"


@pytest.mark.slow
def test_wheel_declares_the_console_script(wheel: zipfile.ZipFile):
    entry_points = configparser.ConfigParser()
    entry_points.read_string(wheel.read(f"{_dist_info(wheel)}/entry_points.txt").decode("utf-8"))
    declared = dict(entry_points["console_scripts"])
    assert declared == PYPROJECT["project"]["scripts"]
    assert declared["parity"] == "parity.cli.app:console"


#: Bounds a hang of ``--help`` (it ends when the command does): 2-5 s of imports on a quiet 2-core machine,
#: several times that at load 10 (issue 9).
HELP_DEADLINE_S = 300


@pytest.mark.parametrize(
    "command",
    [
        pytest.param([sys.executable, "-m", "parity"], id="python-m-parity"),
        pytest.param([str(Path(sys.executable).with_name("parity"))], id="console-script"),
    ],
)
def test_both_commands_print_the_usage(command: list[str]):
    assert Path(command[0]).is_file(), f"{command[0]} is missing: is Parity installed in this environment?"

    done = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=HELP_DEADLINE_S)

    assert done.returncode == 0, done.stderr
    assert done.stdout.lower().startswith("usage: parity ")
    assert "COMMAND" in done.stdout
    for name in ("doctor", "register", "models", "run", "demo", "targets", "deploy", "serve", "audit"):
        assert f"  {name} " in done.stdout, f"the help does not list {name}"
