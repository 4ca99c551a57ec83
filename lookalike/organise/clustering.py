"""Group an index's images by content (spherical k-means in FAISS), show each group as a contact
sheet, and spread a few human labels per group to the whole collection.

Automatic k: the k after the largest eigengap of a neighbour graph, when that gap beats shuffled copies of the
vectors (organise/cluster_count.py); a collection without clear groups is refused with a request for k.
The last clustering is kept in the index folder, each image's cluster stored as its `cluster` label;
`ClusterScope` is the `by_cluster` option of the one search: `index.search(query, by_cluster=2)`.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lookalike.errors import RequestError
from lookalike.index.folder import IndexFolder
from lookalike.organise.cluster_count import REFERENCES, GroupCount, count_groups
from lookalike.organise.labels import LabelImport, labelled_ids
from lookalike.search import Scope, SearchOptions

if TYPE_CHECKING:
    from lookalike.index import ImageIndex

CLUSTER_LABEL = "cluster"  # label name under which each image's cluster is stored (search --where cluster=3)
SHEET_SIZE = 16  # images per contact sheet
THUMB_SIDE = 112
AUTO_K_RANGE = (2, 20)
SMALL_COLLECTION = 20_000
BORROWED_CONFIDENCE = 0.5  # ceiling of the confidence of a label borrowed from the nearest labelled cluster

Vectors = npt.NDArray[np.float32]


@dataclass
class Clustering:
    ids: npt.NDArray[np.int64]
    assignments: npt.NDArray[np.int64]
    centroids: Vectors  # unit length
    similarity: npt.NDArray[np.float32]  # cosine of each image to its centroid

    @property
    def k(self) -> int:
        return len(self.centroids)

    def sizes(self) -> list[int]:
        return np.bincount(self.assignments, minlength=self.k).tolist()

    def save(self, folder: Path) -> Path:
        """Keep this clustering in an index folder (for `cluster label` and by_cluster searches)."""
        path = IndexFolder(folder).clustering
        np.savez(path, ids=self.ids, assignments=self.assignments, centroids=self.centroids,
                 similarity=self.similarity)
        return path

    @classmethod
    def load(cls, folder: Path) -> Clustering:
        path = IndexFolder(folder).clustering
        if not path.exists():
            raise FileNotFoundError(f"no clustering in {folder}; run `lookalike cluster --index {folder}` first")
        data = np.load(path)
        return cls(data["ids"], data["assignments"], data["centroids"], data["similarity"])


def saved_centroids(folder: Path) -> Vectors:
    """Only the centroids of the clustering kept in an index folder (cheap however many images it holds)."""
    with np.load(IndexFolder(folder).clustering) as saved:
        return saved["centroids"]


@dataclass
class ClusterReport:
    k: int
    criterion: str
    sizes: list[int]
    seconds: float
    purity: float | None = None
    nmi: float | None = None
    labelled: int = 0  # images with a label used for purity/NMI
    eigengaps: dict[int, float] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "criterion": self.criterion, "sizes": self.sizes, "seconds": round(self.seconds, 3),
                "purity": _round(self.purity), "nmi": _round(self.nmi), "labelled": self.labelled,
                "eigengaps": {str(k): round(v, 4) for k, v in self.eigengaps.items()}, "out": self.files[:1]}


def kmeans(vectors: Vectors, k: int, seed: int = 0, iterations: int = 20, restarts: int | None = None) -> Clustering:
    """Spherical k-means (FAISS) of unit vectors; ids are row numbers until the caller sets them.

    FAISS starts from random centroids; `restarts` runs keep the best (default: 5 for collections up
    to SMALL_COLLECTION images, where it costs little and avoids merged clusters, 1 above).
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if k < 1:
        raise RequestError(f"k must be at least 1, not {k}")
    if k > len(vectors):
        raise RequestError(f"k={k} is larger than the collection ({len(vectors)} images); choose k <= {len(vectors)}")
    if restarts is None:
        restarts = 5 if len(vectors) <= SMALL_COLLECTION else 1
    import faiss  # here, not above: the CLI reads this module's defaults

    model = faiss.Kmeans(vectors.shape[1], k, niter=iterations, seed=seed, spherical=True, nredo=restarts,
                         min_points_per_centroid=1, verbose=False)
    model.train(vectors)
    centroid_index = faiss.IndexFlatIP(vectors.shape[1])
    centroid_index.add(model.centroids)
    similarity, nearest = centroid_index.search(vectors, 1)
    return Clustering(np.arange(len(vectors), dtype=np.int64), nearest[:, 0].astype(np.int64), model.centroids,
                      similarity[:, 0])


class NoClearGroupsError(RequestError):
    """The automatic k found no number of groups clearer than in the same vectors shuffled: the person gives k."""

    def __init__(self, count: GroupCount, folder: Path) -> None:
        super().__init__(
            f"these photos form no clear groups: the largest eigengap of their "
            f"neighbour graph (after k={count.best()}) is {count.strength:.2f}x the largest of the same vectors "
            f"shuffled (it must beat all {REFERENCES} shuffles); if you know how many kinds there are, give the "
            f"number of clusters: lookalike cluster --index {folder} --k N")
        self.count = count


def choose_k(vectors: Vectors, k_range: tuple[int, int] = AUTO_K_RANGE, seed: int = 0) -> GroupCount:
    """The number of groups (organise/cluster_count.py): k None when the collection shows no clear one."""
    if min(k_range[1], len(vectors) - 2) < max(2, k_range[0]):
        raise RequestError(f"too few images ({len(vectors)}) to choose k automatically; give --k")
    return count_groups(vectors, k_range, seed)


def cluster_quality(assignments: Sequence[int], labels: Sequence[str]) -> tuple[float, float]:
    """Purity (share of images in their cluster's majority class) and normalised mutual information."""
    from sklearn.metrics import normalized_mutual_info_score

    by_cluster: dict[int, Counter[str]] = {}
    for cluster, label in zip(assignments, labels, strict=True):
        by_cluster.setdefault(int(cluster), Counter())[label] += 1
    purity = sum(c.most_common(1)[0][1] for c in by_cluster.values()) / max(1, len(labels))
    return float(purity), float(normalized_mutual_info_score(labels, assignments))


def cluster_index(index: ImageIndex, k: int | None = None, out: str | os.PathLike[str] | None = None,
                  attribute: str = "label", seed: int = 0, k_range: tuple[int, int] = AUTO_K_RANGE,
                  sheets: bool = True) -> ClusterReport:
    """Cluster every image of an index; write contact sheets, clusters.csv and summary.json to `out`."""
    started = time.perf_counter()
    ids, vectors = index.vectors()
    if len(ids) == 0:
        raise RequestError(f"the index {index.folder} is empty: nothing to cluster")
    gaps: dict[int, float] = {}
    criterion = "given"
    if k is None:
        count = choose_k(vectors, k_range, seed)
        if count.k is None:
            raise NoClearGroupsError(count, index.folder)
        k, gaps = count.k, count.gaps
        criterion = f"automatic: largest eigengap for k in {k_range[0]}..{k_range[1]}, {count.strength:.2f}x that " \
                    f"of shuffled vectors (sample of {count.images})"
    clustering = kmeans(vectors, k, seed)
    clustering.ids = ids
    report = ClusterReport(k, criterion, clustering.sizes(), 0.0, eigengaps=gaps)
    truth = index.label_values(attribute)
    known = [n for n, i in enumerate(ids.tolist()) if i in truth]
    if known:
        report.purity, report.nmi = cluster_quality(clustering.assignments[known], [truth[ids[n]] for n in known])
        report.labelled = len(known)
    clustering.save(index.folder)
    index.set_labels({image_id: {CLUSTER_LABEL: str(cluster)}
                      for image_id, cluster in zip(ids.tolist(), clustering.assignments.tolist(), strict=True)})
    report.seconds = time.perf_counter() - started
    folder = Path(out) if out is not None else index.files.clusters_report
    report.files = [str(folder)] + [str(p) for p in write_clustering(index, clustering, folder, report, truth, sheets)]
    return report


def write_clustering(index: ImageIndex, clustering: Clustering, folder: Path, report: ClusterReport,
                     truth: dict[int, str], sheets: bool = True) -> list[Path]:
    """clusters.csv, summary.json and a contact sheet per cluster in `folder`."""
    from tqdm import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    paths = {record.id: record.path for record in index.records()}
    table = folder / "clusters.csv"
    with open(table, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "id", "cluster", "similarity"])
        for image_id, cluster, similarity in zip(clustering.ids.tolist(), clustering.assignments.tolist(),
                                                 clustering.similarity.tolist(), strict=True):
            writer.writerow([paths[image_id], image_id, cluster, f"{similarity:.4f}"])
    summary = folder / "summary.json"
    summary.write_text(json.dumps(report.to_dict(), indent=2))
    written = [table, summary]
    if sheets:
        for cluster in tqdm(range(clustering.k), desc="contact sheets", file=sys.stderr, unit="cluster"):
            members = representatives(clustering, cluster)
            title = f"cluster {cluster}: {report.sizes[cluster]} images" + _majority(members, truth)
            written.append(contact_sheet([paths[i] for i in members], folder / f"cluster-{cluster:03d}.png", title))
    return written


def nearest_clusters(centroids: Vectors, vector: Vectors, count: int = 1) -> list[int]:
    """The clusters whose centroids are most similar to a vector, most similar first."""
    return np.argsort(-(centroids @ np.asarray(vector, dtype=np.float32).ravel()))[:count].tolist()


class ClusterScope:
    """The `by_cluster` search option: search only the images of the clusters nearest the query (the idea
    of an inverted file), using the last clustering of the index."""

    def available(self, index: ImageIndex) -> bool:
        """Whether the index folder holds a clustering."""
        return index.files.clustering.exists()

    def narrow(self, index: ImageIndex, vector: Vectors, options: SearchOptions) -> Scope:
        """The `by_cluster` clusters whose centroids are nearest the query vector."""
        if not self.available(index):
            raise RequestError(f"by_cluster needs a clustering of this index: lookalike cluster --index {index.folder}")
        chosen = nearest_clusters(saved_centroids(index.folder), vector, options.by_cluster or 1)
        return Scope(CLUSTER_LABEL, tuple(str(cluster) for cluster in chosen))


def representatives(clustering: Clustering, cluster: int, count: int = SHEET_SIZE) -> list[int]:
    """Ids of the images nearest a cluster's centroid, nearest first."""
    rows = np.flatnonzero(clustering.assignments == cluster)
    best = rows[np.argsort(-clustering.similarity[rows], kind="stable")[:count]]
    return clustering.ids[best].tolist()


def _majority(members: list[int], truth: dict[int, str]) -> str:
    labels = Counter(truth[i] for i in members if i in truth)
    if not labels:
        return ""
    label, count = labels.most_common(1)[0]
    return f"; {label} {count}/{sum(labels.values())} of those shown"


def contact_sheet(paths: Sequence[str], target: Path, title: str, side: int = THUMB_SIDE, columns: int = 4) -> Path:
    """A PNG grid of thumbnails under a title line; unreadable images become grey squares."""
    from PIL import Image, ImageDraw

    from lookalike.images import ImageError, load_image

    rows = max(1, -(-len(paths) // columns))
    header = 22
    sheet = Image.new("RGB", (columns * side, header + rows * side), "white")
    ImageDraw.Draw(sheet).text((4, 5), title, fill="black")
    for n, path in enumerate(paths):
        try:
            thumb = load_image(path, target_side=side).pixels
            thumb.thumbnail((side - 4, side - 4))
        except ImageError:
            thumb = Image.new("RGB", (side - 4, side - 4), "grey")
        x, y = (n % columns) * side, header + (n // columns) * side
        sheet.paste(thumb, (x + (side - thumb.width) // 2, y + (side - thumb.height) // 2))
    sheet.save(target)
    return target


# --- label propagation ------------------------------------------------------------------------
@dataclass
class PropagationReport:
    labelled_images: int
    propagated: int
    clusters_without_labels: list[int]
    unlabelled_policy: str
    skipped: LabelImport
    accuracy: float | None = None
    evaluated: int = 0
    output: str = ""
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"labelled_images": self.labelled_images, "propagated": self.propagated,
                "clusters_without_labels": self.clusters_without_labels, "unlabelled_policy": self.unlabelled_policy,
                "accuracy": _round(self.accuracy), "evaluated": self.evaluated, "output": self.output,
                "skipped": self.skipped.to_dict(), "warnings": self.warnings}


@dataclass(frozen=True)
class PropagatedLabel:
    label: str
    confidence: float
    source: str  # "human", "cluster" or "nearest cluster N"


def propagate(clustering: Clustering, human: dict[int, str], unlabelled: str = "nearest"
              ) -> tuple[dict[int, PropagatedLabel], list[int]]:
    """Each cluster takes the majority of its human labels (confidence = that label's share of the votes).

    A cluster with no labelled member takes the label of the labelled cluster whose centroid is most
    similar, with confidence BORROWED_CONFIDENCE x vote share x centroid cosine (`unlabelled="nearest"`),
    or stays unlabelled (`unlabelled="leave"`). Returns the labels and the clusters that had no label.
    """
    if unlabelled not in ("nearest", "leave"):
        raise RequestError(f"unlabelled must be 'nearest' or 'leave', not {unlabelled!r}")
    cluster_of = dict(zip(clustering.ids.tolist(), clustering.assignments.tolist(), strict=True))
    votes: dict[int, Counter[str]] = {}
    for image_id, label in human.items():
        votes.setdefault(cluster_of[image_id], Counter())[label] += 1
    if not votes:
        raise RequestError("none of the labelled images is in the clustering; nothing to propagate")
    decided = {c: (v.most_common(1)[0][0], v.most_common(1)[0][1] / sum(v.values())) for c, v in votes.items()}
    orphans = [c for c in range(clustering.k) if c not in decided]
    labelled_clusters = sorted(decided)
    by_cluster = {c: PropagatedLabel(decided[c][0], decided[c][1], "cluster") for c in labelled_clusters}
    if unlabelled == "nearest":
        for cluster in orphans:
            cosines = clustering.centroids[labelled_clusters] @ clustering.centroids[cluster]
            source = labelled_clusters[int(np.argmax(cosines))]
            label, share = decided[source]
            confidence = BORROWED_CONFIDENCE * share * max(0.0, float(cosines.max()))
            by_cluster[cluster] = PropagatedLabel(label, confidence, f"nearest cluster {source}")
    result = {image_id: by_cluster[cluster] for image_id, cluster in cluster_of.items() if cluster in by_cluster}
    result.update({image_id: PropagatedLabel(label, 1.0, "human") for image_id, label in human.items()})
    return result, orphans


def propagate_labels(index: ImageIndex, few_csv: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                     attribute: str = "label", truth_csv: str | os.PathLike[str] | None = None,
                     unlabelled: str = "nearest") -> PropagationReport:
    """Spread a CSV of a few labelled images over the last clustering; write path,label,confidence,...

    Accuracy is measured against `truth_csv` or, without one, the index's stored `attribute` labels,
    over the images the person did not label.
    """
    clustering = Clustering.load(index.folder)
    human, skipped = labelled_ids(index, few_csv, attribute)
    clustered = set(clustering.ids.tolist())
    report = PropagationReport(0, 0, [], unlabelled, skipped)
    outside = [i for i in human if i not in clustered]
    if outside:
        report.warnings.append(f"{len(outside)} labelled images were added after the clustering and are ignored; "
                               "run `lookalike cluster` again to include them")
    human = {i: label for i, label in human.items() if i in clustered}
    labels, orphans = propagate(clustering, human, unlabelled)
    report.labelled_images, report.propagated, report.clusters_without_labels = len(human), len(labels), orphans
    if orphans:
        what = ("take the label of the nearest labelled cluster with a low confidence (at most "
                f"{BORROWED_CONFIDENCE})") if unlabelled == "nearest" else "are left unlabelled"
        report.warnings.append(f"clusters {', '.join(map(str, orphans))} have no labelled member: their images {what}")
    truth = labelled_ids(index, truth_csv, attribute)[0] if truth_csv else index.label_values(attribute)
    scored = [i for i in clustered if i in truth and i not in human]
    if scored:
        report.accuracy = float(np.mean([i in labels and labels[i].label == truth[i] for i in scored]))
        report.evaluated = len(scored)
    target = Path(out) if out is not None else index.files.clusters_report / "propagated-labels.csv"
    report.output = str(write_propagated(index, clustering, labels, target))
    return report


def write_propagated(index: ImageIndex, clustering: Clustering, labels: dict[int, PropagatedLabel],
                     target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    paths = {record.id: record.path for record in index.records()}
    with open(target, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "confidence", "cluster", "source"])
        for image_id, cluster in zip(clustering.ids.tolist(), clustering.assignments.tolist(), strict=True):
            found = labels.get(image_id)
            if image_id in paths:
                writer.writerow([paths[image_id], found.label if found else "", f"{found.confidence:.3f}" if found
                                 else "", cluster, found.source if found else "unlabelled"])
    return target


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
