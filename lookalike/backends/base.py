"""What every vector backend is: inner-product search over (id, vector) pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from lookalike.backends.filters import Filter

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

    def search(self, queries: Matrix, k: int, allowed_ids: Ids | Filter | None = None) -> tuple[Matrix, Ids]:
        """Top-k (scores, ids) per query, ids -1 where fewer exist; `allowed_ids` filters inside the search (a
        Filter only for a backend whose `can_filter(narrowed)` said it applies it itself: backends/filters.py)."""
        ...

    def save(self, folder: Path, generation: int) -> None:
        """Persist for this database generation (atomically)."""
        ...
