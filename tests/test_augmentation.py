"""Database-side augmentation: kept exactly up to date by incremental passes, crash-safe, in the index's space."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_GALLERY

from lookalike.index import ImageIndex
from lookalike.index.augmentation import AugmentationPlan, Graph, augment_all, augmented_rows, update

PLAN = AugmentationPlan(neighbours=5, alpha=2.0)


def clustered(count: int, seed: int, dimension: int = 16) -> np.ndarray:
    """Unit vectors around 8 centres, like photos of 8 kinds of things."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dimension))
    vectors = centres[rng.integers(0, 8, count)] + 0.6 * rng.normal(size=(count, dimension))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_incremental_add_remove_and_change_equal_a_full_rebuild():
    vectors = {i: v for i, v in enumerate(clustered(300, seed=1), start=1)}
    ids = np.array(sorted(vectors), np.int64)
    graph, _ = augment_all(ids, np.stack([vectors[i] for i in ids]), PLAN)

    removed, changed_ids = list(range(10, 30)), list(range(100, 110))
    for i in removed:
        del vectors[i]
    for i, vector in zip(changed_ids, clustered(10, seed=2), strict=True):
        vectors[i] = vector
    for i, vector in enumerate(clustered(40, seed=3), start=1000):
        vectors[i] = vector
    now = np.array(sorted(vectors), np.int64)
    now_vectors = np.stack([vectors[i] for i in now])

    updated, touched = update(graph, now, now_vectors, set(removed) | set(changed_ids), PLAN)
    rebuilt, rebuilt_vectors = augment_all(now, now_vectors, PLAN)

    assert np.array_equal(updated.ids, rebuilt.ids)
    assert np.array_equal(updated.neighbours, rebuilt.neighbours)
    np.testing.assert_allclose(updated.similarities, rebuilt.similarities, atol=1e-5)
    assert set(range(1000, 1040)) <= set(touched.tolist()) and set(changed_ids) <= set(touched.tolist())
    assert len(touched) < len(now)  # only what the changes reached was recomputed
    np.testing.assert_allclose(augmented_rows(updated, np.arange(len(now)), now, now_vectors, PLAN.alpha),
                               rebuilt_vectors, atol=1e-5)


def test_an_image_is_blended_with_its_nearest_neighbours_only():
    ids = np.arange(4, dtype=np.int64)
    vectors = np.array([[1, 0], [0.96, 0.28], [0, 1], [-1, 0]], np.float32)
    graph, augmented = augment_all(ids, vectors, AugmentationPlan(neighbours=1, alpha=1.0))
    assert graph.neighbours[:, 0].tolist() == [1, 0, 1, 2]
    expected = vectors[0] + 0.96 * vectors[1]
    np.testing.assert_allclose(augmented[0], expected / np.linalg.norm(expected), atol=1e-6)


def test_missing_neighbours_weigh_nothing_even_with_alpha_zero():
    graph = Graph(np.array([1], np.int64), np.array([[-1, -1]], np.int64), np.full((1, 2), -np.inf, np.float32))
    vector = np.array([[0.6, 0.8]], np.float32)
    np.testing.assert_allclose(augmented_rows(graph, np.array([0]), np.array([1]), vector, alpha=0.0), vector)


def _photos() -> list[Path]:
    return sorted(DEMO_GALLERY.glob("*/*.jpg"))


def _rankings(index: ImageIndex) -> dict[str, list[str]]:
    by_path = {record.id: record.path for record in index.records()}
    return {by_path[int(i)]: [m.path for m in index.search(id=int(i), k=8).matches] for i in index.ids()}


def test_index_grown_in_runs_searches_like_one_built_at_once(tmp_path: Path):
    photos = _photos()
    with ImageIndex.create(tmp_path / "grown", dba=6) as grown:
        grown.add_files(photos[:110])
        grown.add_files(photos[110:])  # a fifth more: updated in place, not rebuilt
        grown.remove_files(photos[10:20])
        grown_rankings = _rankings(grown)
    with ImageIndex.create(tmp_path / "at-once", dba=6) as at_once:
        at_once.add_files(photos[:10] + photos[20:])
        assert at_once.info()["augmentation"] == "DBA over 6 neighbours (alpha 2)"
        assert _rankings(at_once) == grown_rankings


def test_a_run_that_adds_most_of_the_images_rebuilds_the_augmentation_instead_of_updating_it(tmp_path: Path,
                                                                                            monkeypatch):
    from lookalike.index import augmentation

    updates = []
    real_update = augmentation.update
    monkeypatch.setattr(augmentation, "update", lambda *args: updates.append(len(args[1])) or real_update(*args))
    photos = _photos()
    with ImageIndex.create(tmp_path / "idx", dba=6) as index:
        index.add_files(photos[:20])
        index.add_files(photos[20:])  # 124 new of 144: a full build is cheaper than 124 exact searches
        assert updates == []
        index.remove_files(photos[:5])  # 5 of 144: updated
        assert updates == [139]

    def graph_of(ids: np.ndarray) -> Graph:  # only which images have neighbours counts here
        return Graph(ids, np.zeros((len(ids), 1), np.int64), np.zeros((len(ids), 1), np.float32))

    million, hundred = np.arange(1_000_000), np.arange(100)
    assert augmentation.rebuild_is_cheaper(graph_of(million[:960_000]), million, set())  # 4% new
    assert not augmentation.rebuild_is_cheaper(graph_of(million[:980_000]), million, set())  # 2% new
    assert not augmentation.rebuild_is_cheaper(graph_of(million), million, set(range(20_000)))  # 2% changed
    assert augmentation.rebuild_is_cheaper(graph_of(hundred[:59]), hundred, set())  # 41%: below 200k, past 40%
    assert not augmentation.rebuild_is_cheaper(graph_of(hundred[:61]), hundred, {0})  # 39% + 1 changed


def test_dba_off_searches_each_image_by_its_own_vector(tmp_path: Path):
    photos = _photos()[:30]
    with ImageIndex.create(tmp_path / "plain", dba=0) as plain, ImageIndex.create(tmp_path / "dba") as augmented:
        plain.add_files(photos)
        augmented.add_files(photos)
        assert plain.info()["augmentation"] == "none"
        first = int(plain.ids()[0])
        np.testing.assert_allclose(plain.searcher.indexed_vectors([first]), plain.searcher.searchable_vectors([first]))
        searcher = augmented.searcher
        assert not np.allclose(searcher.indexed_vectors([first]), searcher.searchable_vectors([first]))
        assert plain.search(photos[0].read_bytes(), expand="none").matches[0].score == pytest.approx(1.0, abs=1e-4)


def test_removing_and_rebuilding_augmentation_through_the_api(tmp_path: Path):
    with ImageIndex.create(tmp_path / "index") as index:
        index.add_files(_photos()[:30])
        first = int(index.ids()[0])
        augmented = index.searcher.indexed_vectors([first])
        index.remove_augmentation()
        np.testing.assert_allclose(index.searcher.indexed_vectors([first]), index.searcher.searchable_vectors([first]))
        index.add_files(_photos()[30:35])  # a later run does not augment again
        assert index.info()["augmentation"] == "none"
        assert index.augment(neighbours=10, alpha=2.0) == 35
        np.testing.assert_allclose(index.searcher.indexed_vectors([first]), augmented, atol=1e-5)


def test_refitted_pca_rebuilds_the_augmentation_in_its_space(tmp_path: Path):
    with ImageIndex.create(tmp_path / "index", pca=0) as index:
        index.add_files(_photos()[:40])
        index.fit_pca(16)
        rows = index.searcher.indexed_vectors(index.ids().tolist())
        assert rows.shape == (40, 16)
        assert not np.allclose(rows, index.searcher.searchable_vectors(index.ids().tolist()))
        assert index.search(id=int(index.ids()[0]), k=3).matches


def test_a_pass_killed_before_its_commit_leaves_a_searchable_index_and_the_next_run_completes(tmp_path: Path):
    photos = _photos()
    folder = tmp_path / "index"
    with ImageIndex.create(folder) as index:
        index.add_files(photos[:40])
        before = index.searcher.indexed_vectors(index.ids().tolist())
    script = ("import sys; from lookalike.index import ImageIndex\n"
              f"with ImageIndex.open({str(folder)!r}) as index: index.add_files(sys.argv[1:])\n")
    environment = {**os.environ, "LOOKALIKE_CRASH_AT": "augmentation.writing"}
    killed = subprocess.run([sys.executable, "-c", script, *map(str, photos[40:60])], env=environment,
                            capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    with ImageIndex.open(folder) as index:
        assert len(index) == 60  # the run's images were committed before the pass began
        np.testing.assert_allclose(index.searcher.indexed_vectors(index.ids()[:40].tolist()), before, atol=1e-6)
        assert len(index.search(photos[50], k=5).matches) == 5
        index.add_files(photos[60:61])  # the next run's pass catches up with everything
        grown = _rankings(index)
    with ImageIndex.create(tmp_path / "at-once") as at_once:
        at_once.add_files(photos[:61])
        assert _rankings(at_once) == grown
