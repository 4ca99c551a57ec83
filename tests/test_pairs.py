"""Pair sets: balanced, reproducible, image-disjoint, and clear about bad labels."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_GALLERY, write_photo

from lookalike.similarity.pairs import PairSet


def write_labels(folder: Path, rows: list[dict[str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def demo_rows() -> list[dict[str, str]]:
    with open(DEMO_GALLERY / "labels.csv", newline="") as handle:
        return [{"path": str(DEMO_GALLERY / row["path"]), "label": row["label"]} for row in csv.DictReader(handle)]


def test_pairs_are_balanced_and_match_the_labels(demo_index):
    pairs = PairSet.build(DEMO_GALLERY, "label", demo_index, size=300, seed=3)
    assert len(pairs.train) + len(pairs.eval) == 300
    assert (len(pairs.train), len(pairs.eval)) == (210, 90)
    for side in (pairs.train, pairs.eval):
        assert side.positives == len(side) // 2
        same_value = pairs.values[side.first] == pairs.values[side.second]
        assert np.array_equal(same_value, side.same.astype(bool))
        assert np.all(side.first != side.second)
        assert len({tuple(sorted(p)) for p in zip(side.first, side.second, strict=True)}) == len(side)


def test_no_image_appears_on_both_sides_of_the_split(demo_index):
    pairs = PairSet.build(DEMO_GALLERY, "label", demo_index, size=300, seed=1)
    train_images, eval_images = pairs.train.images(), pairs.eval.images()
    assert not train_images & eval_images
    assert train_images <= set(np.flatnonzero(pairs.in_train).tolist())
    assert eval_images <= set(np.flatnonzero(~pairs.in_train).tolist())
    assert pairs.describe()["image_disjoint"] is True
    assert set(pairs.values[~pairs.in_train]) == set(pairs.values)  # every type is evaluated


def test_same_seed_gives_the_same_pairs_and_another_seed_others(demo_index):
    first = PairSet.build(DEMO_GALLERY, "label", demo_index, size=200, seed=7)
    again = PairSet.build(DEMO_GALLERY, "label", demo_index, size=200, seed=7)
    other = PairSet.build(DEMO_GALLERY, "label", demo_index, size=200, seed=8)
    assert np.array_equal(first.train.first, again.train.first)
    assert np.array_equal(first.eval.second, again.eval.second)
    assert not np.array_equal(first.train.first, other.train.first)


def test_only_the_rows_of_a_split_are_used(demo_index, tmp_path):
    rows = [row | {"split": "train" if i % 3 else "test"} for i, row in enumerate(demo_rows())]
    folder = write_labels(tmp_path / "split", rows)
    pairs = PairSet.build(folder, "label", demo_index, size=100, split="train")
    assert len(pairs.paths) == sum(row["split"] == "train" for row in rows)
    with pytest.raises(ValueError, match="no images with split 'validation'"):
        PairSet.build(folder, "label", demo_index, size=100, split="validation")


def test_missing_attribute_column_is_named(demo_index):
    with pytest.raises(ValueError, match="'color'"):
        PairSet.build(DEMO_GALLERY, "color", demo_index, size=100)


def test_a_value_with_a_single_image_is_refused(demo_index, tmp_path):
    rows = demo_rows()
    rows[0]["label"] = "scarf"
    folder = write_labels(tmp_path / "single", rows)
    with pytest.raises(ValueError, match="single image.*scarf"):
        PairSet.build(folder, "label", demo_index, size=100)


def test_asking_for_more_pairs_than_the_images_allow_is_refused(demo_index):
    with pytest.raises(ValueError, match="asked for 3984 training pairs.*only allow"):
        PairSet.build(DEMO_GALLERY, "label", demo_index)  # the default 5,692 pairs


def test_images_absent_from_the_index_are_reported(demo_index, tmp_path):
    stranger = write_photo(tmp_path / "extra" / "stranger.png", seed=5)
    rows = demo_rows() + [{"path": str(stranger), "label": "dress"}]
    folder = write_labels(tmp_path / "absent", rows)
    with pytest.raises(ValueError, match="1 image.*not in the index.*stranger.png"):
        PairSet.build(folder, "label", demo_index, size=100)


def test_eval_fraction_must_be_a_fraction(demo_index):
    with pytest.raises(ValueError, match="eval_fraction"):
        PairSet.build(DEMO_GALLERY, "label", demo_index, size=100, eval_fraction=1.5)
