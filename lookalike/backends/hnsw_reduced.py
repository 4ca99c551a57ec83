"""Graph search over reduced vectors, re-ranked exactly: FAISS HNSW (inner product) on PCA-reduced vectors.

The full vectors (float16, memory-mapped from `rerank-<generation>.f16`, see rerank.py) stay on disk; the
RAM holds the reduced vectors (e.g. 256 float32 per image) and the graph. A query walks the graph with
`ef_search` and all `ef_search` candidates are re-ranked by their exact inner product, so one setting
trades speed for recall (tune.py tunes it like plain HNSW's).

The reduction (uncentred PCA plus a rotation, `pca_rotation` from ivfpq.py) is learned once `min_train`
vectors exist; until then the backend searches the stored vectors exactly. Graph nodes are rows of the
re-rank store; removed ids are tombstones (skipped through an ID selector) until `compact()` rebuilds.
"""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np

from lookalike.backends.base import Ids, Matrix
from lookalike.backends.checksums import seal, verified
from lookalike.backends.files import drop_stale_files, read_index, write_index_atomically
from lookalike.backends.ivfpq import MAX_TRAIN, pca_rotation
from lookalike.backends.rerank import RerankStore
from lookalike.backends.reranked import RerankedBackend
from lookalike.backends.threads import threads_for
from lookalike.errors import RequestError

log = logging.getLogger("lookalike")
ADD_CHUNK = 65_536
STORAGES = ("flat", "sq8")  # reduced vectors in the graph: float32, or 8-bit scalar-quantised (a quarter the RAM)


class ReducedHNSWBackend(RerankedBackend):
    kind = "hnsw-reduced"

    def __init__(self, dimension: int, reduced_dimension: int = 256, M: int = 16,  # noqa: N803
                 ef_construction: int = 40, ef_search: int = 64, min_train: int = 20_000, storage: str = "flat"):
        if storage not in STORAGES:
            raise RequestError(f"unknown storage {storage!r}; choose from {', '.join(STORAGES)}")
        self.dimension, self.storage = dimension, storage
        self.reduced_dimension = min(reduced_dimension, dimension)
        self.M, self.ef_construction, self.ef_search, self.min_train = M, ef_construction, ef_search, min_train
        self.rotation: faiss.LinearTransform | None = None  # None until trained
        self.graph: faiss.IndexHNSWFlat | None = None
        self.vectors = RerankStore(dimension)

    @property
    def trained(self) -> bool:
        return self.graph is not None

    def params(self) -> dict[str, object]:
        return {"reduced_dimension": self.reduced_dimension, "M": self.M, "ef_construction": self.ef_construction,
                "ef_search": self.ef_search, "min_train": self.min_train, "storage": self.storage}

    def describe(self) -> str:
        if not self.trained:
            return (f"exact search over {self.count} stored vectors (the reduction trains once {self.min_train} "
                    "vectors exist)")
        return (f"HNSW (M={self.M}) over PCA-{self.reduced_dimension} vectors with efSearch {self.ef_search}, "
                "every candidate re-ranked exactly")

    def set_search_params(self, ef_search: int | None = None, **_: object) -> None:
        if ef_search is not None:
            self.ef_search = int(ef_search)

    # --- changes --------------------------------------------------------------------------
    def _add_trained(self, ids: Ids, vectors: Matrix) -> None:
        self.graph.add(self._reduce(vectors))

    def remove(self, ids: Ids) -> None:
        self.vectors.remove(np.asarray(ids, dtype=np.int64))

    def train(self, seed: int = 0) -> None:
        """Learn the reduction on a sample of the stored vectors, then build the graph over every row."""
        alive = np.flatnonzero(self.vectors.row_ids >= 0)
        rows = np.sort(np.random.default_rng(seed).choice(alive, min(len(alive), MAX_TRAIN), replace=False))
        self.rotation = pca_rotation(self.vectors.vectors_of_rows(rows), self.reduced_dimension, seed, centre=False)
        log.info("building HNSW over %d PCA-%d vectors", self.vectors.rows, self.reduced_dimension)
        self._build_graph()

    def compact(self) -> None:
        """Drop tombstoned rows from the re-rank vectors and rebuild the graph without them."""
        self.vectors.compact()
        if self.graph is not None:
            self._build_graph()

    def _build_graph(self) -> None:
        if self.storage == "sq8":
            graph = faiss.IndexHNSWSQ(self.reduced_dimension, faiss.ScalarQuantizer.QT_8bit, self.M,
                                      faiss.METRIC_INNER_PRODUCT)
            graph.train(self._reduce(self.vectors.vectors_of_rows(np.arange(min(self.vectors.rows, ADD_CHUNK)))))
        else:
            graph = faiss.IndexHNSWFlat(self.reduced_dimension, self.M, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = self.ef_construction
        for start in range(0, self.vectors.rows, ADD_CHUNK):  # every row, tombstones too: node number = row
            rows = np.arange(start, min(self.vectors.rows, start + ADD_CHUNK))
            graph.add(self._reduce(self.vectors.vectors_of_rows(rows)))
        self.graph = graph

    def _reduce(self, vectors: Matrix) -> Matrix:
        return self.rotation.apply(np.ascontiguousarray(vectors, dtype=np.float32))

    # --- search ---------------------------------------------------------------------------
    def search(self, queries: Matrix, k: int, allowed_ids: Ids | None = None) -> tuple[Matrix, Ids]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        with threads_for(len(queries)):
            return self._search(queries, k, allowed_ids)

    def _search(self, queries: Matrix, k: int, allowed_ids: Ids | None) -> tuple[Matrix, Ids]:
        exact = self._exact_answer(queries, k, allowed_ids)
        if exact is not None:
            return exact
        candidates = max(k, self.ef_search)
        params = faiss.SearchParametersHNSW()
        params.efSearch = candidates
        mask = self._allowed_rows(allowed_ids)
        if mask is not None:
            params.sel = faiss.IDSelectorBitmap(np.packbits(mask, bitorder="little"))
        _, rows = self.graph.search(self._reduce(queries), candidates, params=params)
        found = np.where(rows >= 0, self.vectors.row_ids[np.maximum(rows, 0)], -1)
        return self.vectors.rerank(queries, found, k)

    def _allowed_rows(self, allowed_ids: Ids | None) -> np.ndarray | None:
        """Boolean mask of rows a search may return, or None when every row may be returned."""
        alive = self.vectors.row_ids >= 0
        if allowed_ids is None:
            return None if alive.all() else alive
        return alive & np.isin(self.vectors.row_ids, np.asarray(allowed_ids, dtype=np.int64))

    # --- persistence ----------------------------------------------------------------------
    def save(self, folder: Path, generation: int) -> None:
        graph_path, rotation_path, vectors_path, ids_path, sidecar = _paths(folder, generation)
        files = [vectors_path, ids_path]
        self.vectors.save(vectors_path, ids_path)
        if self.graph is not None:
            write_index_atomically(self.graph, graph_path)
            partial = rotation_path.with_name(rotation_path.name + ".partial.npz")
            np.savez(partial, A=faiss.vector_to_array(self.rotation.A), b=faiss.vector_to_array(self.rotation.b))
            partial.replace(rotation_path)
            files += [graph_path, rotation_path]
        seal(sidecar, files)
        drop_stale_files(folder, ["hnswr-*", "rerank-*"], keep=[sidecar, *files])

    @classmethod
    def load(cls, folder: Path, generation: int, dimension: int, **params: object) -> ReducedHNSWBackend | None:
        graph_path, rotation_path, vectors_path, ids_path, sidecar = _paths(folder, generation)
        if not vectors_path.exists() or not verified(sidecar):
            return None
        backend = cls(dimension, **params)  # type: ignore[arg-type]
        backend.vectors = RerankStore.load(vectors_path, ids_path, dimension)
        if graph_path.exists():
            backend.graph = read_index(graph_path)
            backend.rotation = _transform(np.load(rotation_path), dimension, backend.graph.d)
            backend.reduced_dimension, backend.M = backend.graph.d, int(backend.graph.hnsw.nb_neighbors(1))
            backend.storage = "sq8" if isinstance(backend.graph, faiss.IndexHNSWSQ) else "flat"
        return backend


def _transform(saved: np.lib.npyio.NpzFile, d_in: int, d_out: int) -> faiss.LinearTransform:
    transform = faiss.LinearTransform(d_in, d_out, True)
    faiss.copy_array_to_vector(saved["A"], transform.A)
    faiss.copy_array_to_vector(saved["b"], transform.b)
    transform.is_trained = True
    return transform


def _paths(folder: Path, generation: int) -> tuple[Path, Path, Path, Path, Path]:
    return (folder / f"hnswr-{generation}.faiss", folder / f"hnswr-{generation}.pca.npz",
            folder / f"rerank-{generation}.f16", folder / f"rerank-{generation}.ids.npy",
            folder / f"hnswr-{generation}.sha256.json")
