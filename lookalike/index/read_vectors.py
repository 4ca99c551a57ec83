"""What one search has read and computed already, so that no step of it does it twice (issue 29: the guard reads
the candidates' vectors; making the matches readable and judging the first one used to read them again)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lookalike.index.store import VectorStore


@dataclass
class ReadVectors:
    """The query as the index compares it, and for each image the guard looked at its plain similarity to the query
    and its full vector."""

    query: np.ndarray | None = None
    similarity: dict[int, float] = field(default_factory=dict)
    full: dict[int, np.ndarray] = field(default_factory=dict)

    def candidates(self, store: VectorStore, image_ids: np.ndarray, searchable: np.ndarray | None = None,
                   at: np.ndarray | None = None) -> np.ndarray:
        """The guard's candidates' plain similarities to the query (set first): their searchable vectors gathered
        from the resident `searchable` rows (at positions `at`) when they are held, else their full vectors read
        (once)."""
        assert self.query is not None
        if searchable is not None and at is not None:
            plain = searchable[at] @ self.query
        else:
            full = store.vectors(image_ids.tolist())
            plain = store.to_searchable(full) @ self.query
            self.full.update(zip(image_ids.tolist(), full, strict=True))
        self.similarity.update(zip(image_ids.tolist(), plain.tolist(), strict=True))
        return plain

    def similarities(self, store: VectorStore, image_ids: list[int], vector: np.ndarray) -> list[float]:
        """Each image's plain similarity to the query (full `vector`), read and projected only where not known."""
        unread = [image_id for image_id in image_ids if image_id not in self.similarity]
        if unread:
            if self.query is None:
                self.query = store.to_searchable(vector.reshape(1, -1))[0]
            self.similarity.update(zip(unread, (store.searchable_vectors(unread) @ self.query).tolist(), strict=True))
        return [self.similarity[image_id] for image_id in image_ids]

    def full_vector(self, store: VectorStore, image_id: int) -> np.ndarray:
        known = self.full.get(image_id)
        return store.vectors([image_id])[0] if known is None else known
