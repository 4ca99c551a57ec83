"""The float16 re-rank store: rows beyond the RAM limit spill to disk and stay readable."""

from __future__ import annotations

import os

import numpy as np
import pytest

from lookalike.backends import rerank
from lookalike.backends.rerank import RerankStore

DIMENSION = 32


@pytest.fixture
def small_spills(monkeypatch, tmp_path):
    monkeypatch.setattr(rerank, "SPILL_BYTES", 100 * DIMENSION * 2)  # 100 rows
    monkeypatch.setenv("TMPDIR", str(tmp_path / "spill"))
    (tmp_path / "spill").mkdir()
    monkeypatch.setattr(rerank.tempfile, "tempdir", None)  # re-read TMPDIR
    return tmp_path / "spill"


def filled(count: int, seed: int = 0) -> tuple[RerankStore, np.ndarray, np.ndarray]:
    vectors = np.random.default_rng(seed).standard_normal((count, DIMENSION)).astype(np.float32)
    ids = np.arange(count, dtype=np.int64) * 3 + 1
    store = RerankStore(DIMENSION)
    for start in range(0, count, 64):
        store.add(ids[start:start + 64], vectors[start:start + 64])
    return store, ids, vectors


def test_adding_many_rows_keeps_at_most_one_spill_in_ram_and_reads_every_row(small_spills):
    store, ids, vectors = filled(1000)
    assert sum(block.nbytes for block in store.pending) < 100 * DIMENSION * 2
    assert len(store.spilled) > 800 and len(list(small_spills.iterdir())) == 1
    np.testing.assert_allclose(store.vectors(ids), vectors, atol=2e-3)


def test_saving_moves_the_spill_into_the_index_folder(small_spills, tmp_path):
    store, ids, vectors = filled(1000)
    store.save(tmp_path / "rerank-1.f16", tmp_path / "rerank-1.ids.npy")
    assert list(small_spills.iterdir()) == []
    loaded = RerankStore.load(tmp_path / "rerank-1.f16", tmp_path / "rerank-1.ids.npy", DIMENSION)
    np.testing.assert_allclose(loaded.vectors(ids), vectors, atol=2e-3)


def test_rows_added_after_a_save_spill_and_save_again(small_spills, tmp_path):
    store, ids, vectors = filled(300)
    store.save(tmp_path / "rerank-1.f16", tmp_path / "rerank-1.ids.npy")
    more = np.random.default_rng(5).standard_normal((500, DIMENSION)).astype(np.float32)
    more_ids = np.arange(500, dtype=np.int64) + 10_000
    for start in range(0, 500, 50):
        store.add(more_ids[start:start + 50], more[start:start + 50])
    store.save(tmp_path / "rerank-2.f16", tmp_path / "rerank-2.ids.npy")
    loaded = RerankStore.load(tmp_path / "rerank-2.f16", tmp_path / "rerank-2.ids.npy", DIMENSION)
    np.testing.assert_allclose(loaded.vectors(np.concatenate([ids, more_ids])), np.vstack([vectors, more]), atol=2e-3)
    assert list(small_spills.iterdir()) == []


def test_compaction_with_spilled_rows_keeps_only_live_rows(small_spills):
    store, ids, vectors = filled(1000)
    store.remove(ids[::2])
    store.compact()
    assert store.rows == 500
    np.testing.assert_allclose(store.vectors(ids[1::2]), vectors[1::2], atol=2e-3)
    assert len(list(small_spills.iterdir())) == 1  # the old spill is gone, the new one holds the live rows


def test_rerank_orders_candidates_by_exact_inner_product(small_spills):
    store, ids, vectors = filled(1000)
    query = vectors[7:8]
    candidates = np.array([[ids[3], ids[7], -1, ids[500], 999_999]])
    scores, found = store.rerank(query, candidates, 3)
    assert found[0, 0] == ids[7]
    assert scores[0, 0] == pytest.approx(float(vectors[7] @ vectors[7]), rel=1e-2)
    assert set(found[0]) <= {ids[3], ids[7], ids[500]}


def test_a_rerank_file_larger_than_ram_is_mapped_not_loaded(tmp_path):
    dimension = 8192  # wide rows keep the id file small
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    rows = (2 * ram) // (dimension * 2) + 1
    vectors_path, ids_path = tmp_path / "rerank-1.f16", tmp_path / "rerank-1.ids.npy"
    with open(vectors_path, "wb") as sparse:  # a hole: takes no disk
        sparse.truncate(rows * dimension * 2)
    np.save(ids_path, np.arange(rows, dtype=np.int64))
    store = RerankStore.load(vectors_path, ids_path, dimension)
    assert store.reads_ahead
    scores, found = store.rerank(np.ones((1, dimension), np.float32), np.array([[3, rows - 1, -1]]), 2)
    assert set(found[0]) == {3, rows - 1} and (scores == 0).all()


def test_reading_rows_ahead_changes_no_result(small_spills, tmp_path, monkeypatch):
    store, ids, vectors = filled(1000)
    store.save(tmp_path / "rerank-1.f16", tmp_path / "rerank-1.ids.npy")
    queries = vectors[:5]
    candidates = np.tile(ids[::7], (5, 1))
    expected = store.rerank(queries, candidates, 10)
    assert not store.reads_ahead  # a small file stays in the page cache
    monkeypatch.setattr(rerank, "_larger_than_memory", lambda path: True)
    ahead = RerankStore.load(tmp_path / "rerank-1.f16", tmp_path / "rerank-1.ids.npy", DIMENSION)
    assert ahead.reads_ahead
    for got, want in zip(ahead.rerank(queries, candidates, 10), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def write_system(root, meminfo_kib: int, cgroup_file: str | None = None, limit: str | None = None):
    (root / "proc").mkdir(parents=True)
    (root / "proc" / "meminfo").write_text(f"MemTotal: {2 * meminfo_kib} kB\nMemAvailable: {meminfo_kib} kB\n")
    if cgroup_file:
        (root / cgroup_file).parent.mkdir(parents=True)
        (root / cgroup_file).write_text(limit + "\n")
    return root


@pytest.mark.parametrize("cgroup_file", ["sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory/memory.limit_in_bytes"])
def test_a_container_memory_limit_lowers_the_memory_available(tmp_path, cgroup_file):
    root = write_system(tmp_path, meminfo_kib=64 * 2**20, cgroup_file=cgroup_file, limit=str(4 * 2**30))
    assert rerank.memory_available(root) == 4 * 2**30


@pytest.mark.parametrize("limit", ["max", "9223372036854771712"])
def test_an_unlimited_container_leaves_the_kernels_figure(tmp_path, limit):
    root = write_system(tmp_path, meminfo_kib=8 * 2**20, cgroup_file="sys/fs/cgroup/memory.max", limit=limit)
    assert rerank.memory_available(root) == 8 * 2**30


def test_memory_available_is_unknown_without_proc_or_cgroup(tmp_path):
    assert rerank.memory_available(tmp_path) is None
