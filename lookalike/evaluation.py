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
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lookalike.errors import RequestError
from lookalike.expansion import (
    GUARD_CANDIDATES,
    GUARD_NEIGHBOUR,
    Expansion,
    diffusion_scores,
    expanded_queries,
    guarded_order,
)
from lookalike.index.augmentation import AugmentationPlan, augment_all
from lookalike.search import SearchOptions

if TYPE_CHECKING:
    from lookalike.index import ImageIndex

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
    new_photos: int = 0  # queries the index does not hold, embedded at query time
    top_1: float | None = None  # share of queries whose first match is relevant

    def to_dict(self) -> dict[str, Any]:
        return {"mAP": round(self.mean_average_precision, 4), "P@10": round(self.precision_at_10, 4),
                "queries": self.queries, "gallery": self.gallery,
                "query_split": self.query_split, "gallery_split": self.gallery_split,
                "expand": self.expand, "matches": self.matches, "new_photos": self.new_photos,
                "top1": None if self.top_1 is None else round(self.top_1, 4),
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
            raise RequestError(f"{labels_file} needs columns 'path' and {attribute!r}; it has {', '.join(columns)}")
        rows = [LabelledImage(folder / row["path"], row[attribute].strip(), (row.get("split") or "").strip())
                for row in reader if row[attribute] and row[attribute].strip()]
    return rows


def default_splits(images: list[LabelledImage]) -> tuple[str, str]:
    splits = {image.split for image in images}
    for query_split, gallery_split in SPLIT_PAIRS:
        if {query_split, gallery_split} <= splits:
            return query_split, gallery_split
    return "", ""


def gallery_paths(dataset: str | os.PathLike[str], attribute: str = "label", gallery_split: str | None = None
                  ) -> list[Path]:
    """The images to index for an honest evaluation: the gallery split only (so the queries stay new photos);
    every labelled image when the folder has no splits."""
    images = read_labels(dataset, attribute)
    split = gallery_split or default_splits(images)[1]
    return [image.path for image in images if not split or image.split == split]


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


def first_is_relevant(similarity: npt.NDArray[np.float32], query_labels: npt.NDArray[Any],
                      gallery_labels: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Per query, whether the best-scored gallery image has its label (top-1)."""
    return gallery_labels[np.argmax(similarity, axis=1)] == query_labels


def evaluate_index(index: ImageIndex, dataset: str | os.PathLike[str], query_split: str | None = None,
                   gallery_split: str | None = None, attribute: str = "label", similarity: Any = None,
                   expand: str | None = None, expand_neighbours: int | None = None,
                   expand_alpha: float | None = None, matches: int | None = None, seed: int = 0) -> RetrievalScores:
    """Score an index on the dataset's labels, searching as `search` does with the same expand options. The
    gallery is the gallery split's indexed images; queries the index does not hold are embedded now, as a
    user's new photo would be (index only the gallery to measure that: an indexed query is already blended
    into its neighbours' DBA vectors, which flatters DBA). `matches` is the few-match mode (each query's class
    cut to r gallery images, chosen with `seed`). `similarity` (a learned model) ranks instead of the pipeline."""
    options = SearchOptions.of(expand=expand, expand_neighbours=expand_neighbours, expand_alpha=expand_alpha)
    images = read_labels(dataset, attribute)
    if query_split is None or gallery_split is None:
        query_split, gallery_split = default_splits(images)
    ids_by_path = index.ids_by_path()
    indexed = [image for image in images if os.path.abspath(image.path) in ids_by_path]
    if not indexed:
        raise RequestError(f"none of the images in {dataset}/labels.csv are in the index {index.folder}")
    queries = [i for i in images if i.split == query_split] if query_split else indexed
    gallery = [i for i in indexed if i.split == gallery_split] if gallery_split else indexed
    if not queries or not gallery:
        raise RequestError(f"no images in split {query_split!r} or {gallery_split!r}")
    gallery_ids = [ids_by_path[os.path.abspath(i.path)] for i in gallery]
    query_ids = [ids_by_path.get(os.path.abspath(i.path), -1) for i in queries]
    query_vectors = _query_vectors(index, queries, query_ids)
    query_labels, gallery_labels = np.array([i.label for i in queries]), np.array([i.label for i in gallery])
    expansion = options.expansion if similarity is None else Expansion.of("none")
    leave_one_out = not query_split
    if matches is not None:
        mean_ap, p10, top_1 = _few_match_scores(index, query_vectors, query_ids, gallery_ids, query_labels,
                                                gallery_labels, expansion, matches, seed, leave_one_out)
    else:
        hidden = np.equal.outer(query_ids, gallery_ids) if leave_one_out else None
        if similarity is not None:
            scores = similarity(query_vectors, index.searcher.searchable_vectors(gallery_ids))
        else:
            scores = pipeline_scores(query_vectors, Gallery.of_index(index, gallery_ids), expansion, hidden)
        mean_ap, p10 = retrieval_scores(scores, query_labels, gallery_labels)
        top_1 = float(first_is_relevant(scores, query_labels, gallery_labels).mean())
    timing = None if similarity is not None else _ms_per_query(index, [i for i in query_ids if i >= 0] or gallery_ids,
                                                                options)
    return RetrievalScores(mean_ap, p10, len(queries), len(gallery), query_split, gallery_split,
                           expansion.method, matches, timing, sum(1 for i in query_ids if i < 0), top_1)


def _query_vectors(index: ImageIndex, queries: list[LabelledImage], query_ids: list[int]) -> np.ndarray:
    """Queries as the index searches them: an indexed one's stored vector, a new photo embedded now."""
    full = [index.vectors([i])[0] if i >= 0 else index.searcher.embed_image(q.path)[0]
            for q, i in zip(queries, query_ids, strict=True)]
    return index.searcher.to_searchable(np.stack(full))


@dataclass(frozen=True)
class Gallery:
    """A gallery as a search sees it: vectors as indexed (augmented), plain (reduced only), and each image's
    guard floor (its GUARD_NEIGHBOUR-th neighbour's similarity; None without DBA)."""

    indexed: np.ndarray
    plain: np.ndarray
    floors: np.ndarray | None

    @classmethod
    def of_index(cls, index: ImageIndex, ids: list[int]) -> Gallery:
        augmented = index.manifest.augmentation_plan is not None
        return cls(index.searcher.indexed_vectors(ids), index.searcher.searchable_vectors(ids),
                   index.searcher.neighbour_floors(ids) if augmented else None)

    @classmethod
    def augmented(cls, plain: np.ndarray, plan: AugmentationPlan | None) -> Gallery:
        """The gallery an index holding just these vectors would have (DBA by `plan`, when there is one)."""
        if plan is None:
            return cls(plain, plain, None)
        graph, vectors = augment_all(np.arange(len(plain), dtype=np.int64), plain, plan)
        floors = graph.similarities[:, min(GUARD_NEIGHBOUR, graph.similarities.shape[1]) - 1]
        return cls(vectors, plain, np.where(np.isfinite(floors), floors, np.inf).astype(np.float32))


def pipeline_scores(queries: np.ndarray, gallery: Gallery, expansion: Expansion,
                    hidden: npt.NDArray[np.bool_] | None = None) -> np.ndarray:
    """Every query's scores over the whole gallery as `search` ranks it: inner products with the gallery as
    the index holds it, re-ranked by the expansion, then guarded (expansion.guarded_order) as `search` does.
    `hidden` pairs (a query itself) are never found. Scores order the gallery; they are not similarities."""
    first = queries @ gallery.indexed.T
    if hidden is not None:
        first[hidden] = -np.inf
    scores = first
    if expansion.blends:
        count = min(expansion.neighbours, gallery.indexed.shape[0])
        top = np.argsort(-first, axis=1, kind="stable")[:, :count]
        expanded = expanded_queries(queries, np.take_along_axis(first, top, 1), gallery.indexed[top], expansion.alpha)
        scores = expanded @ gallery.indexed.T
        if hidden is not None:
            scores[hidden] = -np.inf
    elif expansion.method == "diffusion":
        count = min(expansion.candidates(0), gallery.indexed.shape[0])
        for row, query in enumerate(queries):
            top = np.argsort(-first[row], kind="stable")[:count]
            top = top[np.isfinite(first[row, top])]
            first[row, top] = 2.0 + diffusion_scores(query, gallery.indexed[top], expansion.neighbours, expansion.alpha)
        return first
    if expansion.active or gallery.floors is not None:
        scores = _guarded(queries, first, scores, gallery)
    return scores


def _guarded(queries: np.ndarray, first: np.ndarray, ranked: np.ndarray, gallery: Gallery) -> np.ndarray:
    """Each row re-ordered by the guard over the first answer's top GUARD_CANDIDATES (scores by position)."""
    out = np.empty_like(ranked)
    positions = np.arange(ranked.shape[1], 0, -1, dtype=np.float32)
    for row, query in enumerate(queries):
        candidates = np.argsort(-first[row], kind="stable")[:GUARD_CANDIDATES]
        candidates = candidates[np.isfinite(first[row, candidates])]
        order = np.argsort(-ranked[row], kind="stable")
        order = order[np.isfinite(ranked[row, order])]
        plain = gallery.plain[candidates] @ query
        floors = None if gallery.floors is None else gallery.floors[candidates]
        ids, _ = guarded_order(order.astype(np.int64), ranked[row, order], candidates.astype(np.int64), plain, floors)
        out[row] = -np.inf
        out[row, ids] = positions[:len(ids)]
    return out


def _few_match_scores(index: ImageIndex, queries: np.ndarray, query_ids: list[int], gallery_ids: list[int],
                      query_labels: np.ndarray, gallery_labels: np.ndarray, expansion: Expansion, matches: int,
                      seed: int, leave_one_out: bool) -> tuple[float, float, float]:
    """mAP and P@10 when each query's class keeps only `matches` gallery images: for each class, a gallery
    of the other classes plus r of it, augmented as an index holding just that gallery would be."""
    if matches < 1:
        raise RequestError(f"matches (the few-match mode's r) must be at least 1, not {matches}")
    rng = np.random.default_rng(seed)
    plan = AugmentationPlan.of(index.manifest.augmentation_plan)
    gallery = index.searcher.searchable_vectors(gallery_ids)
    precision: list[float] = []
    precision_at_10: list[float] = []
    first: list[bool] = []
    for label in np.unique(query_labels):
        of_class = np.flatnonzero(gallery_labels == label)
        kept = rng.choice(of_class, size=min(matches, len(of_class)), replace=False)
        rows = np.concatenate([np.flatnonzero(gallery_labels != label), np.sort(kept)])
        asking = np.flatnonzero(query_labels == label)
        if leave_one_out:  # the kept images are the gallery's; the rest of the class asks
            asking = np.setdiff1d(asking, kept)
        scores = pipeline_scores(queries[asking], Gallery.augmented(gallery[rows], plan), expansion)
        relevant = np.argsort(-scores, axis=1, kind="stable")
        hits = gallery_labels[rows][relevant] == label
        precision += [average_precision(row) for row in hits]
        precision_at_10 += hits[:, :10].mean(axis=1).tolist()
        first += hits[:, 0].tolist()
    return float(np.mean(precision)), float(np.mean(precision_at_10)), float(np.mean(first))


def _ms_per_query(index: ImageIndex, query_ids: list[int], options: SearchOptions, sample: int = 50) -> float:
    """Median milliseconds of one search from an indexed query with these options (k 10)."""
    times = []
    for image_id in query_ids[:sample]:
        started = time.perf_counter()
        index.search(id=image_id, k=10, expand=options.expand, expand_neighbours=options.expand_neighbours,
                     expand_alpha=options.expand_alpha)
        times.append((time.perf_counter() - started) * 1e3)
    return float(np.median(times))
