"""Every vector backend: add, search, remove, filter, save/load, and recall against exact search.

Vectors are noisy copies of the real embeddings of the bundled demo gallery, so neighbours have
the structure of real image vectors (random vectors would make any approximate index look broken).
"""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.backends import load_backend, new_backend, reranked
from lookalike.backends.exact import exact_top_k
from lookalike.index.tune import recall_at_k

SMALL = {
    "flat-ip": {},
    "hnsw": {"M": 16, "ef_construction": 40, "ef_search": 64},
    "ivfpq": {"nlist": 16, "pq_bytes": 16, "reduced_dimension": 64, "nprobe": 8, "rerank": 10, "min_train": 2000},
    "ivfpq-fastscan": {"nlist": 16, "pq_bytes": 160, "pq_bits": 4, "transform": None, "coarse": "hnsw", "nprobe": 8,
                       "rerank": 10, "min_train": 2000},
    "hnsw-reduced": {"reduced_dimension": 64, "M": 16, "ef_construction": 40, "ef_search": 64, "min_train": 2000},
    "hnsw-reduced-sq8": {"reduced_dimension": 128, "M": 16, "ef_construction": 40, "ef_search": 64, "min_train": 2000,
                         "storage": "sq8"},
}
KINDS = list(SMALL)
KIND_OF = {"hnsw-reduced-sq8": "hnsw-reduced", "ivfpq-fastscan": "ivfpq"}  # a second configuration of one index type


def noisy_copies(vectors: np.ndarray, count: int, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    copies = vectors[rng.integers(0, len(vectors), count)]
    copies = copies + rng.standard_normal(copies.shape).astype(np.float32) * noise
    return (copies / np.linalg.norm(copies, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def collection(demo_index):
    """3,000 vectors around the 144 demo photos' embeddings, with ids that are not row numbers."""
    _, real = demo_index.vectors()
    vectors = noisy_copies(real, 3000, 0.02, seed=1)
    ids = np.arange(3000, dtype=np.int64) * 7 + 5
    queries = noisy_copies(real, 60, 0.02, seed=2)
    return ids, vectors, queries


def built(kind, collection):
    ids, vectors, _ = collection
    backend = new_backend(KIND_OF.get(kind, kind), vectors.shape[1], SMALL[kind])
    for start in range(0, len(ids), 1000):
        backend.add(ids[start:start + 1000], vectors[start:start + 1000])
    return backend


def exact(collection, k=10, keep=None):
    ids, vectors, queries = collection
    mask = np.ones(len(ids), bool) if keep is None else np.isin(ids, keep)
    return exact_top_k(queries, [(ids[mask], vectors[mask])], k)


@pytest.mark.parametrize("kind", KINDS)
def test_search_recall_matches_exact_search(kind, collection):
    backend = built(kind, collection)
    assert backend.count == 3000
    scores, found = backend.search(collection[2], 10)
    true_scores, truth = exact(collection)
    assert recall_at_k(found, truth, None, 10) >= 0.9
    assert np.allclose(scores[:, 0], true_scores[:, 0], atol=2e-3)  # the best score is exact (re-ranked)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


@pytest.mark.parametrize("kind", KINDS)
def test_single_queries_find_what_a_batch_finds(kind, collection):
    """A lone query takes another path through FAISS (fast-scan splits its lists between threads)."""
    backend = built(kind, collection)
    queries = collection[2][:12]
    batch_scores, batch_found = backend.search(queries, 10)
    for query, scores, found in zip(queries, batch_scores, batch_found, strict=True):
        one_scores, one_found = backend.search(query[None], 10)
        assert recall_at_k(one_found, found[None], None, 10) >= 0.9  # float ties may swap the last places
        assert np.allclose(one_scores[0, 0], scores[0], atol=1e-4)


@pytest.mark.parametrize("kind", ["ivfpq-fastscan", "hnsw", "hnsw-reduced"])
def test_a_lone_query_finds_the_same_on_one_thread_as_on_several(kind, collection, monkeypatch):
    """One thread is the default for a lone query; LOOKALIKE_SEARCH_THREADS lets it split its lists."""
    backend = built(kind, collection)
    queries = collection[2][:12]
    monkeypatch.setenv("LOOKALIKE_SEARCH_THREADS", "1")
    alone = [backend.search(query[None], 10) for query in queries]
    monkeypatch.setenv("LOOKALIKE_SEARCH_THREADS", "2")
    for query, (scores, found) in zip(queries, alone, strict=True):
        split_scores, split_found = backend.search(query[None], 10)
        assert recall_at_k(split_found, found, None, 10) >= 0.9  # float ties may swap the last places
        assert np.allclose(split_scores[0, 0], scores[0, 0], atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_removed_ids_are_never_returned(kind, collection):
    backend = built(kind, collection)
    _, first = backend.search(collection[2], 10)
    gone = np.unique(first[:, :3])
    backend.remove(gone)
    assert backend.count == 3000 - len(gone)
    _, after = backend.search(collection[2], 10)
    assert not np.isin(after, gone).any()
    assert (after >= 0).all()


@pytest.mark.parametrize("kind", KINDS)
def test_removing_an_id_twice_or_an_unknown_id_counts_only_what_was_there(kind, collection):
    ids = collection[0]
    backend = built(kind, collection)
    backend.remove(np.array([ids[0], ids[0], ids[1], 10**9]))
    backend.remove(ids[:1])
    assert backend.count == 3000 - 2


@pytest.mark.parametrize("kind", KINDS)
def test_readded_id_is_found_with_its_new_vector(kind, collection):
    ids, vectors, queries = collection
    backend = built(kind, collection)
    backend.remove(ids[:1])
    backend.add(ids[:1], queries[:1])  # a changed photo keeps its id
    _, found = backend.search(queries[:1], 1)
    assert found[0, 0] == ids[0]
    assert backend.count == 3000


@pytest.mark.parametrize("kind", ["ivfpq", "ivfpq-fastscan"])
def test_a_filtered_lone_query_searches_the_index_within_the_filter(kind, collection, monkeypatch):
    monkeypatch.setattr(reranked, "SMALL_FILTER", 0)  # no exact shortcut: the filter goes into FAISS
    ids, _, queries = collection
    backend = built(kind, collection)
    allowed = ids[::2]
    _, found = backend.search(queries[:1], 10, allowed_ids=allowed)
    _, truth = exact(collection, keep=allowed)
    assert set(found[0]) <= set(allowed) and recall_at_k(found, truth[:1], None, 10) >= 0.9


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("share", [0.01, 0.5])
def test_filter_returns_only_allowed_ids(kind, share, collection):
    ids, _, queries = collection
    backend = built(kind, collection)
    allowed = ids[np.random.default_rng(3).random(len(ids)) < share]
    _, found = backend.search(queries, 10, allowed_ids=allowed)
    assert np.isin(found[found >= 0], allowed).all()
    _, truth = exact(collection, keep=allowed)
    assert recall_at_k(found, truth, None, 10) >= 0.85


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_load_round_trip(kind, collection, tmp_path):
    backend = built(kind, collection)
    backend.remove(collection[0][:5])
    before = backend.search(collection[2], 10)
    backend.save(tmp_path, 4)
    loaded = load_backend(KIND_OF.get(kind, kind), 1280, tmp_path, 4, SMALL[kind])
    assert loaded is not None and loaded.count == backend.count
    after = loaded.search(collection[2], 10)
    assert (after[1] == before[1]).mean() > 0.99
    assert load_backend(KIND_OF.get(kind, kind), 1280, tmp_path, 5, SMALL[kind]) is None  # another generation: stale


def test_hnsw_compaction_drops_tombstones_and_keeps_results(collection):
    backend = built("hnsw", collection)
    backend.remove(collection[0][::2])
    _, before = backend.search(collection[2], 10)
    assert backend.tombstones == 1500
    backend.compact()
    assert backend.tombstones == 0 and backend.count == 1500
    _, after = backend.search(collection[2], 10)
    assert recall_at_k(after, before, None, 10) >= 0.95


def test_hnsw_gives_the_vectors_it_holds_by_id_through_removals_and_compaction(collection):
    ids, vectors, _ = collection
    backend = built("hnsw", collection)
    pick = ids[[7, 3, 2999, 1500]]
    assert np.array_equal(backend.vectors_of(pick), vectors[[7, 3, 2999, 1500]])
    backend.remove(ids[:10])
    assert backend.vectors_of(ids[[3, 20]]) is None and np.array_equal(backend.vectors_of(ids[[20]]), vectors[[20]])
    backend.add(ids[3:4], vectors[:1])  # an id removed and added again: its new vector
    assert np.array_equal(backend.vectors_of(ids[[3, 20]]), vectors[[0, 20]])
    backend.compact()
    assert np.array_equal(backend.vectors_of(ids[[3, 2999]]), vectors[[0, 2999]])
    assert backend.vectors_of(np.array([-5], np.int64)) is None


def test_ivfpq_searches_exactly_until_trained(collection):
    ids, vectors, queries = collection
    backend = new_backend("ivfpq", 1280, SMALL["ivfpq"] | {"min_train": 5000})
    backend.add(ids, vectors)
    assert not backend.trained and "exact search" in backend.describe()
    _, found = backend.search(queries, 10)
    _, truth = exact(collection)
    assert recall_at_k(found, truth, None, 10) >= 0.99  # float16 storage: ties may swap


def test_ivfpq_compaction_shrinks_the_rerank_file(collection, tmp_path):
    backend = built("ivfpq", collection)
    backend.remove(collection[0][:1000])
    backend.save(tmp_path, 1)
    big = (tmp_path / "rerank-1.f16").stat().st_size
    backend.compact()
    backend.save(tmp_path, 2)
    assert (tmp_path / "rerank-2.f16").stat().st_size == big * 2000 // 3000
    assert load_backend("ivfpq", 1280, tmp_path, 2, SMALL["ivfpq"]).count == 2000


def test_hnsw_reduced_searches_exactly_until_trained_then_tunes_to_target(collection):
    from lookalike.index.tune import tune_backend

    ids, vectors, queries = collection
    backend = new_backend("hnsw-reduced", 1280, SMALL["hnsw-reduced"] | {"min_train": 5000, "ef_search": 16})
    backend.add(ids, vectors)
    assert not backend.trained and "exact search" in backend.describe()
    _, truth = exact(collection)
    assert recall_at_k(backend.search(queries, 10)[1], truth, None, 10) >= 0.99
    backend.train()
    report = tune_backend(backend, queries, truth, 0.97, 10)
    assert report.recall >= 0.97 and backend.ef_search == report.params["ef_search"]


def test_hnsw_reduced_compaction_drops_tombstones_and_keeps_results(collection, tmp_path):
    backend = built("hnsw-reduced", collection)
    backend.remove(collection[0][::2])
    _, before = backend.search(collection[2], 10)
    backend.compact()
    assert backend.vectors.rows == 1500 and backend.graph.ntotal == 1500
    _, after = backend.search(collection[2], 10)
    assert recall_at_k(after, before, None, 10) >= 0.95
    assert not np.isin(after, collection[0][::2]).any()


def test_ivf_rows_kept_in_ram_give_the_results_of_mapped_rows(collection, tmp_path):
    params = SMALL["ivfpq-fastscan"]
    backend = built("ivfpq-fastscan", collection)
    backend.save(tmp_path, 1)
    mapped = load_backend("ivfpq", backend.dimension, tmp_path, 1, params)
    in_ram = load_backend("ivfpq", backend.dimension, tmp_path, 1, params | {"rows_in_ram": True})
    assert in_ram.rows_in_ram and in_ram.vectors.base.flags.writeable  # its own copy (the mapped file is read-only)
    assert not mapped.vectors.base.flags.writeable
    for got, want in zip(in_ram.search(collection[2], 10), mapped.search(collection[2], 10), strict=True):
        np.testing.assert_array_equal(got, want)


def test_every_registered_index_type_is_the_class_of_that_kind() -> None:
    from lookalike.backends import BACKENDS, _backend_class

    assert {"flat-ip", "hnsw", "hnsw-reduced", "ivfpq", "milvus"} <= set(BACKENDS)
    for kind in ("flat-ip", "hnsw", "hnsw-reduced", "ivfpq"):  # milvus: its class needs the distributed extra
        assert _backend_class(kind).kind == kind


def test_a_backend_registered_from_outside_is_made_and_searched_by_its_name() -> None:
    from lookalike.backends import BACKENDS, register_backend
    from lookalike.backends.faiss_flat import FlatBackend
    from lookalike.errors import RequestError

    class CountingFlat(FlatBackend):  # a plug-in: a backend the package does not name
        kind = "counting-flat"
        searches = 0

        def search(self, *args, **kwargs):
            CountingFlat.searches += 1
            return super().search(*args, **kwargs)

    with pytest.raises(RequestError, match="unknown index type 'counting-flat'"):
        new_backend("counting-flat", 4)
    register_backend("counting-flat", CountingFlat)
    try:
        backend = new_backend("counting-flat", 4)
        vectors = np.eye(4, dtype=np.float32)
        backend.add(np.arange(4, dtype=np.int64), vectors)
        scores, ids = backend.search(vectors[2:3], 1)
        assert isinstance(backend, CountingFlat) and ids.tolist() == [[2]] and CountingFlat.searches == 1
    finally:
        del BACKENDS["counting-flat"]
