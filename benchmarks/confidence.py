"""When does an answer deserve a warning? The best match's score, and the classifier's confidence, of queries
from the collection's own domain (clothing test photos against the clothing index) and from another domain
(every Corel-1K photo against the same index): the floors the search page warns below (lookalike/web/confidence.py).

    flock /tmp/lookalike-bench.lock python -m benchmarks.confidence

The gallery is clothing's train and validation photos (3,409), indexed with the default model; each floor is
measured twice, with the default PCA 128 and without a reduction (pca=0), because PCA centres the vectors
and so moves every cosine. Writes section "confidence".
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from benchmarks import collect
from lookalike.evaluation import read_labels
from lookalike.index import ImageIndex
from lookalike.index.folder import IndexFolder
from lookalike.organise.classifier import load_classifier, train_classifier
from lookalike.settings import datasets_dir

OUT = Path(__file__).resolve().parent / "out"
IN_DOMAIN_KEPT = 0.95  # the floor leaves this share of in-domain queries unwarned (its 5th percentile)


def gallery_index(folder: Path, gallery: list[Path], pca: int | None) -> ImageIndex:
    index = ImageIndex.open(folder) if IndexFolder(folder).is_index() else ImageIndex.create(folder, pca=pca)
    if len(index) == 0:
        index.add_files(gallery)
    return index


def query_vectors(index: ImageIndex, photos: list[Path]) -> np.ndarray:
    """Full vectors of photos that are not in the index, embedded as a search would embed them."""
    return np.stack([index.searcher.embed_image(photo)[0] for photo in photos])


def best_scores(index: ImageIndex, vectors: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Each query's top-1 cosine and the label of that match."""
    scores, labels = [], []
    for vector in vectors:
        best = index.search(vector=vector, k=1).matches[0]
        scores.append(best.score)
        labels.append(best.labels.get("label", ""))
    return np.array(scores), labels


def full_cosine_of_best(index: ImageIndex, vectors: np.ndarray) -> np.ndarray:
    """The cosine of the full vectors of each query and its best match found through the reduction."""
    best = [index.search(vector=vector, k=1).matches[0].id for vector in vectors]
    found = index.vectors(best)
    return np.einsum("ij,ij->i", vectors, found) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(found, axis=1))


def share_in_pca(index: ImageIndex, vectors: np.ndarray) -> np.ndarray:
    """How much of each centred query vector the PCA keeps (1: all of it): low for photos unlike the collection."""
    reduction = index.reduction
    centred = vectors - reduction.mean
    return np.linalg.norm(centred @ reduction.components.T, axis=1) / np.linalg.norm(centred, axis=1)


def floor_report(in_domain: np.ndarray, out_of_domain: np.ndarray) -> dict:
    """The floor (in-domain 5th percentile) and how the two sets fall on either side of it."""
    floor = float(np.quantile(in_domain, 1 - IN_DOMAIN_KEPT))
    return {"floor": round(floor, 3), "in_domain_below": float(np.mean(in_domain < floor)),
            "out_of_domain_below": float(np.mean(out_of_domain < floor)),
            "in_domain_median": float(np.median(in_domain)), "out_of_domain_median": float(np.median(out_of_domain)),
            "out_of_domain_p95": float(np.quantile(out_of_domain, 0.95))}


def measure() -> dict:
    clothing, corel = datasets_dir() / "clothing", datasets_dir() / "corel1k"
    rows = read_labels(clothing)
    gallery = [row.path for row in rows if row.split in ("train", "validation")]
    queries = [row.path for row in rows if row.split == "test"]
    query_truth = [row.label for row in rows if row.split == "test"]
    foreign = [row.path for row in read_labels(corel)]
    labels_csv = OUT / "confidence-labels.csv"
    with open(labels_csv, "w", newline="") as handle:  # the dataset's CSV with absolute paths
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        writer.writerows([row.path.resolve(), row.label, row.split] for row in rows)
    results: dict = {"gallery": len(gallery), "in_domain_queries": len(queries), "out_of_domain_queries": len(foreign)}
    for variant, pca in (("pca128", None), ("full", 0)):
        with gallery_index(OUT / f"confidence-clothing-{variant}", gallery, pca) as index:
            train_classifier(index, labels_csv)
            started = time.perf_counter()
            mine, theirs = query_vectors(index, queries), query_vectors(index, foreign)
            embed_seconds = time.perf_counter() - started
            in_scores, in_labels = best_scores(index, mine)
            out_scores, _ = best_scores(index, theirs)
            classifier = load_classifier(index)
            in_confidence = classifier.probabilities(mine).max(axis=1)
            out_confidence = classifier.probabilities(theirs).max(axis=1)
            correct = np.array([found == truth for found, truth in zip(in_labels, query_truth, strict=True)])
            score = floor_report(in_scores, out_scores)
            below = in_scores < score["floor"]
            score["top1_correct_above"] = float(correct[~below].mean())
            score["top1_correct_below"] = float(correct[below].mean()) if below.any() else None
            results[variant] = {"reduction": index.info()["reduction"], "score": score,
                                "class_probability": floor_report(in_confidence, out_confidence),
                                "embed_seconds": embed_seconds}
            if index.reduction is not None:  # what a reduced index could report instead (not on the page yet)
                results[variant]["full_cosine_of_best"] = floor_report(full_cosine_of_best(index, mine),
                                                                       full_cosine_of_best(index, theirs))
                results[variant]["share_in_pca"] = floor_report(share_in_pca(index, mine), share_in_pca(index, theirs))
    return results


def section(results: dict) -> str:
    lines = ["## Low-confidence notes on the search page (benchmarks/confidence.py)", "",
             collect.machine_line(), "",
             f"Gallery: clothing train + validation ({results['gallery']:,} photos), model efficientnet-lite0. "
             f"In-domain queries: the {results['in_domain_queries']} clothing test photos (not indexed); "
             f"out-of-domain: all {results['out_of_domain_queries']:,} Corel-1K photos (beaches, buses, food, "
             "horses, ...) searched in the clothing index. The floor is the in-domain 5th percentile: 95% of "
             "real queries get no note.", "",
             "| index | measure | floor | in-domain median | out-of-domain median / p95 | in-domain below floor "
             "| out-of-domain below floor |",
             "|---|---|---|---|---|---|---|"]
    for variant in ("pca128", "full"):
        for measure_name, label in (("score", "best cosine"), ("class_probability", "classifier's top probability")):
            r = results[variant][measure_name]
            lines.append(f"| {variant} | {label} | {r['floor']:.3f} | {r['in_domain_median']:.3f} | "
                         f"{r['out_of_domain_median']:.3f} / {r['out_of_domain_p95']:.3f} | "
                         f"{r['in_domain_below']:.1%} | {r['out_of_domain_below']:.1%} |")
    for measure_name, label in (("full_cosine_of_best", "full-vector cosine of the best match"),
                                ("share_in_pca", "share of the centred query the PCA keeps")):
        r = results["pca128"][measure_name]
        lines.append(f"| pca128 (not shown yet) | {label} | {r['floor']:.3f} | {r['in_domain_median']:.3f} | "
                     f"{r['out_of_domain_median']:.3f} / {r['out_of_domain_p95']:.3f} | "
                     f"{r['in_domain_below']:.1%} | {r['out_of_domain_below']:.1%} |")
    for variant in ("pca128", "full"):
        s = results[variant]["score"]
        below = "n/a" if s["top1_correct_below"] is None else f"{s['top1_correct_below']:.1%}"
        lines.append("")
        lines.append(f"{variant}: the top match has the query's label for {s['top1_correct_above']:.1%} of "
                     f"in-domain queries above the score floor and {below} of those below it.")
    lines += ["", "These floors are what `lookalike/web/confidence.py` holds (for this model only; an index of "
              "another model gets the classifier note but no score note). A note is a hint, not a verdict: an "
              "out-of-domain photo scoring above the floor still looks like an answer."]
    return "\n".join(lines)


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    measured = measure()
    (OUT / "confidence.json").write_text(json.dumps(measured, indent=2))
    print(json.dumps(measured, indent=2))
    print(collect.write_section("confidence", section(measured)))
