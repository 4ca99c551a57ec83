"""Synthetic image vectors with the structure of real ones, for benchmarks at millions of images.

Real embeddings of the shared datasets (clothing + Corel-1K) are computed once and cached in
benchmarks/out/. A Gaussian mixture is fitted to their top principal components; the remaining
components are sampled with the real per-component variances; samples are projected back and
normalised. The result has the real spectrum and real cluster structure (never uniform random,
which makes every approximate index look broken). Vectors are written to a float32 memory-mapped
file in shards, so generating 1M x 1280 never holds more than one shard in RAM.

    /work/main/.venv/bin/python -m benchmarks.synthetic 1000000
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from tqdm import tqdm

from benchmarks import collect
from lookalike.embedders import get_embedder
from lookalike.files import walk_images
from lookalike.ingest import embed_files
from lookalike.settings import datasets_dir

OUT = Path(__file__).resolve().parent / "out"
MIXTURE_DIMENSIONS = 64
MIXTURE_COMPONENTS = 32
SHARD = 50_000


def real_embeddings() -> np.ndarray:
    """Embeddings of every photo in the shared clothing and Corel-1K datasets (cached)."""
    cache = OUT / "real-embeddings.npy"
    if cache.exists():
        return np.load(cache)
    embedder = get_embedder()
    paths = [p for name in ("clothing", "corel1k") for p in walk_images(datasets_dir() / name)]
    chunks = []
    with tqdm(total=len(paths), desc="embedding real photos", unit="img") as bar:
        for batch in embed_files(embedder, paths):
            chunks.append(batch.vectors)
            bar.update(len(batch.images) + len(batch.failures))
    vectors = np.concatenate(chunks).astype(np.float32)
    OUT.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


class Generator:
    """A Gaussian mixture on the top principal components plus real-variance residual components."""

    def __init__(self, real: np.ndarray, seed: int = 0):
        self.pca = PCA(random_state=seed).fit(real)
        top = self.pca.transform(real)[:, :MIXTURE_DIMENSIONS]
        self.mixture = GaussianMixture(MIXTURE_COMPONENTS, covariance_type="full", reg_covar=1e-4,
                                       random_state=seed).fit(top)
        self.residual_std = np.sqrt(self.pca.explained_variance_[MIXTURE_DIMENSIONS:]).astype(np.float32)

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        self.mixture.random_state = int(rng.integers(2**31))
        top, _ = self.mixture.sample(count)
        rest = rng.standard_normal((count, len(self.residual_std)), dtype=np.float32) * self.residual_std
        coordinates = np.hstack([top.astype(np.float32), rest])
        components = self.pca.components_[: coordinates.shape[1]].astype(np.float32)
        vectors = coordinates @ components + self.pca.mean_.astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors[rng.permutation(count)]  # mixture.sample returns vectors grouped by component


def synthetic_vectors(count: int, seed: int = 0) -> np.memmap:
    """`count` synthetic vectors as a read-only float32 memory map (generated once, in shards)."""
    real = real_embeddings()
    path = OUT / f"synthetic-{count}-seed{seed}.f32"
    shape = (count, real.shape[1])
    if not path.exists():
        generator = Generator(real, seed)
        rng = np.random.default_rng(seed)
        partial = path.with_suffix(".partial")
        out = np.memmap(partial, dtype=np.float32, mode="w+", shape=shape)  # raw: the shape is in the name
        for start in tqdm(range(0, count, SHARD), desc=f"generating {count} vectors", unit="shard"):
            stop = min(count, start + SHARD)
            out[start:stop] = generator.sample(stop - start, rng)
        out.flush()
        del out
        partial.replace(path)
    return np.memmap(path, dtype=np.float32, mode="r", shape=shape)


def neighbour_profile(vectors: np.ndarray, probes: int = 500, seed: int = 0) -> dict[str, float]:
    """Median cosine of a vector to its 1st, 10th and 100th nearest neighbour, and to a random one.
    The closer the neighbours are to the crowd, the harder approximate search is."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    picked = np.random.default_rng(seed).choice(len(vectors), min(probes, len(vectors)), replace=False)
    scores = vectors[picked] @ vectors.T
    scores[np.arange(len(picked)), picked] = -np.inf  # not its own neighbour
    ranked = -np.sort(-scores, axis=1)
    others = np.random.default_rng(seed + 1).integers(0, len(vectors), len(picked))
    return {"1st": float(np.median(ranked[:, 0])), "10th": float(np.median(ranked[:, 9])),
            "100th": float(np.median(ranked[:, 99])),
            "random": float(np.median(np.einsum("ij,ij->i", vectors[picked], vectors[others])))}


def realism_section() -> str:
    """Markdown comparing the neighbour profile of real and synthetic vectors at the same size."""
    real = real_embeddings()
    synthetic = np.asarray(synthetic_vectors(1_000_000)[: len(real)])
    rows = [("real embeddings (clothing + Corel-1K)", neighbour_profile(real)),
            ("synthetic, same count", neighbour_profile(synthetic))]
    lines = ["## Synthetic vectors: how they compare with real ones", "", collect.machine_line(), "",
             "Written by `benchmarks/synthetic.py --profile`. Median cosine of a vector to its k-th nearest "
             f"neighbour among {len(real):,} vectors (500 probes). The smaller the gap between the 1st/10th "
             "neighbour and a random vector, the harder approximate search is.", "",
             "| vectors | 1st | 10th | 100th | random |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {p['1st']:.3f} | {p['10th']:.3f} | {p['100th']:.3f} | {p['random']:.3f} |"
              for name, p in rows]
    real_gap, synthetic_gap = rows[0][1]["1st"] - rows[0][1]["random"], rows[1][1]["1st"] - rows[1][1]["random"]
    lines += ["", f"- The synthetic vectors' nearest neighbours stand out {synthetic_gap / real_gap:.0%} as far from "
              "a random vector as real ones do: the mixture has the real spectrum and cluster structure but not "
              "the fine structure (near-copies, sub-categories) of real photos, so recall measured on them is "
              "pessimistic rather than flattering."]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--profile"]:
        section = realism_section()
        print(section)
        collect.write_section("synthetic", section)
    else:
        for size in sys.argv[1:] or ["100000"]:
            print(size, synthetic_vectors(int(size)).shape)
