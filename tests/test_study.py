"""The pair study: the table, its files, and a colour attribute known by construction."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_GALLERY
from PIL import Image

from lookalike.cli import main
from lookalike.index import ImageIndex
from lookalike.similarity.pairs import PairSet
from lookalike.similarity.study import best_threshold_accuracy, run_study

COLOURS = {"red": 0, "green": 85, "blue": 170}  # hues on Pillow's 0-255 HSV scale


def recolour(source: Path, target: Path, colour: str) -> None:
    """A real photo turned one saturated hue, keeping its shading; only near-white pixels stay white."""
    rgb = Image.open(source).convert("RGB")
    hsv = np.asarray(rgb.convert("HSV")).copy()
    tinted = np.asarray(rgb).min(axis=2) < 225
    hsv[..., 0][tinted] = COLOURS[colour]
    hsv[..., 1][tinted] = 230
    hsv[..., 2][tinted] = np.maximum(hsv[..., 2][tinted], 90)
    Image.fromarray(hsv, "HSV").convert("RGB").save(target)


@pytest.fixture(scope="module")
def coloured(tmp_path_factory) -> tuple[Path, ImageIndex]:
    """Two photos of each clothing type in red, green and blue (60 images), indexed; labels path,label,color."""
    folder = tmp_path_factory.mktemp("coloured") / "photos"
    rows = []
    for type_folder in sorted(p for p in DEMO_GALLERY.iterdir() if p.is_dir()):
        for photo in sorted(type_folder.glob("*.jpg"))[:2]:
            for name in COLOURS:
                target = folder / name / f"{type_folder.name}-{photo.stem}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                recolour(photo, target, name)
                rows.append({"path": f"{name}/{target.name}", "label": type_folder.name, "color": name})
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "color"])
        writer.writeheader()
        writer.writerows(rows)
    index = ImageIndex.create(folder.parent / "index")
    index.add_folder(folder)
    yield folder, index
    index.close()


def test_recoloured_photos_have_the_colour_they_were_given(coloured):
    folder, _ = coloured
    for name in COLOURS:
        pixels = np.asarray(Image.open(next((folder / name).glob("*.png"))).convert("RGB"), dtype=float)
        tinted = pixels[pixels.min(axis=2) < 200]  # leave out the white background
        channel = {"red": 0, "green": 1, "blue": 2}[name]
        assert np.argmax(tinted.mean(axis=0)) == channel


def test_colour_pairs_are_learned_on_held_out_images(coloured):
    folder, index = coloured
    pairs = PairSet.build(folder, "color", index, size=200, seed=0)
    assert set(pairs.values) == set(COLOURS)
    assert pairs.describe()["image_disjoint"]
    study = run_study(pairs, ["cosine", "logreg", "projection", "agreement"], progress=False)
    results = {r.method: r for r in study.results}
    # shape dominates the network's vectors: cosine barely sees colour, a projection learned from it does
    assert results["projection"].roc_auc > 0.85
    assert results["projection"].pearson > results["cosine"].pearson + 0.3
    # the same images, grouped by clothing type instead: the attribute alone changes what "similar" means
    by_type = PairSet.build(folder, "label", index, size=60, seed=0)
    assert set(by_type.values) == {p.name for p in DEMO_GALLERY.iterdir() if p.is_dir()}


def test_study_on_the_demo_gallery_writes_table_json_and_plot(demo_index, tmp_path):
    pairs = PairSet.build(DEMO_GALLERY, "label", demo_index, size=300, seed=0)
    study = run_study(pairs, ["cosine", "euclidean", "logreg", "agreement"], progress=False)
    results = {r.method: r for r in study.results}
    assert results["agreement"].pearson > results["cosine"].pearson
    assert all(-1 <= r.pearson <= 1 and 0.5 <= r.accuracy <= 1 for r in study.results)
    assert study.best_learned().method in ("logreg", "agreement")
    files = study.write(tmp_path / "study")
    assert "| agreement |" in files["markdown"].read_text()
    content = json.loads(files["json"].read_text())
    assert [r["method"] for r in content["results"]] == ["cosine", "euclidean", "logreg", "agreement"]
    assert content["pairs"]["eval_pairs"] == 90
    with Image.open(files["plot"]) as plot:
        assert plot.size[0] > 600 and plot.size[1] > 300


def test_accuracy_at_the_best_threshold():
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 0.35])
    truth = np.array([0, 0, 0, 1, 1, 1], dtype=np.int8)
    accuracy, threshold = best_threshold_accuracy(scores, truth)
    assert accuracy == 1.0 and 0.3 < threshold <= 0.35


def test_cli_study_prints_the_table_for_the_colour_attribute(coloured, tmp_path, capsys):
    folder, index = coloured
    out = tmp_path / "colour-study"
    code = main(["study", "pairs", str(folder), "--attribute", "color", "--index", str(index.folder),
                 "--size", "200", "--methods", "cosine", "euclidean", "agreement", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "Pearson" in printed and "agreement" in printed and "euclidean" in printed
    assert (out / "study.md").exists() and (out / "study.json").exists() and (out / "study.png").exists()


def test_cli_study_names_a_missing_attribute(coloured, capsys):
    folder, index = coloured
    assert main(["study", "pairs", str(folder), "--attribute", "material", "--index", str(index.folder)]) == 2
    assert "'material'" in capsys.readouterr().err
