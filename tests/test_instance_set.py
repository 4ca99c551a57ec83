"""The instance set: the same object seen again, built from any labelled folder."""

from __future__ import annotations

import csv
from pathlib import Path

from conftest import DEMO_GALLERY
from PIL import Image

from lookalike.instance_set import make_instance_set


def rows_of(labels: Path) -> list[dict[str, str]]:
    with open(labels, newline="") as handle:
        return list(csv.DictReader(handle))


def test_each_object_gets_views_in_the_gallery_and_new_photos_to_search(tmp_path: Path) -> None:
    labels = make_instance_set(DEMO_GALLERY, tmp_path / "instances", objects=3, views=2, queries=2, seed=1)
    rows = rows_of(labels)
    photos = len(rows_of(DEMO_GALLERY / "labels.csv"))
    queries = [row for row in rows if row["split"] == "query"]
    assert len(queries) == 3 * 2 and len(rows) == photos + 3 * (1 + 2)
    for query in queries:
        same_object = [row for row in rows if row["label"] == query["label"] and row["split"] == "gallery"]
        assert len(same_object) == 2  # the original and one edited view
        assert Path(query["path"]).exists() and Image.open(query["path"]).size != (0, 0)
    distractors = {row["label"] for row in rows} - {row["label"] for row in queries}
    assert len(distractors) == photos - 3  # every other photo is an object of its own


def test_the_same_seed_makes_the_same_set(tmp_path: Path) -> None:
    first = rows_of(make_instance_set(DEMO_GALLERY, tmp_path / "a", objects=2, seed=5))
    second = rows_of(make_instance_set(DEMO_GALLERY, tmp_path / "b", objects=2, seed=5))
    chosen = [{k: v for k, v in row.items() if k != "path"} for row in first]
    assert chosen == [{k: v for k, v in row.items() if k != "path"} for row in second]
    edited = [row for row in first if row["split"] == "query"][0]["path"]
    again = [row for row in second if row["split"] == "query"][0]["path"]
    assert Path(edited).read_bytes() == Path(again).read_bytes()
