"""The automatic number of groups: found where groups are clear, refused where the vectors have none."""

from __future__ import annotations

import numpy as np

from lookalike.organise.cluster_count import count_groups


def _groups(count: int, groups: int, spread: float, seed: int = 0) -> np.ndarray:
    """Unit vectors scattered around `groups` random directions in 64-d (spread: the noise's length)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, 64))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = centres[rng.integers(0, groups, count)] + rng.normal(0, spread / 8, (count, 64))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_six_overlapping_groups_are_counted_as_six() -> None:
    found = count_groups(_groups(600, 6, spread=2.0), (2, 20))
    assert found.k == 6 and found.best() == 6
    assert found.strength > 2  # far clearer than the shuffled copies
    assert set(found.gaps) == set(range(2, 21))


def test_twelve_groups_are_counted_in_a_narrower_range() -> None:
    found = count_groups(_groups(900, 12, spread=1.5, seed=1), (5, 15))
    assert found.k == 12 and set(found.gaps) == set(range(5, 16))


def test_vectors_without_groups_get_no_k() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(600, 64))
    found = count_groups((vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32), (2, 20))
    assert found.k is None and found.strength < 1


def test_the_sample_is_what_the_graph_is_built_from() -> None:
    found = count_groups(_groups(3000, 4, spread=1.0), (2, 10), sample=400)
    assert found.images == 400 and found.k == 4
