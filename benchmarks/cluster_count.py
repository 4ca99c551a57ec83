"""The automatic number of clusters on two labelled collections: clothing (10 types, 3,781 photos) and Corel-1K
(10 categories, 1,000 photos), with the silhouette it replaced beside it.

    flock /tmp/lookalike-bench.lock python -m benchmarks.cluster_count

Indexes (default model) are built once in benchmarks/out/ (git-ignored) and reused. Writes section "cluster-count".
"""

from __future__ import annotations

import os
import time

import numpy as np

from benchmarks import collect
from benchmarks.organise import OUT, indexed
from lookalike.organise.cluster_count import NEIGHBOURS, REFERENCES, SAMPLE, count_groups
from lookalike.organise.clustering import AUTO_K_RANGE, cluster_quality, kmeans
from lookalike.settings import datasets_dir

SETS = {"clothing": "clothing", "corel1k": "corel1k"}  # index name in benchmarks/out: dataset folder
SEEDS = range(5)


def _truth(index, dataset: str) -> list[str]:
    """Each stored vector's label from the dataset's labels.csv, in the order of index.vectors()."""
    import csv

    root = datasets_dir() / dataset
    with open(root / "labels.csv", newline="") as handle:
        by_path = {os.path.realpath(root / row["path"]): row["label"] for row in csv.DictReader(handle)}
    paths = {record.id: os.path.realpath(record.path) for record in index.records()}
    ids, _ = index.vectors()
    return [by_path[paths[i]] for i in ids.tolist()]


def silhouette_k(vectors: np.ndarray, seed: int = 0) -> int:
    """The criterion before: best mean cosine silhouette of k-means for k in 2..20 on 2,000 vectors."""
    from sklearn.metrics import silhouette_score

    scores = {k: silhouette_score(vectors, kmeans(vectors, k, seed).assignments, metric="cosine", sample_size=2000,
                                  random_state=seed) for k in range(AUTO_K_RANGE[0], AUTO_K_RANGE[1] + 1)}
    return max(scores, key=scores.get)


def measure(name: str, dataset: str) -> dict:
    with indexed(name, datasets_dir() / dataset) as index:
        _, vectors = index.vectors()
        labels = _truth(index, dataset)
    runs = []
    for seed in SEEDS:
        started = time.perf_counter()
        found = count_groups(vectors, AUTO_K_RANGE, seed)
        runs.append({"seed": seed, "k": found.k, "best": found.best(), "strength": found.strength,
                     "seconds": time.perf_counter() - started})
    nmi = {k: cluster_quality(kmeans(vectors, k).assignments, labels)[1] for k in (runs[0]["best"], 10)}
    return {"images": len(vectors), "classes": len(set(labels)), "runs": runs, "nmi": nmi,
            "silhouette_k": silhouette_k(vectors)}


def section(results: dict) -> str:
    lines = ["## Automatic number of clusters (`lookalike cluster` without --k)", "",
             collect.machine_line() + " Other helpers' work was running on the same 2 cores.", "",
             "Script: `benchmarks/cluster_count.py`. Model: efficientnet-lite0 (the default), cosine. Criterion "
             f"(`lookalike/organise/cluster_count.py`): a sample of {SAMPLE} images, their 64 principal coordinates, "
             f"each joined to its {NEIGHBOURS} nearest; k is the one after the largest gap between the smallest "
             "eigenvalues of the graph's normalised Laplacian for k in 2..20, accepted only when that gap is larger "
             f"than the largest gap of each of {REFERENCES} copies with every coordinate shuffled on its own (same "
             "spread, no groups; a permutation test at p = 0.05); otherwise `cluster` exits 2 and asks for --k. "
             "Strength: the gap over the shuffled copies' largest (above 1: accepted).", "",
             "| collection | images | classes | k found (5 sample seeds) | largest gap after k | strength | seconds | "
             "NMI at that k | NMI at k=10 | best silhouette (before) |",
             "| --- | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for name, r in results.items():
        runs = r["runs"]
        found = ", ".join("none" if run["k"] is None else str(run["k"]) for run in runs)
        best = ", ".join(str(run["best"]) for run in runs)
        strength = f"{min(run['strength'] for run in runs):.2f}-{max(run['strength'] for run in runs):.2f}"
        seconds = float(np.median([run["seconds"] for run in runs]))
        best_k = runs[0]["best"]
        lines.append(f"| {name} | {r['images']:,} | {r['classes']} | {found} | {best} | {strength} | {seconds:.1f} | "
                     f"{r['nmi'][best_k]:.3f} | "
                     f"{r['nmi'][10]:.3f} | {r['silhouette_k']} |")
    lines += ["", "Corel-1K's ten categories show as ten clear groups; clothing's ten types do not: its largest jump "
              "(after 3 or 6: tops, trousers, shoes...) is smaller than shuffled vectors show, so `cluster` says so "
              "and asks for k instead of offering a guess (the miss of the brief's 8-12 on clothing, stated rather "
              "than tuned away). Criteria tried on both sets first (k found, Corel-1K / clothing): mean cosine "
              "silhouette of k-means on the 1,280-d vectors 10 / 3 (the one replaced), on 16-64 principal "
              "components 10 / 6; Calinski-Harabasz 7-10 / 2; Davies-Bouldin 10 / 3-5; eigengap alone (10 or 20 "
              "neighbours) 10 / 4-6; BIC of a Gaussian mixture on 8-32 principal components 7-20 / 5-20 (full or "
              "diagonal covariance; it follows the dimension chosen, not the data). None finds 8-12 on clothing "
              "without a setting chosen for it; the eigengap with its shuffled reference is the one that also "
              "says when it found nothing. Corel-1K passes by a small margin, and the acceptance depends on the graph: "
              "with 10 neighbours instead of 20, an exploratory run put Corel-1K's gap below its shuffled copies' "
              "too (0.47). The time is that of the count alone (20 eigenvalues of 20 graphs of 1,000 images).", ""]
    return "\n".join(lines)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    results = {}
    for name, dataset in SETS.items():
        started = time.perf_counter()
        results[name] = measure(name, dataset)
        print(f"{name}: {time.perf_counter() - started:.0f} s {results[name]}", flush=True)
    print(collect.write_section("cluster-count", section(results)))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
