"""Pictures come from the `maps` extra (matplotlib): without it, a map is refused naming the extra, and a classifier
is still trained (its confusion matrix as text only). matplotlib is blocked in a child process as if not installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import DEMO_GALLERY

from lookalike import plots
from lookalike.index import ImageIndex

WITHOUT_MATPLOTLIB = "import sys; sys.modules['matplotlib'] = None; from lookalike.cli import main; " \
                     "sys.exit(main(sys.argv[1:]))"


def run_without_matplotlib(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_MATPLOTLIB, *arguments], capture_output=True, text=True,
                          timeout=300)


def test_a_map_without_the_maps_extra_is_refused_naming_it(tmp_path: Path, demo_index: ImageIndex) -> None:
    folder = tmp_path / "index"
    shutil.copytree(demo_index.folder, folder)
    done = run_without_matplotlib("map", "--index", str(folder))
    assert done.returncode == 2, done.stderr
    assert "the map needs the maps extra (matplotlib): pip install 'lookalike[maps]'" in done.stderr
    assert "Traceback" not in done.stderr and not (folder / "map").exists()


def test_a_classifier_trains_without_the_maps_extra_and_writes_its_confusion_as_text(
        tmp_path: Path, demo_index: ImageIndex) -> None:
    folder = tmp_path / "index"
    shutil.copytree(demo_index.folder, folder)
    done = run_without_matplotlib("train-classifier", "--index", str(folder), "--labels-csv",
                                  str(DEMO_GALLERY / "labels.csv"))
    assert done.returncode == 0, done.stderr
    with ImageIndex.open(folder) as index:
        assert index.files.classifier_confusion_txt.read_text().startswith("held-out accuracy")
        assert not index.files.classifier_confusion_png.exists()


def test_with_the_extra_the_pictures_are_drawn_off_screen() -> None:
    assert plots.available() and plots.matplotlib_for("a test").get_backend().lower() == "agg"
