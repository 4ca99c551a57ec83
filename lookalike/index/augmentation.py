"""Database-side augmentation (DBA): each indexed vector is searched as the normalised sum of itself and
its n nearest indexed neighbours, weighted by similarity^alpha. It needs no labels and pulls an image
towards the group it belongs to, so a query finds the whole group more easily.

DBA is derived state, like the PCA and the vector backend: SQLite keeps every image's own vector; the
neighbour graph and the augmented vectors are kept beside them (the store's `augmented` table) and
written in one transaction per pass, so a crash leaves the previous, consistent state. A pass after each
indexing run updates only what changed, exactly: new images get their neighbours, images that gain a new
image among their n nearest take it in, images that lost a neighbour (removed or changed) are recomputed.
The result equals a full rebuild (tests/test_augmentation.py checks it). A run that changed a large share of the
images rebuilds everything instead, which is then cheaper (`rebuild_is_cheaper`).

Neighbours are found exactly (chunked inner products) up to EXACT_LIMIT images; a full build above that
uses a FAISS inverted-file index (approximate, measured in RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.errors import RequestError

Matrix = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]
Progress = Callable[[int, int], None]

# Chosen on Corel-1K and clothing with benchmarks/expansion.py (RESULTS.md); safe for few-match queries.
DEFAULT_NEIGHBOURS = 10
DEFAULT_ALPHA = 2.0
DEFAULT_PLAN = {"neighbours": DEFAULT_NEIGHBOURS, "alpha": DEFAULT_ALPHA}
EXACT_LIMIT = 200_000  # above this, a full build finds neighbours with an IVF index instead of exactly
CHUNK = 4096  # rows of inner products computed at once, at most
CHUNK_FLOATS = 1 << 26  # and at most this many inner products (256 MB) whatever the collection's size


@dataclass(frozen=True)
class AugmentationPlan:
    neighbours: int = DEFAULT_NEIGHBOURS
    alpha: float = DEFAULT_ALPHA

    @classmethod
    def of(cls, recorded: dict[str, Any] | None) -> AugmentationPlan | None:
        return None if not recorded else cls(int(recorded["neighbours"]), float(recorded["alpha"]))

    def describe(self) -> dict[str, Any]:
        return {"neighbours": self.neighbours, "alpha": self.alpha}


def plan_augmentation(neighbours: int | None, alpha: float | None) -> dict[str, Any] | None:
    """What a new index records: None keeps the default DBA, 0 turns it off."""
    if neighbours == 0:
        return None
    plan = AugmentationPlan(DEFAULT_NEIGHBOURS if neighbours is None else int(neighbours),
                            DEFAULT_ALPHA if alpha is None else float(alpha))
    if plan.neighbours < 1 or plan.neighbours > 1000:
        raise RequestError(f"dba takes a number of neighbours from 1 to 1000 (0 turns it off), not {neighbours}")
    if not 0.0 <= plan.alpha <= 100.0:
        raise RequestError(f"dba_alpha must be from 0 to 100, not {alpha}")
    return plan.describe()


def describe_text(plan: dict[str, Any] | None) -> str:
    if not plan:
        return "none"
    return f"DBA over {plan['neighbours']} neighbours (alpha {plan['alpha']:g})"


@dataclass
class Graph:
    """Each image's n nearest other images (by its own vector) and their similarities."""

    ids: Ids  # (m,), sorted
    neighbours: Ids  # (m, n), -1 where an image has fewer than n others
    similarities: Matrix  # (m, n), -inf where missing

    @classmethod
    def empty(cls, n: int) -> Graph:
        return cls(np.zeros(0, np.int64), np.zeros((0, n), np.int64), np.zeros((0, n), np.float32))


def augmented(own: Matrix, neighbour_vectors: Matrix, similarities: Matrix, alpha: float) -> Matrix:
    """own (m, d) + sum of neighbours (m, n, d) weighted by similarity^alpha (missing ones weigh 0), normalised."""
    present = np.isfinite(similarities)
    weights = np.where(present, np.maximum(np.where(present, similarities, 0.0), 0.0) ** alpha, 0.0)
    total = own + np.einsum("mn,mnd->md", weights.astype(np.float32), neighbour_vectors)
    return (total / np.maximum(np.linalg.norm(total, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def augment_all(ids: Ids, vectors: Matrix, plan: AugmentationPlan,
                progress: Progress | None = None) -> tuple[Graph, Matrix]:
    """The full build: every image's neighbours and augmented vector."""
    graph = Graph(ids, *nearest_others(vectors, np.arange(len(ids)), plan.neighbours, progress))
    graph.neighbours = np.where(graph.neighbours >= 0, ids[np.maximum(graph.neighbours, 0)], -1)
    return graph, augmented_rows(graph, np.arange(len(ids)), ids, vectors, plan.alpha)


def augmented_rows(graph: Graph, rows: npt.NDArray[np.intp], ids: Ids, vectors: Matrix, alpha: float) -> Matrix:
    """Augmented vectors of some graph rows; `ids`/`vectors` are every image's own vectors (ids sorted)."""
    positions = np.searchsorted(ids, np.maximum(graph.neighbours[rows], 0))
    own = vectors[np.searchsorted(ids, graph.ids[rows])]
    return augmented(own, vectors[positions], graph.similarities[rows], alpha)


def nearest_others(vectors: Matrix, rows: npt.NDArray[np.intp], n: int,
                   progress: Progress | None = None) -> tuple[Ids, Matrix]:
    """Positions and similarities of the n vectors nearest each of `rows`, itself left out."""
    if len(vectors) > EXACT_LIMIT and len(rows) == len(vectors):
        return _approximate_nearest(vectors, n, progress)
    found = np.full((len(rows), n), -1, np.int64)
    similarity = np.full((len(rows), n), -np.inf, np.float32)
    take = min(n, len(vectors) - 1)
    step = chunk_rows(len(vectors))
    for start in range(0, len(rows), step):
        chunk = rows[start:start + step]
        inner = vectors[chunk] @ vectors.T
        inner[np.arange(len(chunk)), chunk] = -np.inf
        if take > 0:
            found[start:start + len(chunk), :take], similarity[start:start + len(chunk), :take] = _top(inner, take)
        if progress is not None:
            progress(min(start + step, len(rows)), len(rows))
    return found, similarity


def chunk_rows(columns: int) -> int:
    """Rows per chunk of inner products against `columns` vectors, within CHUNK_FLOATS."""
    return max(1, min(CHUNK, CHUNK_FLOATS // max(columns, 1)))


def _top(inner: Matrix, take: int) -> tuple[Ids, Matrix]:
    part = np.argpartition(-inner, take - 1, axis=1)[:, :take]
    values = np.take_along_axis(inner, part, axis=1)
    order = np.lexsort((part, -values), axis=1)  # best first; ties by position, as a full sort would
    return np.take_along_axis(part, order, 1).astype(np.int64), np.take_along_axis(values, order, 1)


def _approximate_nearest(vectors: Matrix, n: int, progress: Progress | None) -> tuple[Ids, Matrix]:
    import faiss

    lists = int(4 * np.sqrt(len(vectors)))
    quantizer = faiss.IndexFlatIP(vectors.shape[1])
    ivf = faiss.IndexIVFFlat(quantizer, vectors.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(0).choice(len(vectors), size=min(len(vectors), 64 * lists), replace=False)
    ivf.train(np.ascontiguousarray(vectors[np.sort(sample)]))
    ivf.add(vectors)
    ivf.nprobe = 32
    found = np.full((len(vectors), n), -1, np.int64)
    similarity = np.full((len(vectors), n), -np.inf, np.float32)
    for start in range(0, len(vectors), CHUNK * 4):
        stop = min(start + CHUNK * 4, len(vectors))
        values, positions = ivf.search(vectors[start:stop], n + 1)
        for row in range(stop - start):
            keep = (positions[row] != start + row) & (positions[row] >= 0)
            kept_positions, kept_values = positions[row][keep][:n], values[row][keep][:n]
            found[start + row, :len(kept_positions)] = kept_positions
            similarity[start + row, :len(kept_values)] = kept_values
        if progress is not None:
            progress(stop, len(vectors))
    return found, similarity


def rebuild_is_cheaper(graph: Graph, ids: Ids, changed: set[int]) -> bool:
    """Whether a full build beats updating the graph for the images new or `changed` among `ids` (every image now).
    An update searches each of them against all the others exactly; a full build is exact up to EXACT_LIMIT images
    and uses IVF above it. Measured on 2 cores (RESULTS.md, "Query expansion"): at 1M a full build took 6.8 min and
    adding 1% 138 s (so 999,000 images added to 3,781 would have taken about 2 hours); at 100k 2.4 min and 3.4 s."""
    work = len(changed) + len(np.setdiff1d(ids, graph.ids))
    return work > (0.03 if len(ids) > EXACT_LIMIT else 0.4) * len(ids)


def update(graph: Graph, ids: Ids, vectors: Matrix, changed: set[int],
           plan: AugmentationPlan) -> tuple[Graph, Ids]:
    """The graph after images were added, removed or changed, and the ids whose augmented vector changed.
    `ids`/`vectors`: every image now (ids sorted); `changed`: ids removed or given a new vector since."""
    n = plan.neighbours
    alive = np.isin(graph.ids, ids) & ~np.isin(graph.ids, list(changed))
    kept = Graph(graph.ids[alive], graph.neighbours[alive].copy(), graph.similarities[alive].copy())
    new_ids = np.setdiff1d(ids, kept.ids)
    lost = np.isin(kept.neighbours, list(changed) + np.setdiff1d(graph.ids, ids).tolist()).any(axis=1)
    recompute = np.concatenate([kept.ids[lost], new_ids])
    positions = np.searchsorted(ids, recompute)
    found, similarity = nearest_others(vectors, positions, n)
    fresh = Graph(recompute, np.where(found >= 0, ids[np.maximum(found, 0)], -1), similarity)
    taken_in = _take_in_new(kept, ~lost, ids, vectors, new_ids, n)
    merged = _merge(kept, ~lost, fresh)
    touched = np.union1d(recompute, taken_in)
    return merged, touched


def _take_in_new(kept: Graph, rows: npt.NDArray[np.bool_], ids: Ids, vectors: Matrix, new_ids: Ids,
                 n: int) -> Ids:
    """Kept images whose n nearest now include a new image: their lists take it in (in place)."""
    if len(new_ids) == 0:
        return np.zeros(0, np.int64)
    new_vectors = vectors[np.searchsorted(ids, new_ids)]
    changed: list[int] = []
    step = chunk_rows(len(new_ids))
    for start in range(0, int(rows.sum()), step):
        row_numbers = np.flatnonzero(rows)[start:start + step]
        inner = vectors[np.searchsorted(ids, kept.ids[row_numbers])] @ new_vectors.T
        weakest = kept.similarities[row_numbers, -1]
        closer = inner > weakest[:, None]
        for local in np.flatnonzero(closer.any(axis=1)):
            row = row_numbers[local]
            candidates = np.concatenate([kept.neighbours[row], new_ids[closer[local]]])
            values = np.concatenate([kept.similarities[row], inner[local][closer[local]]])
            order = np.lexsort((np.searchsorted(ids, np.maximum(candidates, 0)), -values))[:n]
            kept.neighbours[row], kept.similarities[row] = candidates[order], values[order]
            changed.append(int(kept.ids[row]))
    return np.asarray(changed, np.int64)


def _merge(kept: Graph, rows: npt.NDArray[np.bool_], fresh: Graph) -> Graph:
    ids = np.concatenate([kept.ids[rows], fresh.ids])
    order = np.argsort(ids)
    return Graph(ids[order], np.concatenate([kept.neighbours[rows], fresh.neighbours])[order],
                 np.concatenate([kept.similarities[rows], fresh.similarities])[order])
