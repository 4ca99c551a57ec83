"""Compressed search with FAISS IVF + product quantisation, re-ranked exactly.

Before IVF-PQ the vectors are reduced by a learned transform: "pca" (PCA plus a random rotation,
which spreads variance evenly over the PQ sub-vectors; cheap to train), "opq" (optimised product
quantisation: better codes, much slower to train) or None.

Codes are 8 bits per sub-quantiser, or 4 bits with `pq_bits=4`: FAISS's "fast-scan" layout, whose
look-up tables fit SIMD registers, so scanning a list costs a fraction of the 8-bit scan and the same
bytes buy twice the sub-quantisers (e.g. 160 bytes = 320 sub-vectors of the full 1,280-d vector,
with no PCA). Either way the codes encode each vector's offset from its list's centroid (the
residual). `coarse="hnsw"` finds the probed lists with a small HNSW graph over the centroids
instead of comparing the query with every centroid (0.7 ms for 4,096 x 1,280-d on these cores).

The IVF-PQ index holds a few dozen bytes per image in RAM and proposes `rerank` x k candidates;
their full vectors (float16, memory-mapped from `rerank-<generation>.f16`, or read into RAM with
`rows_in_ram`) give the exact inner products that order the final k. IVF and PQ must be trained
on a sample: until `min_train` vectors exist the backend searches the stored vectors exactly (`trained` is False and
`describe()` says so). Deletion is real in the IVF lists; the re-rank file keeps tombstoned rows
until `compact()`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

from lookalike.backends.base import Ids, Matrix
from lookalike.backends.checksums import seal, verified
from lookalike.backends.files import drop_stale_files, read_index, write_index_atomically
from lookalike.backends.rerank import RerankStore
from lookalike.backends.reranked import RerankedBackend
from lookalike.backends.threads import threads_for
from lookalike.errors import RequestError

log = logging.getLogger("lookalike")
TRAIN_PER_LIST = 20  # training vectors per inverted list (FAISS asks for 39; 20 is a time/quality trade-off)
MAX_TRAIN = 100_000
TRANSFORMS = ("pca", "opq", None)
COARSE = ("flat", "hnsw")
PQ_BITS = (8, 4)
PQ_ITERATIONS = 10  # k-means iterations per PQ codebook (FAISS's 25 cost minutes on 2 busy cores)


def lists_for(count: int) -> int:
    """Inverted lists for a collection: a power of two near 2 sqrt(n) (FAISS suggests 1-16 sqrt(n); fewer
    lists train and assign faster on few cores, at the price of scanning more codes per probe)."""
    return int(2 ** round(math.log2(max(16.0, 2 * math.sqrt(max(count, 1))))))


class IVFPQBackend(RerankedBackend):
    kind = "ivfpq"

    def __init__(self, dimension: int, nlist: int | None = None, pq_bytes: int = 64, transform: str | None = "pca",
                 reduced_dimension: int | None = 256, nprobe: int = 16, rerank: int = 10, min_train: int = 20_000,
                 pq_bits: int = 8, coarse: str = "flat", rows_in_ram: bool = False):
        if transform not in TRANSFORMS:
            raise RequestError(f"unknown transform {transform!r}; choose from {', '.join(map(str, TRANSFORMS))}")
        if coarse not in COARSE:
            raise RequestError(f"unknown coarse quantiser {coarse!r}; choose from {', '.join(COARSE)}")
        if pq_bits not in PQ_BITS:
            raise RequestError(f"pq_bits must be 8 or 4 (fast-scan), not {pq_bits!r}")
        self.dimension, self.pq_bits, self.coarse = dimension, int(pq_bits), coarse
        self.nlist, self.pq_bytes, self.transform = nlist, pq_bytes, transform
        self.reduced_dimension = min(reduced_dimension or dimension, dimension) if transform else dimension
        self.nprobe, self.rerank, self.min_train = nprobe, rerank, min_train
        self.index: faiss.Index | None = None  # None until trained
        self.rows_in_ram = bool(rows_in_ram)  # re-rank rows read into RAM on load, not mapped (see RerankStore)
        self.vectors = RerankStore(dimension, self.rows_in_ram)

    @property
    def trained(self) -> bool:
        return self.index is not None

    @property
    def sub_quantizers(self) -> int:
        return self.pq_bytes * 8 // self.pq_bits

    def factory_string(self) -> str:
        nlist = self.nlist or lists_for(self.count)
        m = self.sub_quantizers
        prefix = {"pca": f"PCAR{self.reduced_dimension},", "opq": f"OPQ{m}_{self.reduced_dimension},",
                  None: ""}[self.transform]
        coarse = "_HNSW32" if self.coarse == "hnsw" else ""
        codes = f"PQ{m}x4fs" if self.pq_bits == 4 else f"PQ{m}"
        return f"{prefix}IVF{nlist}{coarse},{codes}"

    def params(self) -> dict[str, object]:
        return {"nlist": self.nlist, "pq_bytes": self.pq_bytes, "transform": self.transform,
                "reduced_dimension": self.reduced_dimension,
                "nprobe": self.nprobe, "rerank": self.rerank, "min_train": self.min_train, "pq_bits": self.pq_bits,
                "coarse": self.coarse, "rows_in_ram": self.rows_in_ram}

    def describe(self) -> str:
        if not self.trained:
            return (f"exact search over {self.count} stored vectors (IVF-PQ trains once {self.min_train} "
                    "vectors exist)")
        return f"{self.factory_string()} with nprobe {self.nprobe}, exact re-ranking of {self.rerank} x k candidates"

    def set_search_params(self, nprobe: int | None = None, rerank: int | None = None, **_: object) -> None:
        if nprobe is not None:
            self.nprobe = int(nprobe)
        if rerank is not None:
            self.rerank = int(rerank)

    # --- changes --------------------------------------------------------------------------
    def _add_trained(self, ids: Ids, vectors: Matrix) -> None:
        self.index.add_with_ids(vectors, ids)

    def remove(self, ids: Ids) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        self.vectors.remove(ids)
        if self.index is not None:
            self.index.remove_ids(faiss.IDSelectorBatch(ids))

    def train(self, seed: int = 0) -> None:
        """Train IVF and PQ on a sample of the stored vectors, then index them all."""
        # checked here, not when built: an index is planned for its PCA's dimension and holds the model's full
        # vectors (searched exactly) until the PCA is fitted
        if self.reduced_dimension % self.sub_quantizers:
            raise RequestError(f"{self.sub_quantizers} sub-quantisers ({self.pq_bytes} bytes of {self.pq_bits} bits) "
                             f"do not divide the {self.reduced_dimension} dimensions they encode")
        if self.nlist is None:
            self.nlist = lists_for(self.count)
        alive = np.flatnonzero(self.vectors.row_ids >= 0)
        sample_size = min(len(alive), max(self.min_train, min(MAX_TRAIN, TRAIN_PER_LIST * self.nlist)))
        rows = np.sort(np.random.default_rng(seed).choice(alive, sample_size, replace=False))
        sample = self.vectors.vectors_of_rows(rows)
        log.info("training %s on %d vectors", self.factory_string(), sample_size)
        if self.transform == "pca":  # FAISS's own PCAR trains very slowly here; the same transform, from NumPy
            inner = faiss.index_factory(self.reduced_dimension, self.factory_string().split(",", 1)[1],
                                        faiss.METRIC_INNER_PRODUCT)
            rotation = pca_rotation(sample, self.reduced_dimension, seed)
            rotation.thisown, inner.thisown = False, False  # owned by the index from here on
            index = faiss.IndexPreTransform(rotation, inner)
            index.own_fields = True
        else:
            index = faiss.index_factory(self.dimension, self.factory_string(), faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        ivf.pq.cp.niter = PQ_ITERATIONS
        if hasattr(ivf, "do_polysemous_training"):
            ivf.do_polysemous_training = False  # on by default in index_factory; slow, and unused here
        ivf.by_residual = True  # FAISS's fast-scan default is False: codes of the whole vector, not of its offset
        # from the list's centroid. Residual codes need under half the candidates for the same recall (1M: 0.959 with
        # nprobe 64 and 300 candidates, against 0.960 with nprobe 96 and 800); for inner product it costs one
        # bias per probed list
        index.train(sample)
        for ids, vectors in self.vectors.alive_chunks():
            index.add_with_ids(vectors, ids)
        self.index = index

    def compact(self) -> None:
        """Drop tombstoned rows from the re-rank vectors (the IVF lists already deleted them)."""
        self.vectors.compact()

    # --- search ---------------------------------------------------------------------------
    def search(self, queries: Matrix, k: int, allowed_ids: Ids | None = None) -> tuple[Matrix, Ids]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        with threads_for(len(queries)):
            exact = self._exact_answer(queries, k, allowed_ids)
            if exact is not None:
                return exact
            selector = None if allowed_ids is None else faiss.IDSelectorBatch(np.asarray(allowed_ids, dtype=np.int64))
            params = faiss.SearchParametersIVF(nprobe=self.nprobe, sel=selector)
            if self.coarse == "hnsw":  # the graph over centroids must look at least as wide as the lists probed
                graph = faiss.SearchParametersHNSW(efSearch=max(64, 2 * self.nprobe))  # alive until search returns
                params.quantizer_params = graph
            with _probes_in_parallel(self.index, len(queries)):
                _, candidates = self.index.search(queries, max(k, self.rerank * k), params=params)
            return self.vectors.rerank(queries, candidates, k)

    # --- persistence ----------------------------------------------------------------------
    def save(self, folder: Path, generation: int) -> None:
        index_path, vectors_path, ids_path, sidecar = _paths(folder, generation)
        files = [vectors_path, ids_path]
        self.vectors.save(vectors_path, ids_path)
        if self.index is not None:
            write_index_atomically(self.index, index_path)
            files.append(index_path)
        seal(sidecar, files)
        drop_stale_files(folder, ["ivfpq-*", "rerank-*"], keep=[sidecar, *files])

    @classmethod
    def load(cls, folder: Path, generation: int, dimension: int, **params: object) -> IVFPQBackend | None:
        index_path, vectors_path, ids_path, sidecar = _paths(folder, generation)
        if not vectors_path.exists() or not verified(sidecar):
            return None
        backend = cls(dimension, **params)  # type: ignore[arg-type]
        backend.vectors = RerankStore.load(vectors_path, ids_path, dimension, backend.rows_in_ram)
        if index_path.exists():
            backend.index = read_index(index_path)
            ivf = faiss.extract_index_ivf(backend.index)
            backend.nlist = ivf.nlist
            backend.coarse = "hnsw" if isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSW) else "flat"
        return backend


@contextmanager
def _probes_in_parallel(index: faiss.Index, queries: int) -> Iterator[None]:
    """When a lone query may use several threads (settings.search_threads), fast-scan splits its probed lists
    between them (FAISS's "implem 14"), which its automatic choice does not do: 0.80 -> 0.61 ms for one query over
    1M codes with nprobe 64 on 2 idle cores. Batches keep the automatic choice (one query per thread)."""
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    if queries >= faiss.omp_get_max_threads() or not hasattr(ivf, "implem"):
        yield
        return
    ivf.implem = 14
    try:
        yield
    finally:
        ivf.implem = 0


def pca_rotation(sample: Matrix, dimension: int, seed: int, centre: bool = True) -> faiss.LinearTransform:
    """PCA to `dimension` followed by a random rotation (variance spread evenly over PQ sub-vectors).
    Without `centre`, the axes are those of the uncentred second moments and no mean is subtracted, so
    inner products in the reduced space approximate the original ones (graph search ranks by them)."""
    mean = sample.mean(axis=0) if centre else np.zeros(sample.shape[1], dtype=np.float32)
    centred = sample - mean
    _, eigenvectors = np.linalg.eigh(centred.T @ centred / len(sample))
    top = eigenvectors[:, ::-1][:, :dimension].T  # dimension x d, largest variance first
    rotation, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dimension, dimension)))
    matrix = (rotation.astype(np.float32) @ top).astype(np.float32)
    transform = faiss.LinearTransform(sample.shape[1], dimension, True)
    faiss.copy_array_to_vector(matrix.ravel(), transform.A)
    faiss.copy_array_to_vector((-matrix @ mean).astype(np.float32), transform.b)
    transform.is_trained = True
    return transform


def _paths(folder: Path, generation: int) -> tuple[Path, Path, Path, Path]:
    return (folder / f"ivfpq-{generation}.faiss", folder / f"rerank-{generation}.f16",
            folder / f"rerank-{generation}.ids.npy", folder / f"ivfpq-{generation}.sha256.json")
