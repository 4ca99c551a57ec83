"""The one thread policy for searches: a lone query runs on `settings.search_threads()` FAISS threads (one by
default), a batch on every core. FAISS's OpenMP thread count belongs to the calling thread, so concurrent callers
(a server's request threads) each get the policy without seeing each other's setting."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import faiss

from lookalike.settings import search_threads


@contextmanager
def threads_for(queries: int) -> Iterator[int]:
    """FAISS's OpenMP threads for a search of `queries` vectors while the block runs; yields how many."""
    threads = faiss.omp_get_max_threads()
    if queries > 1:
        yield threads
        return
    lone = min(threads, search_threads())
    faiss.omp_set_num_threads(lone)
    try:
        yield lone
    finally:
        faiss.omp_set_num_threads(threads)
