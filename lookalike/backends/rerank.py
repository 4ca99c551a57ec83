"""Full vectors for exact re-ranking, stored as float16 and memory-mapped from disk.

An approximate index returns candidates; their stored vectors give exact inner products. The
saved file (`rerank-<generation>.f16`) is mapped, not read, so the index's RAM stays the size of
its compressed codes. Rows added since the last save are held in RAM up to `SPILL_BYTES`, then
appended to a spill file in the temporary folder (mapped too; set TMPDIR to a disk folder where /tmp
is held in RAM), so adding ten million vectors never holds more than one spill's worth in RAM;
saving moves or streams the rows into the generation's file. Removed ids are tombstoned (their rows
stay in the file until `compact()`).
"""

from __future__ import annotations

import mmap
import os
import tempfile
import weakref
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np

from lookalike.backends import pages
from lookalike.backends.base import Ids, Matrix
from lookalike.errors import NotFoundError

SPILL_BYTES = 256 * 2**20  # unsaved rows held in RAM before they are appended to the spill file
PROBED_ROWS = 4  # candidate rows whose pages are looked up before a re-rank: one missing, and all are asked for


class RerankStore:
    """Rows of float16 vectors with an id -> row mapping. With `in_ram` the saved rows are read into the
    process's memory instead of mapped: nothing the kernel drops from its page cache (memory pressure, or a
    host that pages out memory idle for a minute) has to come back from disk during a search."""

    def __init__(self, dimension: int, in_ram: bool = False):
        self.dimension = dimension
        self.in_ram = in_ram
        self.base: np.ndarray = np.zeros((0, dimension), dtype=np.float16)  # memory-mapped after load
        self.pending: list[np.ndarray] = []  # rows added since the base was written (after the spilled ones)
        self.spilled: np.ndarray = np.zeros((0, dimension), dtype=np.float16)  # mapped spill file, after the base
        self._spill_path: Path | None = None
        self.row_ids = np.zeros(0, dtype=np.int64)  # id per row, -1 for removed rows
        self._alive = 0  # rows not removed: kept, not counted (every search asks; 1M rows)
        self._lookup: np.ndarray | tuple[np.ndarray, np.ndarray] | None = None  # id -> row, see rows_of
        self._decoder = faiss.ScalarQuantizer(dimension, faiss.ScalarQuantizer.QT_fp16)
        self._file: BinaryIO | None = None  # the base file, open, to ask the kernel for rows ahead of reading them
        self._always_ask = False  # larger than memory: every re-rank asks for its rows, else only for missing ones

    @property
    def count(self) -> int:
        return self._alive

    @property
    def reads_ahead(self) -> bool:
        """True when the saved rows are too many to stay in the page cache, so each re-rank asks for its rows
        ahead of reading them."""
        return self._file is not None and self._always_ask

    @property
    def rows(self) -> int:
        return len(self.row_ids)

    def add(self, ids: Ids, vectors: Matrix) -> None:
        self.pending.append(np.asarray(vectors, dtype=np.float16))
        self.row_ids = np.concatenate([self.row_ids, np.asarray(ids, dtype=np.int64)])
        self._alive += len(ids)
        self._lookup = None
        if sum(block.nbytes for block in self.pending) >= SPILL_BYTES:
            self._spill()

    def _spill(self) -> None:
        """Append the pending rows to the spill file and map it (bounded RAM while adding)."""
        if self._spill_path is None:
            handle, name = tempfile.mkstemp(prefix="lookalike-rerank-", suffix=".f16")
            os.close(handle)
            self._spill_path = Path(name)
            weakref.finalize(self, Path(name).unlink, missing_ok=True)  # unless a save moved it into place
        with open(self._spill_path, "ab") as out:
            for block in self.pending:
                out.write(np.ascontiguousarray(block).tobytes())
        self.pending = []
        rows = self._spill_path.stat().st_size // (2 * self.dimension)
        self.spilled = np.memmap(self._spill_path, dtype=np.float16, mode="r", shape=(rows, self.dimension))

    def remove(self, ids: Ids) -> None:
        rows = np.unique(self.rows_of(ids))
        rows = rows[rows >= 0]
        self.row_ids[rows] = -1
        self._alive -= len(rows)
        self._lookup = None

    def rows_of(self, ids: Ids) -> np.ndarray:
        """Row per id, -1 for ids not stored."""
        if self._lookup is None:
            self._lookup = self._build_lookup()
        ids = np.asarray(ids, dtype=np.int64)
        if isinstance(self._lookup, np.ndarray):  # dense: the row of every id below its length (never empty)
            inside = (ids >= 0) & (ids < len(self._lookup))
            return np.where(inside, self._lookup[np.where(inside, ids, 0)], -1)
        keys, rows = self._lookup
        if len(keys) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        where = np.clip(np.searchsorted(keys, ids), 0, len(keys) - 1)
        return np.where(keys[where] == ids, rows[where], -1)

    def _build_lookup(self) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """A table indexed by id when ids are dense (SQLite's are: one memory read per candidate; at 1M rows
        this cut an 800-candidate search from 1.98 to 1.65 ms), else sorted (ids, rows) pairs."""
        alive = np.flatnonzero(self.row_ids >= 0)
        largest = int(self.row_ids[alive].max()) if len(alive) else 0
        if largest < 2 * len(alive) + 1024:
            table = np.full(largest + 1, -1, dtype=np.int64)
            table[self.row_ids[alive]] = alive
            return table
        order = np.argsort(self.row_ids[alive], kind="stable")
        return self.row_ids[alive][order], alive[order]

    def vectors_of_rows(self, rows: np.ndarray) -> Matrix:
        """float32 vectors for rows (all must exist)."""
        rows = np.asarray(rows, dtype=np.int64)
        in_base = rows < len(self.base)
        if in_base.all():
            return self._widen(self.base[rows])
        half = np.empty((len(rows), self.dimension), dtype=np.float16)
        start = 0
        for segment in (self.base, self.spilled, self._pending_matrix()):
            inside = (rows >= start) & (rows < start + len(segment))
            if inside.any():
                half[inside] = segment[rows[inside] - start]
            start += len(segment)
        return self._widen(half)

    def _widen(self, half: np.ndarray) -> Matrix:
        """float16 -> float32 through FAISS's SIMD decoder (NumPy's astype is about 10x slower here)."""
        if len(half) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._decoder.decode(np.ascontiguousarray(half).view(np.uint8))

    def vectors(self, ids: Ids) -> Matrix:
        rows = self.rows_of(ids)
        if (rows < 0).any():
            raise NotFoundError(f"ids not stored: {np.asarray(ids)[rows < 0][:5].tolist()}")
        return self.vectors_of_rows(rows)

    def alive_chunks(self, chunk: int = 65_536):
        """(ids, float32 vectors) of every live row, in chunks (bounded memory)."""
        for start in range(0, self.rows, chunk):
            rows = np.arange(start, min(self.rows, start + chunk))
            rows = rows[self.row_ids[rows] >= 0]
            if len(rows):
                yield self.row_ids[rows], self.vectors_of_rows(rows)

    def chunks_of(self, allowed_ids: Ids | None):
        """(ids, float32 vectors) chunks of the live rows, or of just the allowed ids (for exact search)."""
        if allowed_ids is None:
            return self.alive_chunks()
        rows = self.rows_of(np.unique(np.asarray(allowed_ids, dtype=np.int64)))
        rows = np.sort(rows[rows >= 0])
        return [(self.row_ids[rows], self.vectors_of_rows(rows))]

    def scores(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Exact inner products of one query with the stored vectors of `rows`."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        query = np.array(query, dtype=np.float32)  # a writable copy (torch wants one; 5 KB)
        if len(rows) and len(self.base) and rows.max() < len(self.base):
            return self._mapped_scores(rows, query)
        # einsum, not @: BLAS threads left spinning would stall FAISS's OpenMP decoder on few cores
        return np.einsum("cd,d->c", self.vectors_of_rows(rows), query)

    def _mapped_scores(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """NumPy gathers the rows from the mapped file, torch widens and multiplies them on one thread: 0.20 ms for
        300 x 1,280-d rows of 1M, against 0.36 ms with torch's own gather (index_select) and about 0.7 ms for
        NumPy's float16 cast + product."""
        import torch

        if self._file is not None and (self._always_ask or not self._probably_cached(rows)):
            self._request_rows(rows)
        picked = torch.from_numpy(self.base[rows])
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # FAISS's OpenMP threads may still spin after the search: two pools fighting
        try:  # over 2 cores made this 6.6 ms instead of 2.2 ms (1M rows, after a batched search)
            return torch.mv(picked.float(), torch.from_numpy(query)).numpy()
        finally:
            torch.set_num_threads(threads)

    def _probably_cached(self, rows: np.ndarray) -> bool:
        """Whether the pages of a few of the rows are in the page cache (a few microseconds): a file that fits in
        memory is cached once it has been read (loading checksums it), until memory pressure drops its pages."""
        return pages.all_resident(self.base, rows[:PROBED_ROWS] * (2 * self.dimension))

    def _request_rows(self, rows: np.ndarray) -> None:
        """Ask the kernel for every candidate row at once, so the disk reads them in parallel instead of one page
        fault at a time: 400 rows not in the page cache took 38 ms to gather, 3.7 ms after this (0.2 ms of
        waste when they were cached)."""
        row_bytes = 2 * self.dimension
        for row in np.sort(rows).tolist():
            os.posix_fadvise(self._file.fileno(), row * row_bytes, row_bytes, os.POSIX_FADV_WILLNEED)

    def rerank(self, queries: Matrix, candidates: Ids, k: int) -> tuple[Matrix, Ids]:
        """The top k of each query's candidate ids (-1 for none) by exact inner product with the stored vectors."""
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for query, found in enumerate(np.asarray(candidates, dtype=np.int64)):
            rows = self.rows_of(found)
            found, rows = found[rows >= 0], rows[rows >= 0]
            take = min(k, len(rows))
            if take == 0:
                continue
            exact = self.scores(rows, queries[query])
            top = np.argpartition(-exact, take - 1)[:take] if take < len(exact) else np.arange(take)
            top = top[np.argsort(-exact[top])]
            scores[query, :take], ids[query, :take] = exact[top], found[top]
        return scores, ids

    def compact(self) -> None:
        """Drop removed rows (rewrites the rows in RAM; the next save writes a smaller file)."""
        old = RerankStore(self.dimension)
        old.base, old.spilled, old.pending, old.row_ids = self.base, self.spilled, self.pending, self.row_ids
        old._spill_path, self._spill_path = self._spill_path, None
        self.base = self.spilled = np.zeros((0, self.dimension), dtype=np.float16)
        self.pending, self.row_ids, self._lookup, self._alive = [], np.zeros(0, dtype=np.int64), None, 0
        for ids, vectors in old.alive_chunks():  # streamed: the old rows stay mapped until this is done
            self.add(ids, vectors)
        if old._spill_path is not None:
            old._spill_path.unlink(missing_ok=True)

    # --- persistence ----------------------------------------------------------------------
    def save(self, vectors_path: Path, ids_path: Path) -> None:
        """Write base + pending rows (streamed, never concatenated in RAM), then map the file."""
        partial = vectors_path.with_name(vectors_path.name + ".partial")
        if len(self.base) == 0 and self._spill_path is not None:  # nothing saved yet: the spill becomes the file
            self._spill()
            _move(self._spill_path, partial)
        else:
            with open(partial, "wb") as out:
                for segment in (self.base, self.spilled):
                    for start in range(0, len(segment), 65_536):
                        out.write(np.ascontiguousarray(segment[start:start + 65_536]).tobytes())
                for block in self.pending:
                    out.write(np.ascontiguousarray(block).tobytes())
        if self._spill_path is not None:
            self._spill_path.unlink(missing_ok=True)
            self._spill_path = None
        partial.replace(vectors_path)
        partial_ids = ids_path.with_name(ids_path.name + ".partial.npy")
        np.save(partial_ids, self.row_ids)
        partial_ids.replace(ids_path)
        self._map(vectors_path)

    @classmethod
    def load(cls, vectors_path: Path, ids_path: Path, dimension: int, in_ram: bool = False) -> RerankStore:
        store = cls(dimension, in_ram)
        store.row_ids = np.load(ids_path)
        store._alive = int(np.count_nonzero(store.row_ids >= 0))
        store._map(vectors_path)
        if len(store.base) != len(store.row_ids):
            raise ValueError(f"{vectors_path.name} holds {len(store.base)} rows, {ids_path.name} {len(store.row_ids)}")
        if len(store.base):  # paid here, not by the first query: torch's first product (~2.5 ms) and the
            store.scores(np.zeros(1, dtype=np.int64), np.zeros(dimension, dtype=np.float32))  # id -> row table
            store._lookup = store._build_lookup()  # (84 ms for 1M rows)
        return store

    def _map(self, path: Path) -> None:
        rows = path.stat().st_size // (2 * self.dimension)
        if self._file is not None:
            self._file.close()
        self.spilled = np.zeros((0, self.dimension), dtype=np.float16)
        self.pending = []
        if self.in_ram:
            self._file, self._always_ask = None, False
            self.base = np.fromfile(path, dtype=np.float16, count=rows * self.dimension).reshape(rows, self.dimension)
            return
        can_ask = rows and hasattr(os, "posix_fadvise")
        self._file = open(path, "rb") if can_ask else None  # noqa: SIM115
        self._always_ask = bool(can_ask and _larger_than_memory(path))
        self.base = (_mapped_rows(path, rows, self.dimension, populate=not self._always_ask) if rows
                     else np.zeros((0, self.dimension), dtype=np.float16))

    def _pending_matrix(self) -> np.ndarray:
        if len(self.pending) > 1:
            self.pending = [np.concatenate(self.pending)]
        return self.pending[0] if self.pending else np.zeros((0, self.dimension), dtype=np.float16)


def _mapped_rows(path: Path, rows: int, dimension: int, populate: bool) -> np.ndarray:
    """The saved rows, memory-mapped read-only. With `populate` (a file that fits in memory) every page is mapped
    into the process at once, from the page cache: otherwise each re-rank's first touch of a row costs a page
    fault, and at 1M rows a query kept finding rows it had never touched (300 new rows: 2.3 ms, against 0.1 ms
    once mapped). Re-ranking reads scattered 2.5 KB rows, so the kernel is told not to read ahead ~128 KB per
    row, which floods the disk once the file is larger than the page cache (10M rows: 1.2 GB/s of reads)."""
    with open(path, "rb") as handle:
        if populate and hasattr(mmap, "MAP_POPULATE"):
            mapping = mmap.mmap(handle.fileno(), 0, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ)
        else:
            mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    if hasattr(mmap, "MADV_RANDOM"):
        mapping.madvise(mmap.MADV_RANDOM)
    return np.frombuffer(mapping, dtype=np.float16, count=rows * dimension).reshape(rows, dimension)


def _larger_than_memory(path: Path) -> bool:
    """True when the file is larger than half the memory available (re-ranking will mostly read it from disk,
    not from the page cache) and the system can be asked to read ahead."""
    available = memory_available()
    return hasattr(os, "posix_fadvise") and available is not None and path.stat().st_size > available // 2


def memory_available(root: Path = Path("/")) -> int | None:
    """Bytes of memory this process can expect to use: the kernel's MemAvailable, lowered to the container's
    memory limit (cgroup v2 or v1) when there is one; None when neither can be read."""
    limits = []
    try:
        meminfo = (root / "proc/meminfo").read_text()
        limits += [int(line.split()[1]) * 1024 for line in meminfo.splitlines() if line.startswith("MemAvailable:")]
    except OSError:
        pass
    for limit_file in ("sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = (root / limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # "max" or a huge number: no limit
            limits.append(int(text))
    return min(limits) if limits else None


def _move(source: Path, target: Path) -> None:
    """Rename when both are on one file system, else copy and delete."""
    try:
        os.replace(source, target)
    except OSError:
        import shutil

        shutil.move(str(source), str(target))
