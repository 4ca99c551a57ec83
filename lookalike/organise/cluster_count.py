"""How many groups a collection forms, or that it forms no clear ones: the eigengap of a neighbour graph.

The images are a graph (each joined to its NEIGHBOURS nearest by cosine); a collection of k well separated groups
has k eigenvalues of the graph's normalised Laplacian near 0 and a jump after them. The k before the largest jump is
the answer only if that jump is larger than any jump of the same vectors with their principal coordinates shuffled
independently (same spread, no groups): otherwise there is no clear k and the person is asked for one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

NEIGHBOURS = 20  # each image joined to its 20 nearest (a group smaller than this cannot show as one)
MIN_NEIGHBOURS = 5  # fewer in a small collection: half the images a group would hold at the largest k tried
SAMPLE = 1000  # images the graph is built from
COMPONENTS = 64  # principal components kept: the coordinates shuffled for the reference
REFERENCES = 19  # shuffled copies; the jump must beat the largest of every one (a permutation test at p = 0.05)

if TYPE_CHECKING:
    from scipy.sparse import csc_matrix, csr_matrix

Vectors = npt.NDArray[np.float32]


@dataclass
class GroupCount:
    """The k found (None: no clear k), each k's eigengap and the largest gap of the structureless reference."""

    k: int | None
    gaps: dict[int, float] = field(default_factory=dict)
    reference_gap: float = 0.0
    images: int = 0

    @property
    def strength(self) -> float:
        """The largest gap over the reference's largest (above 1: clearer than no groups at all)."""
        return max(self.gaps.values(), default=0.0) / self.reference_gap if self.reference_gap else 0.0

    def best(self) -> int:
        """The k with the largest gap, found or not."""
        return max(self.gaps, key=self.gaps.__getitem__)


def eigengaps(vectors: Vectors, k_range: tuple[int, int], neighbours: int = NEIGHBOURS) -> dict[int, float]:
    """Gap between the k-th and (k+1)-th smallest eigenvalue of the kNN graph's normalised Laplacian, per k."""
    from scipy.sparse.linalg import eigsh

    laplacian = _normalised_laplacian(_knn_graph(vectors, neighbours))
    values = np.sort(eigsh(laplacian, k=k_range[1] + 1, sigma=-0.01, which="LM", return_eigenvectors=False,
                           v0=np.ones(laplacian.shape[0])))  # the smallest, by shift-invert just below 0
    return {k: float(values[k] - values[k - 1]) for k in range(k_range[0], k_range[1] + 1)}


def count_groups(vectors: Vectors, k_range: tuple[int, int], seed: int = 0, sample: int = SAMPLE,
                 neighbours: int = NEIGHBOURS) -> GroupCount:
    """The k in k_range after the largest eigengap, or k None when shuffled coordinates show as large a gap."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(vectors), size=min(sample, len(vectors)), replace=False)
    coordinates = _principal_coordinates(np.asarray(vectors, dtype=np.float32)[rows])
    low, high = max(2, k_range[0]), min(k_range[1], len(rows) - 2)
    neighbours = min(neighbours, max(MIN_NEIGHBOURS, len(rows) // (2 * high)), len(rows) - 1)  # each group shows
    gaps = eigengaps(coordinates, (low, high), neighbours)
    reference = max(max(eigengaps(_shuffled(coordinates, rng), (low, high), neighbours).values())
                    for _ in range(REFERENCES))
    found = GroupCount(None, gaps, reference, len(rows))
    found.k = found.best() if found.strength > 1.0 else None
    return found


def _principal_coordinates(vectors: Vectors) -> Vectors:
    centred = vectors - vectors.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    return (centred @ axes[:COMPONENTS].T).astype(np.float32)


def _shuffled(coordinates: Vectors, rng: np.random.Generator) -> Vectors:
    """Each coordinate shuffled on its own: the same spread along each axis, no groups."""
    return np.column_stack([rng.permutation(column) for column in coordinates.T]).astype(np.float32)


def _knn_graph(coordinates: Vectors, neighbours: int) -> csr_matrix:
    """Symmetric 0/1 adjacency: i and j joined when either is among the other's nearest by cosine."""
    import faiss
    from scipy.sparse import csr_matrix

    unit = np.ascontiguousarray(coordinates / np.linalg.norm(coordinates, axis=1, keepdims=True), dtype=np.float32)
    index = faiss.IndexFlatIP(unit.shape[1])
    index.add(unit)
    _, nearest = index.search(unit, neighbours + 1)
    rows = np.repeat(np.arange(len(unit)), neighbours)
    adjacency = csr_matrix((np.ones(len(rows)), (rows, nearest[:, 1:].ravel())), shape=(len(unit), len(unit)))
    return adjacency.maximum(adjacency.T)


def _normalised_laplacian(adjacency: csr_matrix) -> csc_matrix:
    from scipy.sparse import diags, identity

    scale = diags(1.0 / np.sqrt(np.asarray(adjacency.sum(axis=1)).ravel()))
    return (identity(adjacency.shape[0]) - scale @ adjacency @ scale).tocsc()
