"""PCA reduction of an index's vectors: fitted on the indexed vectors (or a sample of them),
stored in the index folder (lookalike.index.folder names the file), applied to everything the index searches.

The SQLite store keeps the full vectors (so refitting never re-embeds); the searchable copy
and the queries go through `PcaReduction.apply`, which re-normalises, so inner products stay
cosines. Whitening equalises the variance of every component: it can help when fitted on many
images and hurts badly when fitted on few (see benchmarks/results/models.md).
"""

from __future__ import annotations

import functools
import hashlib
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.embedders.base import Matrix, l2_normalise
from lookalike.errors import RequestError
from lookalike.faults import disk_full_reported

# Every index gets this PCA once it first holds this many images, whichever way it was built or grown
# (benchmarks/results/models.md: PCA 128 fitted without labels beat the full vectors on Corel-1K and
# clothing). It is fitted once, when the index crosses the threshold, and not refitted as the index grows
# (refitting re-projects every vector; `lookalike pca` refits on demand); pca=0 opts out.
DEFAULT_COMPONENTS = 128
DEFAULT_MIN_IMAGES = 1000
DEFAULT_MAX_SAMPLE = 20000  # the default PCA is fitted on at most this many indexed vectors
DEFAULT_PLAN = {"components": DEFAULT_COMPONENTS, "whiten": False, "sample": DEFAULT_MAX_SAMPLE,
                "min_images": DEFAULT_MIN_IMAGES}
MAX_FIT_SAMPLE = 200_000  # any PCA unless a larger sample is asked for: 1 GB of 1,280-d float32 at most
DIGEST_PREFIX = "sha256:"  # a manifest's digest of the whole file; older manifests hold 12 hex digits of part of it


SMALL_BATCH = 1024  # up to this many vectors are projected on one BLAS thread


@contextmanager
def one_blas_thread(wanted: bool = True) -> Iterator[None]:
    """BLAS on one thread while the block runs (when `wanted`); a no-op otherwise."""
    if not wanted:
        yield
        return
    with _blas().limit(limits=1, user_api="blas"):
        yield


@functools.cache
def _blas() -> Any:
    from threadpoolctl import ThreadpoolController  # scans the loaded BLAS libraries once

    return ThreadpoolController()


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
        """Project onto the components (and whiten), then L2-normalise. A search's few vectors are projected on one
        BLAS thread: two threads spinning against other work on a busy 2-core machine took 21 ms for 100 vectors
        (1.5 ms on one)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        with one_blas_thread(1 < len(vectors) <= SMALL_BATCH):  # one vector: a product on one thread anyway
            projected = (vectors - self.mean) @ self.components.T
        return l2_normalise(projected * self.scale)

    def describe(self) -> dict[str, Any]:
        return {"method": "pca", "components": self.dimension, "whiten": self.whiten, "fitted_on": self.fitted_on,
                "input_dimension": int(self.components.shape[1]), "digest": self.digest()}

    def digest(self) -> str:
        """Of everything the file holds (mean, components, scale, whiten, fitted_on): any change shows."""
        content = hashlib.sha256()
        for array in (self.mean, self.components, self.scale):
            content.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
        content.update(f"{self.whiten}:{self.fitted_on}".encode())
        return f"{DIGEST_PREFIX}{content.hexdigest()[:16]}"

    def is_recorded_as(self, digest: str) -> bool:
        """Whether this is the reduction a manifest recorded. A manifest written before the digest covered the
        whole file holds a digest of components and scale alone: it is still accepted (the shapes were checked
        when loading), so indexes written by older releases open."""
        if digest.startswith(DIGEST_PREFIX):
            return digest == self.digest()
        return digest == hashlib.sha256(self.components.tobytes() + self.scale.tobytes()).hexdigest()[:12]

    def save(self, path: Path) -> None:
        """Write to `path` atomically."""
        partial = Path(path).with_name(Path(path).name + ".partial.npz")
        with disk_full_reported(partial.parent):
            np.savez(partial, mean=self.mean, components=self.components, scale=self.scale,
                     whiten=np.array(self.whiten), fitted_on=np.array(self.fitted_on))
        os.replace(partial, path)


def fit_pca(vectors: Matrix, components: int, whiten: bool = False) -> PcaReduction:
    """PCA with scikit-learn; asking for more components than images or dimensions is an error."""
    from sklearn.decomposition import PCA

    count, dimension = vectors.shape
    if components < 1:
        raise RequestError("PCA needs at least 1 component")
    if components > min(count, dimension):
        raise RequestError(f"PCA to {components} components needs at least {components} vectors of at least "
                         f"{components} dimensions; there are {count} of {dimension}")
    pca = PCA(n_components=components, svd_solver="full", random_state=0).fit(vectors)
    scale = 1.0 / np.sqrt(np.maximum(pca.explained_variance_, 1e-12)) if whiten else np.ones(components)
    return PcaReduction(pca.mean_.astype(np.float32), pca.components_.astype(np.float32),
                        scale.astype(np.float32), whiten, count)


class ReductionFileError(ValueError):
    """A reduction file that cannot be used: not an .npz archive, missing arrays, or arrays of the wrong shape."""


def load_reduction(path: Path) -> PcaReduction | None:
    """The PCA saved at `path`, or None when there is none; ReductionFileError saying what is wrong with a
    damaged one (the index fits it again from its full vectors)."""
    path = Path(path)
    if not path.exists():
        return None
    if not zipfile.is_zipfile(path):
        raise ReductionFileError(f"{path} is damaged: it is not an .npz archive")
    try:
        with np.load(path) as saved:
            reduction = PcaReduction(saved["mean"], saved["components"], saved["scale"], bool(saved["whiten"]),
                                     int(saved["fitted_on"]))
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, TypeError, OSError) as error:
        raise ReductionFileError(f"{path} is damaged ({type(error).__name__}: {error})") from None
    problem = _shape_problem(reduction)
    if problem:
        raise ReductionFileError(f"{path} is damaged: {problem}")
    return reduction


def _shape_problem(reduction: PcaReduction) -> str | None:
    components, mean, scale = reduction.components, reduction.mean, reduction.scale
    if components.ndim != 2 or components.shape[0] < 1:
        return f"its components are an array of shape {components.shape}, not (components, dimension)"
    if mean.shape != (components.shape[1],):
        return f"its mean has shape {mean.shape}, the components need ({components.shape[1]},)"
    if scale.shape != (components.shape[0],):
        return f"its scale has shape {scale.shape}, the components need ({components.shape[0]},)"
    if not all(np.isfinite(a).all() for a in (components, mean, scale)):
        return "it holds values that are not finite numbers"
    return None


def remove_reduction(path: Path) -> None:
    Path(path).unlink(missing_ok=True)


def plan_reduction(pca: int | None, whiten: bool = False, sample: int | None = None) -> dict[str, Any] | None:
    """When and how an index is reduced: None keeps full vectors (pca=0); the default plan for pca=None;
    PCA to N (fitted as soon as the index holds N images) for pca=N."""
    if pca is None:
        if whiten:
            raise RequestError("whiten needs pca=N (the number of components)")
        return dict(DEFAULT_PLAN, sample=sample or DEFAULT_MAX_SAMPLE)
    if pca < 0:
        raise RequestError(f"pca must be 0 (no reduction) or a number of components, not {pca}")
    if pca == 0:
        return None
    return {"components": pca, "whiten": whiten, "sample": sample or MAX_FIT_SAMPLE, "min_images": pca}


def planned_dimension(plan: dict[str, Any] | None, dimension: int) -> int:
    """The dimension an index with this reduction plan searches in once the PCA is fitted (the vector index is
    planned for it, not for the model's output)."""
    return min(int(plan["components"]), dimension) if plan else dimension


def describe_text(reduction: dict[str, Any] | None) -> str:
    """A manifest's reduction in a few words."""
    if not reduction:
        return "none"
    whiten = ", whitened" if reduction["whiten"] else ""
    size = f"{reduction['input_dimension']} -> {reduction['components']}"
    return f"pca {size}{whiten} (fitted on {reduction['fitted_on']})"
