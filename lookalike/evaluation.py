"""Retrieval quality on a labelled folder: mean average precision and precision@k.

A labelled folder has a `labels.csv` with `path,label[,split]` (paths relative to the folder).
Queries come from one split and are ranked against another; without splits, every image
queries all the others. Rankings go through the search pipeline's own stages (the index's augmented
vectors, then the query expansion asked for), so the scores are those of `search`. The few-match mode
(`matches=r`) cuts each query's class in the gallery to r images, as when a query is one product with
a handful of photos: expansion that helps categories can hurt there, and this shows it.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.expansion import Expansion, diffusion_scores, expanded_queries
from lookalike.index import ImageIndex
from lookalike.index.augmentation import AugmentationPlan, augment_all
from lookalike.search import SearchOptions

SPLIT_PAIRS = (("query", "gallery"), ("queries", "gallery"), ("test", "train"))


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: str
    split: str


@dataclass(frozen=True)
class RetrievalScores:
    mean_average_precision: float
    precision_at_10: float
    queries: int
    gallery: int
    query_split: str
    gallery_split: str
    expand: str = "none"
    matches: int | None = None  # the few-match mode's r, None for the whole gallery
    ms_per_query: float | None = None  # median time of one `search` with these options on this index

    def to_dict(self) -> dict[str, Any]:
        return {"mAP": round(self.mean_average_precision, 4), "P@10": round(self.precision_at_10, 4),
                "queries": self.queries, "gallery": self.gallery,
                "query_split": self.query_split, "gallery_split": self.gallery_split,
                "expand": self.expand, "matches": self.matches,
                "ms_per_query": None if self.ms_per_query is None else round(self.ms_per_query, 3)}


def read_labels(folder: str | os.PathLike[str], attribute: str = "label") -> list[LabelledImage]:
    """Rows of a folder's labels.csv; a missing file or column is a clear error."""
    folder = Path(folder)
    labels_file = folder / "labels.csv"
    if not labels_file.exists():
        raise FileNotFoundError(f"{folder} has no labels.csv (columns: path,{attribute}[,split])")
    with open(labels_file, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "path" not in columns or attribute not in columns:
            raise ValueError(f"{labels_file} needs columns 'path' and {attribute!r}; it has {', '.join(columns)}")
        rows = [LabelledImage(folder / row["path"], row[attribute].strip(), (row.get("split") or "").strip())
                for row in reader if row[attribute] and row[attribute].strip()]
    return rows


def default_splits(images: list[LabelledImage]) -> tuple[str, str]:
    splits = {image.split for image in images}
    for query_split, gallery_split in SPLIT_PAIRS:
        if {query_split, gallery_split} <= splits:
            return query_split, gallery_split
    return "", ""


def average_precision(relevant_in_rank_order: npt.NDArray[np.bool_]) -> float:
    """AP of one ranked list: mean of precision at each relevant position."""
    hits = np.flatnonzero(relevant_in_rank_order)
    if len(hits) == 0:
        return 0.0
    return float(np.mean(np.arange(1, len(hits) + 1) / (hits + 1)))


def retrieval_scores(similarity: npt.NDArray[np.float32], query_labels: npt.NDArray[Any],
                     gallery_labels: npt.NDArray[Any], k: int = 10) -> tuple[float, float]:
    """mAP over full rankings and mean precision@k, from a query x gallery similarity matrix."""
    order = np.argsort(-similarity, axis=1, kind="stable")
    relevant = gallery_labels[order] == query_labels[:, None]
    aps = [average_precision(row) for row in relevant]
    return float(np.mean(aps)), float(relevant[:, :k].mean())


def evaluate_index(index: ImageIndex, dataset: str | os.PathLike[str], query_split: str | None = None,
                   gallery_split: str | None = None, attribute: str = "label", similarity: Any = None,
                   expand: str | None = None, expand_neighbours: int | None = None,
                   expand_alpha: float | None = None, matches: int | None = None, seed: int = 0) -> RetrievalScores:
    """Score an index (which must hold the dataset's images) on the dataset's labels, searching as `search`
    does with the same expand options; `matches` is the few-match mode (each query's class cut to r
    gallery images, chosen with `seed`). `similarity` (a learned model) ranks instead of the pipeline."""
    options = SearchOptions.of(expand=expand, expand_neighbours=expand_neighbours, expand_alpha=expand_alpha)
    images = read_labels(dataset, attribute)
    if query_split is None or gallery_split is None:
        query_split, gallery_split = default_splits(images)
    ids_by_path = index.ids_by_path()
    present = [image for image in images if os.path.abspath(image.path) in ids_by_path]
    if not present:
        raise ValueError(f"none of the images in {dataset}/labels.csv are in the index {index.folder}")
    queries = [i for i in present if i.split == query_split] if query_split else present
    gallery = [i for i in present if i.split == gallery_split] if gallery_split else present
    if not queries or not gallery:
        raise ValueError(f"no images in split {query_split!r} or {gallery_split!r}")
    query_ids = [ids_by_path[os.path.abspath(i.path)] for i in queries]
    gallery_ids = [ids_by_path[os.path.abspath(i.path)] for i in gallery]
    query_labels, gallery_labels = np.array([i.label for i in queries]), np.array([i.label for i in gallery])
    expansion = options.expansion if similarity is None else Expansion.of("none")
    if matches is not None:
        mean_ap, p10 = _few_match_scores(index, query_ids, gallery_ids, query_labels, gallery_labels,
                                         expansion, matches, seed, leave_one_out=not query_split)
    else:
        scores = _similarity(index, query_ids, gallery_ids, similarity, expansion, leave_one_out=not query_split)
        mean_ap, p10 = retrieval_scores(scores, query_labels, gallery_labels)
    timing = None if similarity is not None else _ms_per_query(index, query_ids, options)
    return RetrievalScores(mean_ap, p10, len(queries), len(gallery), query_split, gallery_split,
                           expansion.method, matches, timing)


def _similarity(index: ImageIndex, query_ids: list[int], gallery_ids: list[int], similarity: Any,
                expansion: Expansion, leave_one_out: bool) -> np.ndarray:
    query_vectors = index.searchable_vectors(query_ids)
    if similarity is not None:
        return similarity(query_vectors, index.searchable_vectors(gallery_ids))
    return pipeline_scores(query_vectors, index.indexed_vectors(gallery_ids), expansion,
                           np.equal.outer(query_ids, gallery_ids) if leave_one_out else None)


def pipeline_scores(queries: np.ndarray, gallery: np.ndarray, expansion: Expansion,
                    hidden: npt.NDArray[np.bool_] | None = None) -> np.ndarray:
    """Every query's scores over the whole gallery as `search` ranks it: inner products with the gallery
    as the index holds it, re-ranked by the expansion. `hidden` pairs (a query itself) are never found."""
    scores = queries @ gallery.T
    if hidden is not None:
        scores[hidden] = -np.inf
    if expansion.blends:
        count = min(expansion.neighbours, gallery.shape[0])
        top = np.argsort(-scores, axis=1, kind="stable")[:, :count]
        expanded = expanded_queries(queries, np.take_along_axis(scores, top, 1), gallery[top], expansion.alpha)
        scores = expanded @ gallery.T
        if hidden is not None:
            scores[hidden] = -np.inf
    elif expansion.method == "diffusion":
        count = min(expansion.candidates(0), gallery.shape[0])
        for row, query in enumerate(queries):
            top = np.argsort(-scores[row], kind="stable")[:count]
            top = top[np.isfinite(scores[row, top])]
            scores[row, top] = 2.0 + diffusion_scores(query, gallery[top], expansion.neighbours, expansion.alpha)
    return scores


def _few_match_scores(index: ImageIndex, query_ids: list[int], gallery_ids: list[int], query_labels: np.ndarray,
                      gallery_labels: np.ndarray, expansion: Expansion, matches: int, seed: int,
                      leave_one_out: bool) -> tuple[float, float]:
    """mAP and P@10 when each query's class keeps only `matches` gallery images: for each class, a gallery
    of the other classes plus r of it, augmented as an index holding just that gallery would be."""
    if matches < 1:
        raise ValueError(f"matches (the few-match mode's r) must be at least 1, not {matches}")
    rng = np.random.default_rng(seed)
    plan = AugmentationPlan.of(index.manifest.get("augmentation_plan"))
    queries, gallery = index.searchable_vectors(query_ids), index.searchable_vectors(gallery_ids)
    precision: list[float] = []
    precision_at_10: list[float] = []
    for label in np.unique(query_labels):
        of_class = np.flatnonzero(gallery_labels == label)
        kept = rng.choice(of_class, size=min(matches, len(of_class)), replace=False)
        rows = np.concatenate([np.flatnonzero(gallery_labels != label), np.sort(kept)])
        asking = np.flatnonzero(query_labels == label)
        if leave_one_out:  # the kept images are the gallery's; the rest of the class asks
            asking = np.setdiff1d(asking, kept)
        cut = gallery[rows]
        if plan is not None:
            cut = augment_all(np.arange(len(rows), dtype=np.int64), cut, plan)[1]
        scores = pipeline_scores(queries[asking], cut, expansion)
        relevant = np.argsort(-scores, axis=1, kind="stable")
        hits = gallery_labels[rows][relevant] == label
        precision += [average_precision(row) for row in hits]
        precision_at_10 += hits[:, :10].mean(axis=1).tolist()
    return float(np.mean(precision)), float(np.mean(precision_at_10))


def _ms_per_query(index: ImageIndex, query_ids: list[int], options: SearchOptions, sample: int = 50) -> float:
    """Median milliseconds of one search from an indexed query with these options (k 10)."""
    times = []
    for image_id in query_ids[:sample]:
        started = time.perf_counter()
        index.search(id=image_id, k=10, expand=options.expand, expand_neighbours=options.expand_neighbours,
                     expand_alpha=options.expand_alpha)
        times.append((time.perf_counter() - started) * 1e3)
    return float(np.median(times))
