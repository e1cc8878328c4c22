"""The README's code blocks that a test runs as written: each follows a marker naming the test and the block."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
MARK = "<!-- checked by tests/{}: {} -->"


def readme_block(test_file: str, name: str) -> str:
    """The code block right after the README's marker ``checked by tests/<test_file>: <name>``."""
    text = README.read_text()
    marker = MARK.format(test_file, name)
    assert marker in text, f"README.md has no {marker}"
    match = re.compile(r"```[a-z]*\n(.*?)```", re.S).search(text, text.index(marker))
    assert match, f"no code block after {marker}"
    return match[1]
