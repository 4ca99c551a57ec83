"""Exact top-k by inner product over vectors that arrive in chunks (bounded memory).

Used where an approximate index has nothing better to offer: before it is trained, for filters
that allow only a few ids, and as the reference when measuring recall.
"""

from __future__ import annotations

from collections.abc import Iterable

import faiss
import numpy as np

from lookalike.backends.base import Ids, Matrix


def exact_top_k(queries: Matrix, chunks: Iterable[tuple[Ids, Matrix]], k: int) -> tuple[Matrix, Ids]:
    """(scores, ids) of the k largest inner products per query; ids -1 where fewer exist."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    for ids, vectors in chunks:
        if len(ids) == 0:
            continue
        scores = queries @ np.asarray(vectors, dtype=np.float32).T
        take = min(k, len(ids))
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        heap.add_result(np.take_along_axis(scores, top, axis=1), np.asarray(ids, dtype=np.int64)[top])
    heap.finalize()
    return heap.D, heap.I
