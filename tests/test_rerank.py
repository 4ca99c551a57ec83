"""The float16 re-rank store: rows beyond the RAM limit spill to disk and stay readable."""

from __future__ import annotations

import mmap
import os

import numpy as np
import pytest

from lookalike.backends import pages, rerank
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


def mapping_of(array: np.ndarray) -> mmap.mmap | None:
    """The memory map an array's buffer lives in, None for memory of its own."""
    buffer = array
    while buffer is not None and not isinstance(buffer, mmap.mmap):
        buffer = buffer.obj if isinstance(buffer, memoryview) else buffer.base
    return buffer


def evicted(store: RerankStore, path) -> bool:
    """Drop the saved rows from this process and from the page cache; False when the kernel kept them (tmpfs)."""
    mapping_of(store.base).madvise(mmap.MADV_DONTNEED)
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())  # dirty pages stay until written back
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return not pages.all_resident(store.base, np.arange(0, store.base.nbytes, pages.PAGE))


@pytest.mark.skipif(not hasattr(os, "posix_fadvise") or not pages.can_probe(), reason="needs fadvise and mincore")
def test_rows_dropped_from_the_page_cache_are_asked_for_at_once_and_rank_the_same(tmp_path, monkeypatch):
    dimension = 1024  # a row is half a page: the probe looks at the page of each probed row
    vectors = np.random.default_rng(3).standard_normal((400, dimension)).astype(np.float32)
    store = RerankStore(dimension)
    store.add(np.arange(400, dtype=np.int64), vectors)
    store.save(tmp_path / "rerank-1.f16", tmp_path / "rerank-1.ids.npy")
    asked = []
    original = RerankStore._request_rows
    monkeypatch.setattr(RerankStore, "_request_rows",
                        lambda self, rows: (asked.append(len(rows)), original(self, rows)))
    candidates = np.tile(np.arange(0, 400, 3), (2, 1))
    cached = store.rerank(vectors[:2], candidates, 10)
    assert asked == []  # just written: in the page cache, nothing to ask for
    if not evicted(store, tmp_path / "rerank-1.f16"):
        pytest.skip("the page cache kept the file (a RAM file system?)")
    from_disk = store.rerank(vectors[:2], candidates, 10)
    assert asked[0] == len(candidates[0])  # every candidate row of the first query, asked for at once
    for got, want in zip(from_disk, cached, strict=True):
        np.testing.assert_array_equal(got, want)


def test_rows_read_into_ram_rank_exactly_as_mapped_rows_and_leave_the_file_unmapped(small_spills, tmp_path):
    store, ids, vectors = filled(1000)
    store.save(tmp_path / "rerank-1.f16", tmp_path / "rerank-1.ids.npy")
    mapped = RerankStore.load(tmp_path / "rerank-1.f16", tmp_path / "rerank-1.ids.npy", DIMENSION)
    in_ram = RerankStore.load(tmp_path / "rerank-1.f16", tmp_path / "rerank-1.ids.npy", DIMENSION, in_ram=True)
    assert mapping_of(in_ram.base) is None and mapping_of(mapped.base) is not None
    queries, candidates = vectors[:5], np.tile(ids[::7], (5, 1))
    for got, want in zip(in_ram.rerank(queries, candidates, 10), mapped.rerank(queries, candidates, 10), strict=True):
        np.testing.assert_array_equal(got, want)
