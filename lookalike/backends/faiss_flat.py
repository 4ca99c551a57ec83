"""Exact inner-product search with FAISS (IndexFlatIP behind an id map)."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from lookalike.backends.base import Ids, Matrix
from lookalike.backends.checksums import seal, verified
from lookalike.backends.files import drop_stale_files, read_index, write_index_atomically
from lookalike.backends.threads import threads_for


class FlatBackend:
    kind = "flat-ip"

    def __init__(self, dimension: int, index: faiss.Index | None = None):
        self.dimension = dimension
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: Ids, vectors: Matrix) -> None:
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: Ids) -> None:
        self.index.remove_ids(np.asarray(ids, dtype=np.int64))

    def search(self, queries: Matrix, k: int, allowed_ids: Ids | None = None) -> tuple[Matrix, Ids]:
        params = None
        if allowed_ids is not None:
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.asarray(allowed_ids, dtype=np.int64)))
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        with threads_for(len(queries)):  # a lone query on one thread: on two, 188 ms instead of 30 (100k 128-d, busy)
            return self.index.search(queries, k, params=params)

    def save(self, folder: Path, generation: int) -> None:
        target = _path(folder, generation)
        if not target.exists() or not _sidecar(target).exists():
            write_index_atomically(self.index, target)
            seal(_sidecar(target), [target])
        drop_stale_files(folder, ["vectors-*"], keep=[target, _sidecar(target)])

    @classmethod
    def load(cls, folder: Path, generation: int, dimension: int) -> FlatBackend | None:
        path = _path(folder, generation)
        if not path.exists() or not verified(_sidecar(path)):
            return None
        try:
            index = read_index(path)
        except RuntimeError:
            return None  # damaged copy: the database still has everything
        return cls(dimension, index) if index.d == dimension else None


def _path(folder: Path, generation: int) -> Path:
    return folder / f"vectors-{generation}.faiss"


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".sha256.json")
