"""PCA reduction of an index's vectors: fitted on the indexed vectors (or a sample of them),
stored beside the index as pca.npz, applied to everything the index searches.

The SQLite store keeps the full vectors (so refitting never re-embeds); the searchable copy
and the queries go through `PcaReduction.apply`, which re-normalises, so inner products stay
cosines. Whitening equalises the variance of every component: it can help when fitted on many
images and hurts badly when fitted on few (see benchmarks/results/models.md).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.embedders.base import Matrix, l2_normalise

FILE = "pca.npz"
# `lookalike index` fits this PCA on a new index of at least this many images (benchmarks/results/models.md:
# PCA 128 fitted without labels beat the full vectors on Corel-1K and clothing); --pca 0 opts out.
DEFAULT_COMPONENTS = 128
DEFAULT_MIN_IMAGES = 1000
DEFAULT_MAX_SAMPLE = 20000  # the default PCA is fitted on at most this many indexed vectors
MAX_FIT_SAMPLE = 200_000  # any PCA unless a larger sample is asked for: 1 GB of 1,280-d float32 at most


@dataclass(frozen=True)
class PcaReduction:
    mean: Matrix  # (d,)
    components: Matrix  # (k, d)
    scale: Matrix  # (k,): 1/sqrt(variance) when whitening, else ones
    whiten: bool
    fitted_on: int

    @property
    def dimension(self) -> int:
        return int(self.components.shape[0])

    def apply(self, vectors: Matrix) -> Matrix:
        """Project onto the components (and whiten), then L2-normalise."""
        projected = (np.asarray(vectors, dtype=np.float32) - self.mean) @ self.components.T
        return l2_normalise(projected * self.scale)

    def describe(self) -> dict[str, Any]:
        digest = hashlib.sha256(self.components.tobytes() + self.scale.tobytes()).hexdigest()[:12]
        return {"method": "pca", "components": self.dimension, "whiten": self.whiten, "fitted_on": self.fitted_on,
                "input_dimension": int(self.components.shape[1]), "digest": digest}

    def save(self, folder: Path) -> None:
        partial = Path(folder) / (FILE + ".partial.npz")
        np.savez(partial, mean=self.mean, components=self.components, scale=self.scale,
                 whiten=np.array(self.whiten), fitted_on=np.array(self.fitted_on))
        os.replace(partial, Path(folder) / FILE)


def fit_pca(vectors: Matrix, components: int, whiten: bool = False) -> PcaReduction:
    """PCA with scikit-learn; asking for more components than images or dimensions is an error."""
    from sklearn.decomposition import PCA

    count, dimension = vectors.shape
    if components < 1:
        raise ValueError("PCA needs at least 1 component")
    if components > min(count, dimension):
        raise ValueError(f"PCA to {components} components needs at least {components} vectors of at least "
                         f"{components} dimensions; there are {count} of {dimension}")
    pca = PCA(n_components=components, svd_solver="full", random_state=0).fit(vectors)
    scale = 1.0 / np.sqrt(np.maximum(pca.explained_variance_, 1e-12)) if whiten else np.ones(components)
    return PcaReduction(pca.mean_.astype(np.float32), pca.components_.astype(np.float32),
                        scale.astype(np.float32), whiten, count)


def load_reduction(folder: Path) -> PcaReduction | None:
    """The index's PCA, or None when it has none."""
    path = Path(folder) / FILE
    if not path.exists():
        return None
    with np.load(path) as saved:
        return PcaReduction(saved["mean"], saved["components"], saved["scale"], bool(saved["whiten"]),
                            int(saved["fitted_on"]))


def remove_reduction(folder: Path) -> None:
    (Path(folder) / FILE).unlink(missing_ok=True)
