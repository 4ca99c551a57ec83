"""Vector backends: where vectors are searched. SQLite (store.py) stays the source of truth;
a backend is a searchable copy that can always be rebuilt from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Ids = npt.NDArray[np.int64]
Matrix = npt.NDArray[np.float32]


class VectorBackend(Protocol):
    """Inner-product search over (id, vector) pairs, with incremental add and delete."""

    kind: str
    dimension: int

    @property
    def count(self) -> int: ...

    def add(self, ids: Ids, vectors: Matrix) -> None: ...

    def remove(self, ids: Ids) -> None: ...

    def search(self, queries: Matrix, k: int, allowed_ids: Ids | None = None) -> tuple[Matrix, Ids]:
        """Top-k (scores, ids) per query, ids -1 where fewer exist; `allowed_ids` filters inside the search."""
        ...

    def save(self, folder: Path, generation: int) -> None:
        """Persist for this database generation (atomically)."""
        ...


def _registry() -> dict[str, Any]:
    """Index types by name. A new backend adds one line here."""
    from lookalike.backends.faiss_flat import FlatBackend
    from lookalike.backends.hnsw import HNSWBackend
    from lookalike.backends.ivfpq import IVFPQBackend

    return {FlatBackend.kind: FlatBackend, HNSWBackend.kind: HNSWBackend, IVFPQBackend.kind: IVFPQBackend}


def _backend_class(kind: str) -> Any:
    registry = _registry()
    if kind not in registry:
        raise ValueError(f"unknown index type {kind!r}; available: {', '.join(sorted(registry))}")
    return registry[kind]


def new_backend(kind: str, dimension: int, params: dict[str, Any] | None = None) -> VectorBackend:
    return _backend_class(kind)(dimension, **(params or {}))


def load_backend(kind: str, dimension: int, folder: Path, generation: int,
                 params: dict[str, Any] | None = None) -> VectorBackend | None:
    """The saved backend for this generation, or None when it is missing, stale or damaged."""
    return _backend_class(kind).load(folder, generation, dimension, **(params or {}))
