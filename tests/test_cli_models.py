"""The feature-extractor verbs: models, index --model/--layer/--pool, evaluate across models."""

from __future__ import annotations

import json

from conftest import DEMO_GALLERY

from lookalike.cli import main
from lookalike.index import ImageIndex


def test_models_lists_every_model_with_its_layers(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet-lite0" in out and "stage5, stage6, stage7, head (default)" in out
    assert "vgg16" in out and "pool5, fc6, fc7 (default)" in out and "phash" in out
    assert main(["models", "--model", "resnet50", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["layers"] == ["layer3", "layer4"]


def test_unknown_names_are_usage_errors_listing_the_valid_ones(tmp_path, photo_folder, capsys):
    assert main(["index", str(photo_folder), "--index", str(tmp_path / "a"), "--model", "alexnet"]) == 2
    assert "available: efficientnet-lite0" in capsys.readouterr().err
    assert main(["index", str(photo_folder), "--index", str(tmp_path / "a"), "--layer", "fc7"]) == 2
    assert "available: stage5, stage6, stage7, head" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_evaluate_compares_indexes_of_different_models(tmp_path, capsys):
    phash, colour = str(tmp_path / "phash"), str(tmp_path / "colour")
    assert main(["index", str(DEMO_GALLERY), "--index", phash, "--model", "phash"]) == 0
    assert main(["index", str(DEMO_GALLERY), "--index", colour, "--model", "color-histogram"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(DEMO_GALLERY), "--index", phash, "--index", colour, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["model"] for row in rows] == ["phash", "color-histogram"]
    assert [row["setting"] for row in rows] == ["dct/median", "hsv/histogram"]
    assert all(0 < row["mAP"] < 1 and row["queries"] == 144 for row in rows)
    assert main(["evaluate", str(DEMO_GALLERY), "--index", phash, "--index", colour]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["index", "model", "setting"] and len(table) == 3


def test_index_pca_options_set_the_reduction_of_a_new_index(tmp_path, demo_copy, capsys):
    folder = str(tmp_path / "idx")
    assert main(["index", str(demo_copy), "--index", folder, "--pca", "5", "--whiten", "--pca-sample", "12"]) == 0
    note = capsys.readouterr().err
    assert "fitted PCA (pca 1280 -> 5, whitened (fitted on 12))" in note and "default" not in note
    with ImageIndex.open(folder) as index:
        assert (index.reduction.dimension, index.reduction.whiten, index.reduction.fitted_on) == (5, True, 12)
    assert main(["index", str(demo_copy), "--index", folder, "--pca", "6"]) == 2
    assert "already has PCA to 5" in capsys.readouterr().err
