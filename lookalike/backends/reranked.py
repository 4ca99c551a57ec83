"""What the approximate backends that keep every full vector (IVF-PQ, reduced HNSW) share.

Both hold the full vectors in a `RerankStore` and an approximate index that must be trained on a sample:
until `min_train` vectors exist they search the stored vectors exactly, then train and add to the
trained index from then on. A filter of at most `SMALL_FILTER` ids is answered exactly from the stored
vectors too (scoring a few thousand rows is cheaper than filtering inside the index, and exact).
"""

from __future__ import annotations

import numpy as np

from lookalike.backends.base import Ids, Matrix
from lookalike.backends.exact import exact_top_k
from lookalike.backends.rerank import RerankStore

SMALL_FILTER = 4096  # at most this many allowed ids: score them exactly from the re-rank file


class RerankedBackend:
    vectors: RerankStore
    min_train: int

    @property
    def count(self) -> int:
        return self.vectors.count

    @property
    def trained(self) -> bool:
        raise NotImplementedError

    def train(self, seed: int = 0) -> None:
        raise NotImplementedError

    def _add_trained(self, ids: Ids, vectors: Matrix) -> None:
        """Add to the trained index (the vectors are stored already)."""
        raise NotImplementedError

    def add(self, ids: Ids, vectors: Matrix) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.vectors.add(ids, vectors)
        if self.trained:
            self._add_trained(ids, vectors)
        elif self.count >= self.min_train:
            self.train()

    def _exact_answer(self, queries: Matrix, k: int, allowed_ids: Ids | None) -> tuple[Matrix, Ids] | None:
        """The exact top k when the index is untrained or the filter is small, else None."""
        if not self.trained or (allowed_ids is not None and len(allowed_ids) <= SMALL_FILTER):
            return exact_top_k(queries, self.vectors.chunks_of(allowed_ids), k)
        return None
