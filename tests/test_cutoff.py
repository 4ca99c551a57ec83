"""k="auto" (lookalike.cutoff): matches are kept while the query would be among their own nearest images, up to the
steepest drop of the similarity curve; the option is read and refused like every other."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_GALLERY
from PIL import Image

from lookalike.cutoff import AUTO_CAP, belonging, kth_other_similarity, steepest_break
from lookalike.errors import RequestError
from lookalike.index import ImageIndex
from lookalike.instance_set import strong_edit
from lookalike.search import SearchOptions


def test_a_match_farther_from_the_query_than_from_its_own_neighbours_is_cut() -> None:
    similarities = np.array([0.95, 0.90, 0.88, 0.86, 0.45], np.float32)
    floors = np.array([0.30, 0.30, 0.95, 0.30, 0.60], np.float32)  # the third has closer neighbours than the query
    assert belonging(similarities, floors).tolist() == [True, True, False, True, False]


def test_the_answer_ends_at_the_steepest_drop_of_the_similarity_curve() -> None:
    views, kind = [0.94, 0.86, 0.81, 0.71], [0.47, 0.45, 0.44, 0.43, 0.42]
    similarities = np.array(views + kind, np.float32)
    kept = belonging(similarities, np.full(len(similarities), 0.2, np.float32))
    assert kept.tolist() == [True] * len(views) + [False] * len(kind)
    assert steepest_break(np.array([0.9, 0.8], np.float32), np.array([0.3], np.float32)) == pytest.approx(0.8)


def test_the_first_match_always_belongs_and_at_most_the_cap_are_kept() -> None:
    assert belonging(np.array([0.2, 0.1], np.float32), np.array([0.9, 0.9], np.float32)).tolist() == [True, False]
    flat = np.linspace(0.9, 0.8, AUTO_CAP + 50).astype(np.float32)
    flat[-1] = 0.1  # the steepest drop is after the last one
    assert belonging(flat, np.zeros_like(flat)).sum() == AUTO_CAP
    assert belonging(np.zeros(0, np.float32), np.zeros(0, np.float32)).tolist() == []


def test_the_neighbour_floor_leaves_the_image_itself_out() -> None:
    inner = np.array([[1.0, 0.9, 0.8, 0.7], [0.95, 0.6, -1.0, -1.0]], np.float32)
    ids = np.array([[5, 1, 2, 3], [1, 5, -1, -1]], np.int64)
    floors = kth_other_similarity(inner, ids, np.array([5, 1]), column=2)
    assert floors[0] == pytest.approx(0.8) and floors[1] == -np.inf  # image 1 has one other neighbour only


def test_k_is_a_whole_number_or_auto() -> None:
    assert SearchOptions.of(k=" Auto ").k == "auto" and SearchOptions.of(k="auto").limit == AUTO_CAP
    assert SearchOptions.of(k=7).limit == 7
    for bad in ("many", 0, True, 2.5):
        with pytest.raises(RequestError, match="whole number of at least 1 or auto"):
            SearchOptions.of(k=bad)


def test_auto_returns_the_views_of_the_photographed_object_and_stops_before_the_rest(tmp_path: Path) -> None:
    photo = sorted((DEMO_GALLERY / "hat").glob("*.jpg"))[1]
    rng = random.Random(0)
    views = []
    for number in range(4):
        views.append(tmp_path / f"view{number}.jpg")
        strong_edit(Image.open(photo).convert("RGB"), rng).save(views[-1])
    with ImageIndex.create(tmp_path / "index") as index:
        index.add_folder(DEMO_GALLERY)
        index.add_files(views[:3])
        found = {Path(match.path).name for match in index.search(views[3], k="auto").matches}
        fixed = index.search(views[3], k=10).matches
    assert found == {photo.name, *(view.name for view in views[:3])}
    assert len(fixed) == 10  # where a fixed k goes on into other hats
