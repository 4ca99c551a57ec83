"""What a new user meets in the first hour (issue 26): a clean first run, and the CLI's small gaps closed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEMO_GALLERY, REPO, write_photo

from lookalike.cli import main
from lookalike.index import ImageIndex
from lookalike.version import __version__


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lookalike", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=600, env=env)


def test_first_index_prints_one_line_about_the_model_and_no_warning(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    for seed in range(3):
        write_photo(photos / f"p{seed}.jpg", seed)
    env = os.environ | {"LOOKALIKE_CACHE": str(tmp_path / "fresh-cache"), "PYTHONWARNINGS": "default"}
    first = run("index", photos, "--index", tmp_path / "index", env=env)
    assert first.returncode == 0, first.stderr
    lines = [line for line in first.stderr.replace("\r", "\n").splitlines() if not line.startswith("embedding")]
    assert [line for line in lines if line.strip()] == [
        "lookalike: preparing efficientnet-lite0 for this machine (once, about 40 s) ..."]
    again = run("index", photos, "--index", tmp_path / "index2", env=env)
    assert "preparing" not in again.stderr and "Warning" not in again.stderr


def test_version() -> None:
    result = run("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"lookalike {__version__}")


def test_a_mistyped_verb_is_named_with_the_closest_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serch", "photo.jpg"])
    assert exit_info.value.code == 2
    assert "unknown command 'serch'; did you mean search or serve?" in capsys.readouterr().err


def test_output_closed_early_is_no_error(demo_index: ImageIndex) -> None:
    result = subprocess.run(f"{sys.executable} -m lookalike info --index {demo_index.folder} | head -n 1",
                            shell=True, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.stdout.split() == ["folder", str(demo_index.folder)]
    assert result.stderr == ""


def test_one_image_is_one_image_and_a_default_index_type_gives_no_reason(tmp_path: Path) -> None:
    write_photo(tmp_path / "photos" / "only.jpg", 1)
    result = run("index", tmp_path / "photos", "--index", tmp_path / "index")
    assert "the index holds 1 image\n" in result.stdout
    assert "chosen by you" not in result.stdout


def test_a_missing_query_is_named(demo_index: ImageIndex, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "gone.jpg"
    assert main(["search", str(missing), "--index", str(demo_index.folder)]) == 2
    assert capsys.readouterr().err.strip() == f"lookalike: error: {missing}: file not found"


def test_a_folder_as_query_is_named_as_a_folder(demo_index: ImageIndex, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", str(DEMO_GALLERY), "--index", str(demo_index.folder)]) == 2
    error = capsys.readouterr().err
    assert f"{DEMO_GALLERY} is a folder; give one image file" in error
    assert "corrupt" not in error


def test_indexing_a_missing_folder_leaves_no_index_behind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", str(tmp_path / "nowhere"), "--index", str(tmp_path / "index")]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err
    assert not (tmp_path / "index").exists()


def test_a_folder_without_images_is_a_warning_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no photos here")
    assert main(["index", str(tmp_path / "notes"), "--index", str(tmp_path / "index")]) == 1
    assert f"warning: no images under {tmp_path / 'notes'}" in capsys.readouterr().err


def test_info_names_labels_classifier_and_clusters(tmp_path: Path, demo_index: ImageIndex,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "index"
    shutil.copytree(demo_index.folder, folder)
    assert main(["info", "--index", str(folder)]) == 0
    before = capsys.readouterr().out
    assert "labels  label: 10 values over 144 images" in before  # the demo gallery's labels.csv
    assert f"classifier  none (lookalike train-classifier --index {folder} --labels-csv LABELS.csv)" in before
    assert f"clusters  none (lookalike cluster --index {folder})" in before
    assert main(["cluster", "--index", str(folder), "--k", "4"]) == 0
    assert main(["train-classifier", "--index", str(folder), "--labels-csv", str(DEMO_GALLERY / "labels.csv")]) == 0
    capsys.readouterr()
    assert main(["info", "--index", str(folder)]) == 0
    after = capsys.readouterr().out
    assert "classifier  label: 10 classes" in after and "clusters  4 clusters" in after


def test_automatic_k_says_when_it_found_no_clear_groups(tmp_path: Path, demo_index: ImageIndex,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's 10 clothing types, 14 photos each: their neighbour graph shows no jump clearer than shuffled
    vectors do, so the CLI says it could not find k and asks for one instead of offering a guess."""
    folder = tmp_path / "index"
    shutil.copytree(demo_index.folder, folder)
    assert main(["cluster", "--index", str(folder)]) == 2
    printed = capsys.readouterr()
    assert printed.out == "" and "form no clear groups" in printed.err
    assert f"give the number of clusters: lookalike cluster --index {folder} --k N" in printed.err
    assert main(["cluster", "--index", str(folder), "--k", "10"]) == 0
    assert capsys.readouterr().out.startswith("k=10 (given)")
