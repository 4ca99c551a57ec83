"""Query expansion: label-free re-ranking after the vector index has answered.

Two stages, both over the first answer's candidates only (so they work with every index type and
never reach outside a filter):
- alpha query expansion (Radenović, Tolias, Chum 2018): the query becomes the normalised sum of itself
  and its top-n results weighted by similarity^alpha, and is searched again;
- diffusion (after Iscen et al. 2017, truncated to the first answer's top candidates): candidates are
  ranked by a random walk from the query on their mutual k-nearest-neighbour graph. It lifts
  collections where a query has many true matches (the "categories" mode) and hurts exact-item search.

The functions take batches of queries, so `lookalike evaluate` scores a whole labelled set through
exactly the code a single search runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lookalike.errors import RequestError

Matrix = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]

EXPANSIONS = ("aqe", "categories", "diffusion", "none")
# Chosen on Corel-1K and clothing with benchmarks/expansion.py (RESULTS.md): small and sharp, so queries
# with one or three true matches are not pulled towards a crowd of near neighbours. "categories" is alpha
# query expansion over many neighbours: better when a query has dozens of true matches, much worse when
# it has one or three.
DEFAULT_EXPANSION = "aqe"
DEFAULT_NEIGHBOURS = {"aqe": 3, "categories": 10, "diffusion": 20}
DEFAULT_ALPHA = {"aqe": 2.0, "categories": 1.0, "diffusion": 3.0}  # for diffusion: the affinity's exponent
DIFFUSION_CANDIDATES = 300  # the walk runs on the first answer's top candidates (truncated diffusion)
# The guard (see `guarded_order`): how many first-answer candidates it looks at, and which of each image's
# neighbours a new photo must be closer than for the image to count as a near match of it (the 10th).
GUARD_CANDIDATES = 40  # 100 gave the same quality within 0.006 (benchmarks/trust.py) for more reads
GUARD_NEIGHBOUR = 10
DIFFUSION_DAMPING = 0.9
EXPLANATIONS = {
    "aqe": "the query is blended with its closest matches and searched again (query expansion)",
    "categories": "the query is blended with many matches: finds more of a category, misses exact items",
    "diffusion": "matches are ranked by a random walk over their neighbour graph (slower; for categories)",
    "none": "plain similarity to the query",
}


@dataclass(frozen=True)
class Expansion:
    """How a search re-ranks its first answer: method, neighbours (n) and alpha."""

    method: str = DEFAULT_EXPANSION
    neighbours: int = DEFAULT_NEIGHBOURS[DEFAULT_EXPANSION]
    alpha: float = DEFAULT_ALPHA[DEFAULT_EXPANSION]

    @classmethod
    def of(cls, method: str | None, neighbours: int | None = None, alpha: float | None = None) -> Expansion:
        """An expansion from search options (None is each method's default), checked."""
        method = (method or DEFAULT_EXPANSION).strip().lower()
        if method not in EXPANSIONS:
            raise RequestError(f"expand must be one of {', '.join(EXPANSIONS)}, not {method!r}")
        if method == "none":
            return cls("none", 0, 0.0)
        chosen = cls(method, DEFAULT_NEIGHBOURS.get(method, 0) if neighbours is None else neighbours,
                     DEFAULT_ALPHA.get(method, 1.0) if alpha is None else alpha)
        chosen.check()
        return chosen

    def check(self) -> None:
        if isinstance(self.neighbours, bool) or not isinstance(self.neighbours, int | np.integer) \
                or not 1 <= self.neighbours <= 1000:
            raise RequestError(f"expand_neighbours must be a whole number from 1 to 1000, not {self.neighbours!r}")
        if not 0.0 <= float(self.alpha) <= 100.0:
            raise RequestError(f"expand_alpha must be from 0 to 100, not {self.alpha!r}")

    @property
    def active(self) -> bool:
        return self.method != "none"

    @property
    def blends(self) -> bool:
        """Whether the query is blended with its matches and searched again (aqe and categories)."""
        return self.method in ("aqe", "categories")

    def candidates(self, k: int) -> int:
        """How many first-answer candidates the expansion needs to return k results."""
        if self.method == "diffusion":
            return max(k, DIFFUSION_CANDIDATES, self.neighbours + 1)
        return max(k, self.neighbours) if self.active else k


def expanded_queries(queries: Matrix, similarities: Matrix, neighbour_vectors: Matrix, alpha: float) -> Matrix:
    """Alpha query expansion: each query (q, d) plus its n neighbours (q, n, d) weighted by their
    similarity (q, n) to the power alpha, L2-normalised. Negative similarities add nothing."""
    weights = np.maximum(similarities, 0.0) ** alpha
    blended = queries + np.einsum("qn,qnd->qd", weights, neighbour_vectors)
    return (blended / np.maximum(np.linalg.norm(blended, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def guarded_order(ranked_ids: Ids, ranked_scores: Matrix, candidate_ids: Ids, plain: Matrix,
                  floors: Matrix | None) -> tuple[Ids, Matrix]:
    """Re-ranking that never buries a near match (measured in benchmarks/trust.py): the candidate with the best
    plain similarity comes first, then every candidate the query is closer to than that image is to its
    GUARD_NEIGHBOUR-th nearest indexed neighbour (`floors`, from the augmentation's graph; None: no such
    graph), in plain order; then the re-ranked answer. Expansion and DBA pull a query towards a crowd of look-alikes,
    which finds more of a category and loses the very object the photo shows: the guard keeps that object.
    Scores never increase down the list (a guarded match's score is at least the best one after it)."""
    if len(candidate_ids) == 0:
        return ranked_ids, ranked_scores
    near = plain > floors if floors is not None else np.zeros(len(plain), bool)
    near[int(np.argmax(plain))] = True
    near_plain = plain[near]
    order = np.argsort(-near_plain, kind="stable")
    front = candidate_ids[near][order]
    rest = ~_among(ranked_ids, front)
    rest_scores = ranked_scores[rest]
    best_after = float(rest_scores[0]) if len(rest_scores) else -np.inf
    front_scores = np.maximum(near_plain[order], best_after)
    scores = np.minimum.accumulate(np.concatenate([front_scores, rest_scores]).astype(np.float32))
    return np.concatenate([front, ranked_ids[rest]]), scores


def _among(ids: Ids, others: Ids) -> npt.NDArray[np.bool_]:
    """np.isin for a search's few ids: compared all against all where that is small (a fifth of isin's time)."""
    if len(ids) * len(others) > 4096:
        return np.isin(ids, others)
    return (ids[:, None] == others[None, :]).any(axis=1)


def diffusion_scores(query: Matrix, candidates: Matrix, neighbours: int, gamma: float,
                     damping: float = DIFFUSION_DAMPING) -> Matrix:
    """Relevance of each candidate (c, d) to one query (d,) by diffusion on the candidates' mutual kNN graph
    (affinity similarity^gamma), the query joined to its k nearest, solved exactly (the graph is small)."""
    points = np.vstack([query.reshape(1, -1), candidates]).astype(np.float64)
    affinity = np.maximum(points @ points.T, 0.0) ** gamma
    np.fill_diagonal(affinity, 0.0)
    affinity = _mutual_neighbours(affinity, min(neighbours, len(points) - 1))
    degree = np.maximum(affinity.sum(axis=1), 1e-12)
    normalised = affinity / np.sqrt(degree[:, None] * degree[None, :])
    start = np.zeros(len(points))
    start[0] = 1.0
    walked = np.linalg.solve(np.eye(len(points)) - damping * normalised, start)
    scores = walked[1:]
    top = scores.max() if len(scores) and scores.max() > 0 else 1.0
    return (scores / top).astype(np.float32)


def _mutual_neighbours(affinity: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.float64]:
    """Keep an edge only when each end is among the other's k strongest."""
    if k <= 0:
        return np.zeros_like(affinity)
    strongest = np.argpartition(-affinity, k - 1, axis=1)[:, :k]
    kept = np.zeros(affinity.shape, dtype=bool)
    np.put_along_axis(kept, strongest, True, axis=1)
    mutual = kept & kept.T
    mutual[0, :], mutual[:, 0] = kept[0, :], kept[0, :]  # row 0, the query, keeps its own k nearest
    return np.where(mutual, affinity, 0.0)


def diffusion_order(query: Matrix, candidate_ids: Ids, candidates: Matrix,
                    expansion: Expansion) -> tuple[Ids, Matrix]:
    """Candidates re-ordered by diffusion relevance, with those relevances as scores."""
    if len(candidate_ids) == 0:
        return candidate_ids, np.zeros(0, np.float32)
    scores = diffusion_scores(query, candidates, expansion.neighbours, expansion.alpha)
    order = np.argsort(-scores, kind="stable")
    return candidate_ids[order], scores[order]
