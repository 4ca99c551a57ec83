"""The layout of an index folder: the one place that names every file and folder inside it.

    manifest.json          what the folder is, the model that made its vectors, the index type
    images.sqlite          paths, hashes, sizes, labels and full vectors: the source of truth
    pca.npz                the reduction searches go through, when there is one
    <backend files>        the searchable copy, one set per database generation (see `backend_file`)
    failures.log           every file an indexing run could not index, and why
    writer.lock            held (flock) by the one process writing the index, holding its pid
    classifier.*           the classifier of classify-then-search
    clusters.npz, clusters/  the last clustering and its report
    similarity/            learned similarity models
    map/, maps/            2-D maps of the collection
    uploads/, thumbnails/  images uploaded over HTTP, thumbnails served to the page
    journal/               the server's accepted uploads and jobs, so a crash orphans and loses none
    ray-shards/            embedded shards a Ray run has not merged yet
"""

from __future__ import annotations

import os
from pathlib import Path

MANIFEST = "manifest.json"
DATABASE = "images.sqlite"
REDUCTION = "pca.npz"
FAILURE_LOG = "failures.log"
WRITER_LOCK = "writer.lock"
CLASSIFIER_WEIGHTS = "classifier.npz"
CLASSIFIER_DESCRIPTION = "classifier.json"
CLASSIFIER_CONFUSION_PNG = "classifier-confusion.png"
CLASSIFIER_CONFUSION_TXT = "classifier-confusion.txt"
CLUSTERING = "clusters.npz"
CLUSTERS_REPORT = "clusters"
SIMILARITY_MODELS = "similarity"
MAP = "map"
MAP_POINTS = "map-points.npz"  # each image's 2-D point, beside a map's pictures (the maps page draws them)
MAPS = "maps"
UPLOADS = "uploads"
THUMBNAILS = "thumbnails"
JOURNAL = "journal"
RAY_SHARDS = "ray-shards"
ARTIFACT_FOLDERS = (CLUSTERS_REPORT, MAP, MAPS)  # pictures and reports the web page may show


class IndexFolder:
    """Paths inside one index folder, by what they hold."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def database(self) -> Path:
        return self.root / DATABASE

    @property
    def reduction(self) -> Path:
        return self.root / REDUCTION

    @property
    def failure_log(self) -> Path:
        return self.root / FAILURE_LOG

    @property
    def writer_lock(self) -> Path:
        return self.root / WRITER_LOCK

    @property
    def classifier_weights(self) -> Path:
        return self.root / CLASSIFIER_WEIGHTS

    @property
    def classifier_description(self) -> Path:
        return self.root / CLASSIFIER_DESCRIPTION

    @property
    def classifier_confusion_png(self) -> Path:
        return self.root / CLASSIFIER_CONFUSION_PNG

    @property
    def classifier_confusion_txt(self) -> Path:
        return self.root / CLASSIFIER_CONFUSION_TXT

    @property
    def clustering(self) -> Path:
        return self.root / CLUSTERING

    @property
    def clusters_report(self) -> Path:
        return self.root / CLUSTERS_REPORT

    @property
    def similarity_models(self) -> Path:
        return self.root / SIMILARITY_MODELS

    @property
    def map(self) -> Path:
        return self.root / MAP

    @property
    def map_points(self) -> Path:
        return self.root / MAP / MAP_POINTS

    @property
    def maps(self) -> Path:
        return self.root / MAPS

    @property
    def uploads(self) -> Path:
        return self.root / UPLOADS

    @property
    def thumbnails(self) -> Path:
        return self.root / THUMBNAILS

    @property
    def journal(self) -> Path:
        return self.root / JOURNAL

    @property
    def ray_shards(self) -> Path:
        return self.root / RAY_SHARDS

    def is_index(self) -> bool:
        return self.manifest.exists()

    def is_empty_or_missing(self) -> bool:
        """A place where a new index may be created: no folder yet, or an empty one."""
        return not self.root.exists() or (self.root.is_dir() and not any(self.root.iterdir()))

    def is_unfinished(self) -> bool:
        """What a creation killed before its manifest was in place leaves: the database (with its journals),
        the writer lock and a half-written manifest, nothing else (create checks that the database is empty)."""
        before_manifest = {DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", f"{DATABASE}-journal", WRITER_LOCK,
                           f"{MANIFEST}.partial"}
        return (self.root.is_dir() and not self.is_index() and DATABASE in (names := os.listdir(self.root))
                and set(names) <= before_manifest)


def is_index_folder(folder: str | os.PathLike[str]) -> bool:
    return IndexFolder(folder).is_index()


def backend_file(folder: str | os.PathLike[str], stem: str, generation: int, suffix: str) -> Path:
    """A backend's file for one database generation, e.g. `hnsw-12.faiss`."""
    return Path(folder) / f"{stem}-{generation}{suffix}"
