"""Vector backends: where vectors are searched. SQLite (store.py) stays the source of truth;
a backend is a searchable copy that can always be rebuilt from it."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from lookalike.backends.base import Ids, Matrix, VectorBackend
from lookalike.errors import RequestError

# Index types by name, each the "module:Class" that implements it, imported only when an index of that type is made
# or opened (txtai's ann factory does the same): the core names no backend, and a plug-in adds its own with
# register_backend.
BACKENDS: dict[str, str | type[VectorBackend]] = {
    "flat-ip": "lookalike.backends.faiss_flat:FlatBackend",
    "hnsw": "lookalike.backends.hnsw:HNSWBackend",
    "hnsw-reduced": "lookalike.backends.hnsw_reduced:ReducedHNSWBackend",
    "ivfpq": "lookalike.backends.ivfpq:IVFPQBackend",
    "milvus": "lookalike.backends.milvus:MilvusBackend",
}


def register_backend(kind: str, backend: str | type[VectorBackend]) -> None:
    """Make an index type available by name: a VectorBackend class or its "module:Class" path."""
    BACKENDS[kind] = backend


def _backend_class(kind: str) -> Any:
    if kind not in BACKENDS:
        raise RequestError(f"unknown index type {kind!r}; available: {', '.join(sorted(BACKENDS))}")
    backend = BACKENDS[kind]
    if isinstance(backend, str):
        module, _, name = backend.partition(":")
        backend = getattr(importlib.import_module(module), name)  # imported once: Python keeps the module
    return backend


def new_backend(kind: str, dimension: int, params: dict[str, Any] | None = None, **options: Any) -> VectorBackend:
    """An empty backend; `params` tune it (efSearch, nprobe, ...), `options` (from Manifest.backend_options) say
    where a store outside the folder lives."""
    return _backend_class(kind)(dimension, **(params or {}), **options)


def load_backend(kind: str, dimension: int, folder: Path, generation: int, params: dict[str, Any] | None = None,
                 **options: Any) -> VectorBackend | None:
    """The saved backend for this generation, or None when it is missing, stale or damaged."""
    return _backend_class(kind).load(folder, generation, dimension, **(params or {}), **options)


def store_manifest(store: str | None) -> dict[str, Any]:
    """Manifest entries for a `--store` choice: nothing for the embedded FAISS store."""
    if store is None or store in ("faiss", "flat-ip"):
        return {}
    from lookalike.backends.milvus import is_milvus_store, parse_store

    if not is_milvus_store(store):
        raise RequestError(f"unknown store {store!r}: use faiss (default), milvus://HOST:PORT/COLLECTION "
                         "or a Milvus Lite file (path/file.db or milvus-lite:///path/file.db/COLLECTION)")
    return {"index_type": "milvus", "store": str(parse_store(store))}


__all__ = ["BACKENDS", "Ids", "Matrix", "VectorBackend", "load_backend", "new_backend", "register_backend",
           "store_manifest"]
