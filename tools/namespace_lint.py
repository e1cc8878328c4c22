"""Run the tools that read source folders (mypy, import-linter) on Parity's ``parity.*`` namespace.

The repository keeps the pipeline's stages as top-level folders (``registry/``, ``converters/``...) and
``pyproject.toml`` maps each into ``parity.<stage>`` (``[tool.setuptools.package-dir]``). Installed code and
editable installs see one namespace; mypy and import-linter read folders, not import hooks. So this script
lays the namespace out as a tree of hard links under ``.lint/`` (rebuilt each run, nothing copied by value),
runs the tool there, and prints its findings with the repository's own paths.

Usage: ``python tools/namespace_lint.py mypy`` or ``python tools/namespace_lint.py imports``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT / ".lint"
SUFFIXES = (".py", ".pyi", ".typed")


def package_dirs() -> dict[str, Path]:
    """``parity.<stage>`` → its folder, as pyproject.toml maps them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: ROOT / folder for name, folder in config["package-dir"].items()}


def build_tree() -> dict[Path, Path]:
    """Lay the namespace out under ``.lint/``; return tree folder → repository folder, deepest first."""
    shutil.rmtree(TREE, ignore_errors=True)
    mapping: dict[Path, Path] = {}
    dirs = package_dirs()
    nested = {folder for folder in dirs.values()}
    for name, folder in dirs.items():
        place = TREE.joinpath(*name.split("."))
        mapping[place] = folder
        for source in folder.rglob("*"):
            if source.suffix not in SUFFIXES or "__pycache__" in source.parts:
                continue
            # a folder mapped on its own (a stage) is laid out under its own name, not inside ``parity/``
            if any(other != folder and source.is_relative_to(other) for other in nested):
                continue
            target = place / source.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(source, target)
    return dict(sorted(mapping.items(), key=lambda item: -len(item[0].parts)))


def to_repo_paths(text: str, mapping: dict[Path, Path]) -> str:
    """Rewrite ``.lint/parity/<stage>/x.py`` in a tool's output to ``<stage>/x.py``."""
    for place, folder in mapping.items():
        for spelling in (str(place), str(place.relative_to(ROOT)), str(place.relative_to(TREE))):
            text = re.sub(
                r"(?<![\w/.])" + re.escape(spelling) + r"(?=/)", str(folder.relative_to(ROOT)), text
            )
    return text


def main(argv: list[str]) -> int:
    tool = argv[0] if argv else ""
    tools = {
        "mypy": [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "-p", "parity"],
        "imports": [str(Path(sys.executable).with_name("lint-imports")), str(ROOT / "pyproject.toml")],
    }
    if tool not in tools:
        print(f"usage: namespace_lint.py {{{' | '.join(tools)}}}; got {tool!r}", file=sys.stderr)
        return 2
    mapping = build_tree()
    env = dict(os.environ, PYTHONPATH=str(TREE), MYPYPATH=str(TREE))
    done = subprocess.run(tools[tool], cwd=TREE, env=env, capture_output=True, text=True, check=False)
    sys.stdout.write(to_repo_paths(done.stdout, mapping))
    sys.stderr.write(to_repo_paths(done.stderr, mapping))
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
