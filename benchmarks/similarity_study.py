"""Similarity study on the clothing photos: pair correlations per method, and retrieval re-ranked
by the best learned method.

Run: flock /tmp/lookalike-bench.lock python -m benchmarks.similarity_study
The clothing index is built once in benchmarks/out/clothing-index (git-ignored) and reused.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks import collect
from lookalike.evaluation import evaluate_index, read_labels, retrieval_scores
from lookalike.index import ImageIndex
from lookalike.settings import datasets_dir
from lookalike.similarity.methods import METHODS, fit_method, make_method, score_matrix
from lookalike.similarity.pairs import PairSet
from lookalike.similarity.study import measure, run_study
from lookalike.similarity.trained import DEFAULT_CANDIDATES, save_method

OUT = collect.HERE / "out"
TARGET_PEARSON = 0.85
TARGET_MAP = 0.75
IMAGE_WISE = ("projection", "agreement")  # methods search scores over the whole index


def clothing_index(dataset: Path) -> ImageIndex:
    index = ImageIndex.open_or_create(OUT / "clothing-index")
    report = index.add_folder(dataset)
    print(f"index: {len(index)} images ({report.added} newly embedded)")
    return index


def split_vectors(index: ImageIndex, dataset: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    ids = index.ids_by_path()
    rows = [row for row in read_labels(dataset) if row.split == split]
    vectors = index.vectors([ids[os.path.abspath(row.path)] for row in rows])
    return vectors, np.array([row.label for row in rows])


def search_path_map(learned, queries, query_labels, gallery, gallery_labels, candidates: int) -> float:
    """mAP of what `search --method` does: the top candidates by cosine re-ranked, the rest left in cosine order."""
    cosine = queries @ gallery.T
    combined = cosine - 10.0  # below every probability
    top = np.argsort(-cosine, axis=1, kind="stable")[:, :candidates]
    rows = np.arange(len(queries))[:, None]
    combined[rows, top] = learned[rows, top]
    return retrieval_scores(combined, query_labels, gallery_labels)[0]


def main() -> None:
    dataset = Path(os.path.abspath(datasets_dir() / "clothing"))
    index = clothing_index(dataset)

    # 1. the pair study: image-disjoint train/eval pairs over all 3,781 photos
    pair_set = PairSet.build(dataset, "label", index, seed=0)
    study = run_study(pair_set, METHODS)
    print(study.to_text())
    files = study.write(OUT / "similarity-study")
    collect.SECTIONS.mkdir(exist_ok=True)
    shutil.copy(files["plot"], collect.SECTIONS / "similarity_study.png")
    best = study.best_learned()
    described = pair_set.describe()

    # 2. retrieval: test queries vs train gallery; learned methods trained on train-split images only
    queries, query_labels = split_vectors(index, dataset, "test")
    gallery, gallery_labels = split_vectors(index, dataset, "train")
    cosine = evaluate_index(index, dataset, "test", "train")
    train_pairs = PairSet.build(dataset, "label", index, seed=0, split="train", eval_fraction=0.2)
    retrieval = []
    for name in dict.fromkeys([best.method, "projection", "logreg"]):
        method = fit_method(make_method(name), train_pairs.training_data())
        held_out = measure(name, True, method.score(*train_pairs.vectors_of(train_pairs.eval)), train_pairs.eval.same)
        started = time.perf_counter()
        learned = score_matrix(method, queries, gallery)
        full_seconds = time.perf_counter() - started
        full = retrieval_scores(learned, query_labels, gallery_labels)
        reranked = [search_path_map(learned, queries, query_labels, gallery, gallery_labels, candidates)
                    for candidates in (DEFAULT_CANDIDATES, 1000)]
        retrieval.append((name, held_out.pearson, full[0], full[1], *reranked, full_seconds / len(queries) * 1e3))
        print(retrieval[-1])
        if name == best.method:
            save_method(index, method, {"pairs": train_pairs.describe() | {"split": "train"}}, name=f"{name}-train")
            search_ms = time_search(index, f"{name}-train", queries[:50])
    index.close()
    write(study, described, best, cosine, retrieval, search_ms)


def time_search(index: ImageIndex, name: str, queries: np.ndarray) -> float:
    index.search(vector=queries[0], method=name)  # load the model once
    started = time.perf_counter()
    for vector in queries:
        index.search(vector=vector, k=10, method=name)
    return (time.perf_counter() - started) / len(queries) * 1e3


def write(study, described, best, cosine, retrieval, search_ms) -> None:
    chosen = next(r for r in retrieval if r[0] == best.method)
    lines = [
        "## Similarity methods: pair-correlation study and learned re-ranking (clothing)", "",
        collect.machine_line() + " Other helpers' work was running on the same 2 cores.", "",
        "Written by `benchmarks/similarity_study.py`. Model efficientnet-lite0 (1280-d), attribute `label` "
        "(10 clothing types), all 3,781 photos of `clothing`.", "",
        f"### Pair study (`lookalike study pairs`): {described['train_pairs']} training pairs from "
        f"{described['train_images']} images, {described['eval_pairs']} held-out pairs from "
        f"{described['eval_images']} other images (image-disjoint: {described['image_disjoint']}), "
        "balanced, seed 0", "",
        study.to_markdown(), "",
        "Accuracy is at the best threshold chosen on the held-out pairs (an upper bound for a fixed threshold). "
        "`logreg`, `forest`: classifiers on the symmetric pair features |a-b| and a*b "
        "(logreg standardised, C=0.01). `projection`: cosine after an LDA projection learned from the training "
        "images' labels, Platt-calibrated. `agreement`: sum_c p(c|a) p(c|b) from a standardised logistic "
        "regression on the training images' labels, Platt-calibrated on out-of-fold probabilities.", "",
        f"Best learned method: **{best.method}**, held-out Pearson **{best.pearson:.3f}** "
        f"(target >= {TARGET_PEARSON}: {'met' if best.pearson >= TARGET_PEARSON else 'NOT met'}). "
        "References from a simpler protocol (pairs split 70/30, images recurring across the split): "
        "cosine 0.54, Euclidean 0.45, logreg 0.60, forest 0.68.", "",
        "![score distributions](results/similarity_study.png)", "",
        "### Retrieval: test queries vs train gallery, learned methods trained on train-split images only", "",
        f"Cosine baseline: mAP {cosine.mean_average_precision:.3f}, P@10 {cosine.precision_at_10:.3f} "
        f"({cosine.queries} queries, {cosine.gallery} gallery).", "",
        "| method | Pearson on held-out train-split pairs | mAP, every gallery image re-scored | P@10 | "
        f"mAP, top {DEFAULT_CANDIDATES} by cosine re-ranked | mAP, top 1000 re-ranked | scoring ms/query "
        "(whole gallery) | `search --method` does |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {p:.3f} | {m:.3f} | {p10:.3f} | {r300:.3f} | {r1000:.3f} | {ms:.1f} | "
              f"{'every image' if n in IMAGE_WISE else f'top {DEFAULT_CANDIDATES}'} |"
              for n, p, m, p10, r300, r1000, ms in retrieval]
    name, _, full_map, _, top_map = chosen[:5]
    searched = full_map if name in IMAGE_WISE else top_map
    lines += ["", f"Target mAP >= {TARGET_MAP} with the best method, {name}: "
              f"{'met' if searched >= TARGET_MAP else 'NOT met'} ({searched:.3f}, as `search --method {name}` "
              f"ranks). `projection` and `agreement` embed each image on its own, so search scores every indexed "
              f"image; re-ranking only the top {DEFAULT_CANDIDATES} cosine candidates would give {top_map:.3f}, "
              f"because mAP ranks all {cosine.gallery} gallery images and the larger types (up to 795 t-shirts) do "
              "not fit in the candidates (the rest stay in cosine order). The pair classifiers (logreg, forest) "
              f"re-rank the top {DEFAULT_CANDIDATES}. `search --method {name}-train` on the whole clothing index "
              f"({cosine.queries} + {cosine.gallery} + validation images) takes {search_ms:.1f} ms per query."]
    print(collect.write_section("similarity", "\n".join(lines)))


if __name__ == "__main__":
    main()
