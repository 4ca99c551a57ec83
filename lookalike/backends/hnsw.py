"""Graph search with FAISS HNSW (IndexHNSWFlat, inner product).

HNSW cannot delete: removed ids are tombstones (their graph nodes stay, searches skip them
through an ID selector) until `compact()` rebuilds the graph from the live vectors. The graph
labels are row numbers; `row_ids` maps a row to the image id (-1 for a tombstone), so an id that
is removed and added again (a changed photo) gets a fresh row.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from lookalike.backends.base import Ids, Matrix
from lookalike.backends.checksums import seal, verified
from lookalike.backends.exact import exact_top_k
from lookalike.backends.files import drop_stale_files, read_index, write_index_atomically
from lookalike.backends.threads import threads_for
from lookalike.faults import crash_point

SMALL_FILTER = 4096  # at most this many allowed ids: search them exactly instead of walking the graph


class HNSWBackend:
    kind = "hnsw"

    def __init__(self, dimension: int, M: int = 32, ef_construction: int = 40, ef_search: int = 64,  # noqa: N803
                 index: faiss.IndexHNSWFlat | None = None, row_ids: Ids | None = None):
        self.dimension = dimension
        if index is None:
            index = faiss.IndexHNSWFlat(dimension, M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
        self.index = index
        self.ef_search = ef_search
        self.row_ids = np.zeros(0, dtype=np.int64) if row_ids is None else row_ids
        self._rows: dict[int, int] | None = None
        self._by_id: np.ndarray | None = None  # rows in the order of their ids (vectors_of looks ids up in it)
        self._alive = int(np.count_nonzero(self.row_ids >= 0))  # kept, not counted: every search asks (1M rows)

    @property
    def count(self) -> int:
        return self._alive

    @property
    def tombstones(self) -> int:
        return len(self.row_ids) - self.count

    def params(self) -> dict[str, int]:
        return {"M": int(self.index.hnsw.nb_neighbors(1)), "ef_construction": int(self.index.hnsw.efConstruction),
                "ef_search": self.ef_search}

    def set_search_params(self, ef_search: int | None = None, **_: object) -> None:
        if ef_search is not None:
            self.ef_search = int(ef_search)

    def add(self, ids: Ids, vectors: Matrix) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.row_ids = np.concatenate([self.row_ids, ids])
        self._alive, self._by_id = self._alive + len(ids), None
        if self._rows is not None:
            self._rows.update(zip(ids.tolist(), range(len(self.row_ids) - len(ids), len(self.row_ids)), strict=True))

    def remove(self, ids: Ids) -> None:
        rows = np.unique(self._rows_of(ids))
        rows = rows[rows >= 0]
        self.row_ids[rows] = -1
        self._alive, self._by_id = self._alive - len(rows), None
        for image_id in np.asarray(ids).tolist():
            self._row_map().pop(int(image_id), None)

    def search(self, queries: Matrix, k: int, allowed_ids: Ids | None = None) -> tuple[Matrix, Ids]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if allowed_ids is not None and len(allowed_ids) <= SMALL_FILTER:
            rows = self._rows_of(allowed_ids)
            rows = rows[rows >= 0]
            return exact_top_k(queries, [(self.row_ids[rows], self.index.reconstruct_batch(rows))], k)
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(self.ef_search, k)
        mask = self._allowed_rows(allowed_ids)
        if mask is not None:
            bitmap = np.packbits(mask, bitorder="little")
            params.sel = faiss.IDSelectorBitmap(bitmap)
        with threads_for(len(queries)):
            scores, rows = self.index.search(queries, k, params=params)
        return scores, np.where(rows >= 0, self.row_ids[np.maximum(rows, 0)], -1)

    def vectors_of(self, ids: Ids) -> Matrix | None:
        """The vectors held for `ids` (exactly as added), or None when one of them is not here."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0 or len(self.row_ids) == 0:
            return None
        row_ids, by_id = self.row_ids, self._by_id
        if by_id is None:
            by_id = self._by_id = np.argsort(row_ids, kind="stable")
        rows = by_id[np.minimum(np.searchsorted(row_ids, ids, sorter=by_id), len(row_ids) - 1)]
        return self.index.reconstruct_batch(rows) if np.array_equal(row_ids[rows], ids) else None

    def compact(self) -> None:
        """Rebuild the graph without tombstones."""
        fresh = HNSWBackend(self.dimension, **{k: v for k, v in self.params().items()})
        alive = np.flatnonzero(self.row_ids >= 0)
        for start in range(0, len(alive), 65_536):
            rows = alive[start:start + 65_536]
            fresh.add(self.row_ids[rows], self.index.reconstruct_batch(rows))
        self.index, self.row_ids, self._rows, self._alive = fresh.index, fresh.row_ids, None, fresh.count
        self._by_id = None

    # --- persistence ----------------------------------------------------------------------
    def save(self, folder: Path, generation: int) -> None:
        index_path, rows_path, sidecar = _paths(folder, generation)
        write_index_atomically(self.index, index_path)
        crash_point("backend.rows-writing")
        partial_rows = rows_path.with_name(rows_path.name + ".partial.npy")
        np.save(partial_rows, self.row_ids)
        partial_rows.replace(rows_path)
        seal(sidecar, [index_path, rows_path])
        drop_stale_files(folder, ["hnsw-*"], keep=[index_path, rows_path, sidecar])

    @classmethod
    def load(cls, folder: Path, generation: int, dimension: int, **params: int) -> HNSWBackend | None:
        index_path, rows_path, sidecar = _paths(folder, generation)
        if not index_path.exists() or not verified(sidecar):
            return None
        index = read_index(index_path)
        if index.d != dimension:
            return None
        backend = cls(dimension, index=index, row_ids=np.load(rows_path))
        backend.set_search_params(**params)
        return backend

    # --- rows -----------------------------------------------------------------------------
    def _row_map(self) -> dict[int, int]:
        if self._rows is None:
            alive = np.flatnonzero(self.row_ids >= 0)
            self._rows = dict(zip(self.row_ids[alive].tolist(), alive.tolist(), strict=True))
        return self._rows

    def _rows_of(self, ids: Ids) -> np.ndarray:
        rows = self._row_map()
        return np.asarray([rows.get(int(i), -1) for i in np.asarray(ids).tolist()], dtype=np.int64)

    def _allowed_rows(self, allowed_ids: Ids | None) -> np.ndarray | None:
        """Boolean mask of rows a search may return, or None when every row may be returned."""
        if allowed_ids is None:
            return self.row_ids >= 0 if self.tombstones else None
        mask = np.isin(self.row_ids, np.asarray(allowed_ids, dtype=np.int64))
        return mask & (self.row_ids >= 0)


def _paths(folder: Path, generation: int) -> tuple[Path, Path, Path]:
    return (folder / f"hnsw-{generation}.faiss", folder / f"hnsw-{generation}.rows.npy",
            folder / f"hnsw-{generation}.sha256.json")
