"""Process settings for serving one query at a time with low latency (set before the indexes are opened).

Measured on 2 shared cores (one uploaded photo at a time): ONNX Runtime's worker threads spin after
each run and FAISS's OpenMP threads then compete with them, so a 0.6 ms flat search took 10-25 ms and
the embedding about 40 ms; without spinning and with one FAISS thread: 0.6 ms and about 20 ms. ONNX
Runtime never spins unless LOOKALIKE_ORT_SPINNING=1 (embedders/onnx_runtime.py); the single FAISS
thread is for `lookalike serve` only (batch indexing and batched searches keep all cores).
"""

from __future__ import annotations

import threading

import faiss

from lookalike.settings import search_threads

_enabled = False
_prepared = threading.local()


def tune_for_single_queries() -> None:
    global _enabled
    _enabled = True


def prepare_thread() -> None:
    """OpenMP's thread count is per calling thread: set it once in each request worker thread."""
    if _enabled and not getattr(_prepared, "done", False):
        faiss.omp_set_num_threads(search_threads())
        _prepared.done = True
