"""Retrieval quality on a labelled folder: mean average precision and precision@k.

A labelled folder has a `labels.csv` with `path,label[,split]` (paths relative to the folder).
Queries come from one split and are ranked against another; without splits, every image
queries all the others.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

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

    def to_dict(self) -> dict[str, Any]:
        return {"mAP": round(self.mean_average_precision, 4), "P@10": round(self.precision_at_10, 4),
                "queries": self.queries, "gallery": self.gallery,
                "query_split": self.query_split, "gallery_split": self.gallery_split}


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
                   gallery_split: str | None = None, attribute: str = "label",
                   similarity: Any = None) -> RetrievalScores:
    """Score an index (which must hold the dataset's images) on the dataset's labels."""
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
    scores = _similarity(index, query_ids, gallery_ids, similarity)
    if not query_split:
        np.fill_diagonal(scores, -np.inf)  # leave-one-out: a query does not retrieve itself
    mean_ap, p10 = retrieval_scores(scores, np.array([i.label for i in queries]),
                                    np.array([i.label for i in gallery]))
    return RetrievalScores(mean_ap, p10, len(queries), len(gallery), query_split, gallery_split)


def _similarity(index: ImageIndex, query_ids: list[int], gallery_ids: list[int], similarity: Any) -> np.ndarray:
    query_vectors = index.searchable_vectors(query_ids)
    gallery_vectors = index.searchable_vectors(gallery_ids)
    if similarity is None:
        return query_vectors @ gallery_vectors.T
    return similarity(query_vectors, gallery_vectors)
