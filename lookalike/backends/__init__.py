"""Vector backends: where vectors are searched. SQLite (store.py) stays the source of truth;
a backend is a searchable copy that can always be rebuilt from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lookalike.backends.base import Ids, Matrix, VectorBackend
from lookalike.errors import RequestError


def _registry() -> dict[str, Any]:
    """Index types by name. A new backend adds one line here."""
    from lookalike.backends.faiss_flat import FlatBackend
    from lookalike.backends.hnsw import HNSWBackend
    from lookalike.backends.hnsw_reduced import ReducedHNSWBackend
    from lookalike.backends.ivfpq import IVFPQBackend
    from lookalike.backends.milvus import MilvusBackend

    return {FlatBackend.kind: FlatBackend, HNSWBackend.kind: HNSWBackend, IVFPQBackend.kind: IVFPQBackend,
            MilvusBackend.kind: MilvusBackend, ReducedHNSWBackend.kind: ReducedHNSWBackend}


def _backend_class(kind: str) -> Any:
    registry = _registry()
    if kind not in registry:
        raise RequestError(f"unknown index type {kind!r}; available: {', '.join(sorted(registry))}")
    return registry[kind]


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


__all__ = ["Ids", "Matrix", "VectorBackend", "load_backend", "new_backend", "store_manifest"]
