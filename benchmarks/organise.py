"""Organising a collection: classify-then-search, clustering and label propagation, and the time to cluster
100k vectors and to map 10k. (Duplicates: benchmarks/duplicates.py, which builds its edited-copy sets here.)

    flock /tmp/lookalike-bench.lock python -m benchmarks.organise [--only classify,cluster,speed]

Indexes are built once in benchmarks/out/ (git-ignored) and reused. Writes section "organise".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np

from benchmarks import collect
from lookalike.evaluation import read_labels, retrieval_scores
from lookalike.index import ImageIndex
from lookalike.organise.classifier import evaluate_dataset_by_class, train_classifier
from lookalike.organise.clustering import (
    Clustering,
    cluster_index,
    kmeans,
    nearest_clusters,
    propagate,
    representatives,
)
from lookalike.organise.duplicates import EDITS, make_edited_copy
from lookalike.organise.labels import import_labels
from lookalike.organise.mapping import embed_2d
from lookalike.settings import datasets_dir

OUT = Path(__file__).resolve().parent / "out"
RESULTS = OUT / "organise.json"  # parts measured so far, so one part can be re-run alone
THRESHOLDS = (0.85, 0.88, 0.90, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98)


def indexed(name: str, dataset: Path) -> ImageIndex:
    index = ImageIndex.open_or_create(OUT / f"{name}-index")
    if len(index) == 0:
        index.add_folder(dataset)
    return index


# --- classify-then-search on clothing -----------------------------------------------------------
def classify_part() -> dict:
    clothing = datasets_dir() / "clothing"
    with indexed("clothing", clothing) as index:
        started = time.perf_counter()
        report = train_classifier(index, clothing / "labels.csv")
        seconds = time.perf_counter() - started
        top1 = evaluate_dataset_by_class(index, clothing, "test", "train", by_class=1)
        top2 = evaluate_dataset_by_class(index, clothing, "test", "train", by_class=2)
    return {"accuracy": report.accuracy, "train": report.train_count, "test": report.test_count,
            "train_seconds": seconds, "top1": top1.to_dict(), "top2": top2.to_dict()}


# --- Corel-1K clustering and label propagation --------------------------------------------------
def cluster_part() -> dict:
    corel = datasets_dir() / "corel1k"
    with indexed("corel", corel) as index:
        import_labels(index, corel / "labels.csv")
        auto = cluster_index(index, k=None, out=OUT / "corel-clusters-auto", sheets=False)
        report = cluster_index(index, k=10, out=OUT / "corel-clusters")  # the one kept for propagation
        clustering = Clustering.load(index.folder)
        truth = index.label_values("label")
        propagation = {}
        for per_cluster in (1, 5):
            propagation[f"nearest_centroid_{per_cluster}"] = _propagation_accuracy(
                clustering, truth, lambda c, n=per_cluster: representatives(clustering, c, n))
            propagation[f"random_{per_cluster}"] = float(np.mean([_propagation_accuracy(
                clustering, truth, lambda c, n=per_cluster, s=seed: _random_members(clustering, c, n, s))
                for seed in range(5)]))
    return {"k10": report.to_dict(), "auto": {"k": auto.k, "purity": auto.purity, "nmi": auto.nmi,
                                             "criterion": auto.criterion},
            "propagation": propagation}


def by_cluster_part() -> dict:
    """Cluster-then-search on Corel-1K (queries vs gallery): mAP when only the nearest 1, 2 or 3 of
    the k=10 clusters are searched (the rest ranked after), against plain search."""
    corel = datasets_dir() / "corel1k"
    with indexed("corel", corel) as index:
        import_labels(index, corel / "labels.csv")
        cluster_index(index, k=10, sheets=False)
        clustering = Clustering.load(index.folder)
        labels, splits = index.label_values("label"), index.label_values("split")
        cluster_of = dict(zip(clustering.ids.tolist(), clustering.assignments.tolist(), strict=True))
        queries = sorted(i for i, s in splits.items() if s == "query")
        gallery = sorted(i for i, s in splits.items() if s == "gallery")
        similarity = index.vectors(queries) @ index.vectors(gallery).T
        query_labels, gallery_labels = np.array([labels[i] for i in queries]), np.array([labels[i] for i in gallery])
        gallery_clusters = np.array([cluster_of[i] for i in gallery])
        result = {"plain": retrieval_scores(similarity, query_labels, gallery_labels)}
        for probes in (1, 2, 3):
            chosen = [nearest_clusters(clustering.centroids, v, probes) for v in index.vectors(queries)]
            allowed = np.array([np.isin(gallery_clusters, c) for c in chosen])
            result[f"clusters_{probes}"] = retrieval_scores(similarity + 4.0 * allowed, query_labels, gallery_labels)
            result[f"searched_share_{probes}"] = float(allowed.mean())
    return result


def _random_members(clustering: Clustering, cluster: int, count: int, seed: int) -> list[int]:
    members = clustering.ids[clustering.assignments == cluster].tolist()
    return random.Random(seed * 1000 + cluster).sample(members, min(count, len(members)))


def _propagation_accuracy(clustering: Clustering, truth: dict[int, str], pick) -> float:
    human = {i: truth[i] for c in range(clustering.k) for i in pick(c)}
    labels, _ = propagate(clustering, human)
    scored = [i for i in clustering.ids.tolist() if i not in human]
    return float(np.mean([labels[i].label == truth[i] for i in scored]))


# --- near-duplicates on edited real photos ------------------------------------------------------
def build_duplicate_set(edited: int = 200, distinct: int = 800, seed: int = 0) -> tuple[Path, list[tuple[str, str]]]:
    """`edited` clothing photos each with one edited copy (edits in turn) plus `distinct` other photos."""
    folder = OUT / ("duplicates-set" if seed == 0 else f"duplicates-set-{seed}")
    truth_file = folder / "pairs.json"
    if truth_file.exists():
        return folder, [tuple(p) for p in json.loads(truth_file.read_text())]
    photos = sorted(i.path for i in read_labels(datasets_dir() / "clothing"))
    chosen = random.Random(seed).sample(photos, edited + distinct)
    pairs = []
    edits = list(EDITS)
    for n, source in enumerate(chosen):
        original = folder / "photos" / f"{n:04d}.jpg"
        make_edited_copy(source, original, "copy")
        if n < edited:
            edit = edits[n % len(edits)]
            copy = folder / "photos" / f"{n:04d}-{edit}.jpg"
            make_edited_copy(source, copy, edit)
            pairs.append((str(original), str(copy)))
    truth_file.write_text(json.dumps(pairs))
    return folder, pairs


# --- speed: 100k vectors clustered, 10k mapped --------------------------------------------------
def derived_vectors(count: int, noise: float = 0.35, seed: int = 0) -> np.ndarray:
    """Noisy copies of the real clothing embeddings (unit length): real structure, any size."""
    with indexed("clothing", datasets_dir() / "clothing") as index:
        _, real = index.vectors()
    rng = np.random.default_rng(seed)
    base = real[rng.integers(0, len(real), count)]
    noisy = base + rng.normal(0, noise / np.sqrt(real.shape[1]), base.shape).astype(np.float32)
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


def speed_part() -> dict:
    vectors = derived_vectors(100_000)
    result = {}
    for k in (100, 1000):
        started = time.perf_counter()
        kmeans(vectors, k)
        result[f"kmeans_100k_k{k}_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    embed_2d(vectors[:10_000])
    result["tsne_10k_seconds"] = time.perf_counter() - started
    result["dimension"] = int(vectors.shape[1])
    return result


# --- the section ----------------------------------------------------------------------------------
def section(results: dict) -> str:
    lines = ["## Organising: classify-then-search, clustering, label propagation", "",
             collect.machine_line() + " Other helpers' work was running on the same 2 cores.", "",
             "Script: `benchmarks/organise.py`. Model: efficientnet-lite0, cosine. Parts finished at: "
             + ", ".join(f"{part} {r.get('measured', '?')}" for part, r in results.items()) + ".", ""]
    if "classify" in results:
        c = results["classify"]
        lines += ["### Classify-then-search (clothing: train split = classifier training set and gallery, "
                  "test split = queries)", "",
                  f"Logistic regression on the stored vectors: test accuracy **{c['accuracy']:.4f}** "
                  f"({c['train']} training images, {c['test']} test images, trained in {c['train_seconds']:.0f} s).",
                  "", "| search | mAP | P@10 |", "| --- | ---: | ---: |",
                  f"| plain | {c['top1']['plain_map']:.4f} | {c['top1']['plain_p10']:.4f} |",
                  f"| classify-then-search (top class) | {c['top1']['class_map']:.4f} | "
                  f"{c['top1']['class_p10']:.4f} |",
                  f"| classify-then-search (top2 fallback, confidence 0.8) | {c['top2']['class_map']:.4f} | "
                  f"{c['top2']['class_p10']:.4f} |", "",
                  "The filtered search returns only gallery images of the predicted class(es); for mAP over the "
                  "whole gallery the other images are ranked after them. Relevance is the same label the gallery "
                  "is filtered by, so a correctly classified query scores AP = 1: the mAP gain mostly measures "
                  "the classifier's accuracy. With the top2 fallback a mixed result list is returned when the "
                  "classifier is unsure, which scores lower on this label-only mAP.", ""]
    if "cluster" in results:
        c = results["cluster"]
        k10, auto, prop = c["k10"], c["auto"], c["propagation"]
        lines += ["### Clustering and label propagation (Corel-1K, all 1,000 images)", "",
                  f"Spherical k-means (FAISS), k=10: purity **{k10['purity']:.4f}**, NMI **{k10['nmi']:.4f}**, "
                  f"sizes {k10['sizes']}.", "",
                  f"Automatic k ({auto['criterion']}; benchmarks/cluster_count.py): k={auto['k']}, "
                  f"purity {auto['purity']:.4f}, "
                  f"NMI {auto['nmi']:.4f}.", "",
                  "Label propagation (k=10; each cluster takes the majority of its labelled members; accuracy on "
                  "the images not labelled by hand):", "",
                  "| labelled per cluster | chosen as | accuracy |", "| ---: | --- | ---: |",
                  f"| 1 | nearest the centroid (first on the contact sheet) | {prop['nearest_centroid_1']:.4f} |",
                  f"| 1 | random member (mean of 5 draws) | {prop['random_1']:.4f} |",
                  f"| 5 | nearest the centroid | {prop['nearest_centroid_5']:.4f} |",
                  f"| 5 | random members (mean of 5 draws) | {prop['random_5']:.4f} |", ""]
    if "bycluster" in results:
        b = results["bycluster"]
        lines += ["### Cluster-then-search (Corel-1K, 100 queries vs 900 gallery, k=10 clusters of all 1,000)", "",
                  "The query is assigned to its nearest centroid(s); only images of those clusters are searched "
                  "(`search --by-cluster N`), the rest ranked after them for mAP.", "",
                  "| search | share of gallery searched | mAP | P@10 |", "| --- | ---: | ---: | ---: |",
                  f"| plain | 1.00 | {b['plain'][0]:.4f} | {b['plain'][1]:.4f} |"]
        lines += [f"| nearest {n} cluster{'s' if n > 1 else ''} | {b[f'searched_share_{n}']:.2f} | "
                  f"{b[f'clusters_{n}'][0]:.4f} | {b[f'clusters_{n}'][1]:.4f} |" for n in (1, 2, 3)]
        lines.append("")
    if "speed" in results:
        s = results["speed"]
        lines += ["### Speed", "",
                  f"- k-means of 100,000 vectors ({s['dimension']}-d, noisy copies of the 3,781 real clothing "
                  f"embeddings), 20 iterations: k=100 in **{s['kmeans_100k_k100_seconds']:.1f} s**, k=1000 in "
                  f"{s['kmeans_100k_k1000_seconds']:.1f} s (target < 60 s). FAISS trains on at most 256 points "
                  "per centroid, then assigns all.",
                  f"- t-SNE map of 10,000 such vectors (PCA to 50, then scikit-learn t-SNE): "
                  f"**{s['tsne_10k_seconds']:.0f} s**.", ""]
    return "\n".join(lines)


PARTS = {"classify": classify_part, "cluster": cluster_part, "bycluster": by_cluster_part,
         "speed": speed_part}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts: " + ", ".join(PARTS))
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for part in args.only.split(","):
        started = time.perf_counter()
        results[part] = PARTS[part]() | {"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        print(f"{part}: {time.perf_counter() - started:.0f} s", json.dumps(results[part], default=str)[:2000])
        RESULTS.write_text(json.dumps(results, indent=2, default=str))
    print(collect.write_section("organise", section(results)))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
