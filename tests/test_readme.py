"""The README's Python examples run as written, in order, in a folder holding the demo gallery as photos/ and one
of its shoes as query.jpg (a block after `<!-- not run by tests/test_readme.py: WHY -->` is left out, and says why)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import DEMO_GALLERY, REPO

BLOCK = re.compile(r"(<!-- not run by tests/test_readme\.py: [^>]*-->\n)?```python\n(.*?)```", re.DOTALL)


def python_blocks(readme: str) -> list[tuple[int, str]]:
    """(line number, code) of each Python block the test runs."""
    return [(readme.count("\n", 0, found.start(2)) + 1, found.group(2)) for found in BLOCK.finditer(readme)
            if not found.group(1)]


def test_most_python_blocks_are_run() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(python_blocks(readme)) >= 3
    assert len(python_blocks(readme)) >= readme.count("```python") - 2


def test_the_readme_python_examples_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(DEMO_GALLERY, tmp_path / "photos")
    shutil.copy(sorted((DEMO_GALLERY / "shoes").glob("*.jpg"))[0], tmp_path / "query.jpg")
    monkeypatch.chdir(tmp_path)
    for line, code in python_blocks((REPO / "README.md").read_text()):
        try:
            exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "readme"})
        except Exception as error:
            raise AssertionError(f"README.md, the Python block at line {line}: {error!r}") from error
    assert (tmp_path / "my-index" / "map" / "map.png").exists()
