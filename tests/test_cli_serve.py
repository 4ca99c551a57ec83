"""The serve verb's argument checks (the running server itself is exercised by test_browser.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike.cli import main


def test_serve_refuses_a_folder_that_is_not_an_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "holiday.jpg").write_bytes(b"not an index")
    assert main(["serve", "--index", str(tmp_path)]) == 2
    assert "is not a lookalike index and not empty" in capsys.readouterr().err


def test_serve_refuses_an_allowed_root_that_does_not_exist(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--index", str(tmp_path / "new"), "--allow-root", str(tmp_path / "missing")]) == 2
    assert "--allow-root" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # nothing is created when an argument is wrong


def test_serve_needs_an_index() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve"])
    assert exit_info.value.code == 2
