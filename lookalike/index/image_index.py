"""ImageIndex: the Python API. Index folders of photos, keep them in step, search by example."""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lookalike import reduction as reduction_module
from lookalike.backends import backend_options, store_manifest
from lookalike.embedders import DEFAULT_MODEL, Embedder, Matrix, get_embedder
from lookalike.files import content_hash, stat_file, walk_images
from lookalike.images import ImageError, is_image_path, load_image
from lookalike.index.autoselect import plan_index
from lookalike.index.manifest import IndexFormatError, new_manifest, read_manifest, write_manifest
from lookalike.index.store import NewImage, VectorStore
from lookalike.ingest import Failure, embed_files
from lookalike.reduction import fit_pca, load_reduction, remove_reduction
from lookalike.search import Match, SearchResult, check_metric, scores_from_inner_products

FAILURE_LOG = "failures.log"
COMMIT_EVERY = 256  # images per transaction: at most this much work is redone after a crash

Progress = Callable[[int, int], None]  # (images done, images to do)


class ModelMismatchError(Exception):
    """A vector or model that is not the one this index was built with."""


@dataclass
class IndexReport:
    """What one indexing run did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    reused: int = 0  # renamed, moved or copied files whose vector was reused without embedding
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added, "updated": self.updated, "unchanged": self.unchanged, "removed": self.removed,
            "reused": self.reused, "failed": self.failed, "seconds": round(self.seconds, 3),
            "failures": [{"path": os.fsdecode(f.path), "reason": f.reason} for f in self.failures],
        }


class ImageIndex:
    """A folder on disk holding image vectors and their metadata."""

    def __init__(self, folder: Path, embedder: Embedder, manifest: dict[str, Any]):
        self.folder = folder
        self.embedder = embedder
        self.manifest = manifest
        self.store = VectorStore(folder, embedder.dimension, manifest["index_type"], load_reduction(folder),
                                 **backend_options(manifest))

    # --- lifecycle ------------------------------------------------------------------------
    @classmethod
    def create(cls, folder: str | os.PathLike[str], model: str = DEFAULT_MODEL, weights: Path | None = None,
               device: str = "cpu", layer: str | None = None, pool: str | None = None,
               store: str | None = None, index_type: str = "flat-ip", expected_count: int = 0,
               max_memory: str | int | None = None, latency_ms: float | None = None) -> ImageIndex:
        """A new index. `store` keeps the vectors in Milvus (milvus://HOST:PORT/COLLECTION or a .db file);
        `index_type` 'auto' chooses from expected_count, max_memory and latency_ms."""
        folder = Path(folder)
        if (folder / "manifest.json").exists():
            raise FileExistsError(f"an index already exists in {folder}; open it instead")
        embedder = get_embedder(model, layer=layer, pool=pool, weights=weights, device=device)
        plan = plan_index(index_type, expected_count, embedder.dimension, max_memory, latency_ms)
        manifest = new_manifest(embedder.describe(), plan.index_type) | {
            "index_params": plan.params, "index_choice": plan.reasons} | store_manifest(store)
        folder.mkdir(parents=True, exist_ok=True)
        index = cls(folder, embedder, manifest)  # reaches the store before the folder becomes an index
        write_manifest(folder, manifest)
        return index

    @classmethod
    def open(cls, folder: str | os.PathLike[str], weights: Path | None = None, device: str = "cpu",
             store: str | None = None) -> ImageIndex:
        folder = Path(folder)
        manifest = read_manifest(folder)
        if store is not None and store_manifest(store).get("store") != manifest.get("store"):
            raise ValueError(f"{folder} keeps its vectors in {manifest.get('store', 'faiss')}, not {store}")
        recorded = manifest["embedder"]
        weights = weights or recorded.get("weights_file")
        embedder = get_embedder(recorded["model"], layer=recorded.get("layer"), pool=recorded.get("pool"),
                                weights=Path(weights) if weights else None, device=device)
        _check_same_model(recorded, embedder.describe())
        return cls(folder, embedder, manifest)

    @classmethod
    def open_or_create(cls, folder: str | os.PathLike[str], model: str | None = DEFAULT_MODEL,
                       layer: str | None = None, pool: str | None = None, **options: Any) -> ImageIndex:
        """Open the index in folder (model, layer and pool, when given, must match it) or create one."""
        if (Path(folder) / "manifest.json").exists():
            index = cls.open(folder, **options)
            recorded = index.manifest["embedder"]
            asked = {"model": model, "layer": layer, "pool": pool}
            different = [k for k, v in asked.items() if v is not None and recorded.get(k) != v]
            if different:
                index.close()
                built = ", ".join(f"{k} {recorded.get(k)}" for k in different)
                raise ModelMismatchError(
                    f"{folder} was built with {built}, not {', '.join(f'{k} {asked[k]}' for k in different)}; "
                    "use another index folder for another model, layer or pooling"
                )
            return index
        return cls.create(folder, model=model or DEFAULT_MODEL, layer=layer, pool=pool, **options)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> ImageIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.store)

    # --- keeping the index in step with the disk ------------------------------------------------
    def add_folder(self, folder: str | os.PathLike[str], progress: Progress | None = None) -> IndexReport:
        """Index every image under a folder; re-running only embeds what changed and drops what vanished."""
        started = time.perf_counter()
        folder = Path(folder)
        paths = list(walk_images(folder))
        report = self._add_paths(paths, progress)
        seen = {os.path.abspath(p) for p in paths}
        prefix = os.path.join(os.path.abspath(folder), "")
        vanished = [r.id for r in self.store.records() if r.path.startswith(prefix) and r.path not in seen]
        report.removed = self.store.remove(vanished)
        self._finish(report, started)
        return report

    def add_files(self, files: Iterable[str | os.PathLike[str]], progress: Progress | None = None) -> IndexReport:
        started = time.perf_counter()
        paths = [Path(f) for f in files]
        report = IndexReport()
        report.failures += [Failure(p, "not a supported image type (by extension)") for p in paths
                            if not is_image_path(p) and p.exists()]
        report = self._add_paths([p for p in paths if is_image_path(p) or not p.exists()], progress, report)
        self._finish(report, started)
        return report

    def remove_files(self, files: Iterable[str | os.PathLike[str]]) -> IndexReport:
        started = time.perf_counter()
        report = IndexReport()
        ids = []
        for path in files:
            record = self.store.record_by_path(os.path.abspath(path))
            if record is None:
                report.failures.append(Failure(Path(path), "not in the index"))
            else:
                ids.append(record.id)
        report.removed = self.store.remove(ids)
        self._finish(report, started)
        return report

    def remove_ids(self, image_ids: Iterable[int]) -> int:
        removed = self.store.remove([i for i in image_ids if self.store.record(i) is not None])
        self.store.commit()
        self.store.save()
        return removed

    def _add_paths(self, paths: Sequence[Path], progress: Progress | None,
                   report: IndexReport | None = None) -> IndexReport:
        report = report or IndexReport()
        handled_before = _handled(report)
        digests: dict[Path, str] = {}  # content hashes computed while sorting, so files are read once
        since_commit = 0
        for batch in embed_files(self.embedder, self._needing_embedding(paths, report, digests)):
            report.failures += batch.failures
            for image, vector in zip(batch.images, batch.vectors, strict=True):
                self._store_image(image.path, image.width, image.height, vector, report,
                                  digest=digests.get(image.path))
            since_commit += len(batch.images)
            if since_commit >= COMMIT_EVERY:
                self.store.commit()
                since_commit = 0
            if progress:
                progress(_handled(report) - handled_before, len(paths))
        return report

    def _needing_embedding(self, paths: Iterable[Path], report: IndexReport,
                           digests: dict[Path, str]) -> Iterator[Path]:
        """The files whose vectors must be computed, found as the decoders ask for them (so sorting a million
        files overlaps embedding instead of delaying it). Unchanged files are counted; renamed, moved or
        copied ones are stored with the vector of the same content, already indexed."""
        for path in paths:
            stat = stat_file(path)
            if stat is None:
                yield path  # the decoder reports exactly what is wrong with it
                continue
            known = self.store.record_by_path(os.path.abspath(path))
            if known and known.size == stat.size and known.mtime == stat.mtime:
                report.unchanged += 1
                continue
            try:
                digest = content_hash(path)
            except OSError:
                yield path
                continue
            if known and known.content_hash == digest:
                self.store.touch(known.id, stat.size, stat.mtime)
                report.unchanged += 1
                continue
            digests[path] = digest
            source = self.store.record_for_hash(digest)
            if source is None:
                yield path
                continue
            self._store_image(path, source.width, source.height, self.store.vectors([source.id])[0], report,
                              digest=digest)
            report.reused += 1

    def _store_image(self, path: Path, width: int, height: int, vector: np.ndarray, report: IndexReport,
                     digest: str | None = None) -> None:
        """Record one embedded image; `digest` is its content hash when planning already read the file."""
        stat = stat_file(path)
        if stat is None:
            report.failures.append(Failure(path, "file disappeared while indexing"))
            return
        try:
            digest = digest or content_hash(path)
        except OSError as error:
            report.failures.append(Failure(path, f"unreadable: {error}"))
            return
        image = NewImage(os.path.abspath(path), digest, stat.size, stat.mtime, width, height)
        known = self.store.record_by_path(image.path)
        if known is None:
            self.store.add([image], vector.reshape(1, -1))
            report.added += 1
        else:
            self.store.replace(known.id, image, vector)
            report.updated += 1

    def _finish(self, report: IndexReport, started: float) -> None:
        self.store.commit()
        self.store.save()
        report.seconds = time.perf_counter() - started
        if report.failures:
            with open(self.folder / FAILURE_LOG, "a", encoding="utf-8", errors="backslashreplace") as log:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                for failure in report.failures:
                    log.write(f"{stamp}\t{os.fsdecode(failure.path)}\t{failure.reason}\n")

    # --- search ---------------------------------------------------------------------------
    def embed_image(self, image: str | os.PathLike[str] | bytes) -> tuple[np.ndarray, dict[str, float]]:
        """One query image as a vector, with decode and embed times (ms). Bad images raise ImageError."""
        started = time.perf_counter()
        decoded = load_image(image, target_side=self.embedder.input_side)
        tensor = self.embedder.preprocess(decoded)
        decoded_at = time.perf_counter()
        vector = self.embedder.embed_batch(tensor[None])[0]
        embedded_at = time.perf_counter()
        return vector, {"decode": (decoded_at - started) * 1e3, "embed": (embedded_at - decoded_at) * 1e3}

    def search(self, query: str | os.PathLike[str] | bytes | int | None = None, k: int = 10,
               metric: str = "cosine", min_score: float | None = None, random_query: bool = False,
               seed: int | None = None, where: dict[str, str | Sequence[str]] | None = None,
               path_prefix: str | None = None, method: str = "cosine") -> SearchResult:
        """Most similar indexed images to an image file, image bytes, an indexed id, or a random image.
        `where` (label name -> value or list of values) and `path_prefix` filter inside the search;
        `method` is cosine, euclidean or the name of a similarity model trained for this index."""
        check_metric(metric)
        filters = {"where": where, "path_prefix": path_prefix}
        if random_query:
            query = self.random_id(seed)
        if isinstance(query, int | np.integer):
            return self.search_by_id(int(query), k=k, metric=metric, min_score=min_score, method=method, **filters)
        if query is None:
            raise ValueError("give a query image, an indexed id, or random_query=True")
        if not isinstance(query, bytes):
            known = self.store.record_by_path(os.path.abspath(query))
            if known is not None and known.size == os.path.getsize(query):
                return self.search_by_id(known.id, k=k, metric=metric, min_score=min_score, method=method,
                                         **filters)
        vector, timings = self.embed_image(query)
        label = "<uploaded image>" if isinstance(query, bytes) else os.fsdecode(query)
        return self.search_by_vector(vector, k=k, metric=metric, min_score=min_score, query=label, timings=timings,
                                     method=method, **filters)

    def search_by_id(self, image_id: int, k: int = 10, metric: str = "cosine",
                     min_score: float | None = None, where: dict[str, str | Sequence[str]] | None = None,
                     path_prefix: str | None = None, method: str = "cosine") -> SearchResult:
        record = self.store.record(image_id)
        if record is None:
            raise KeyError(f"no image with id {image_id} in the index")
        vector = self.store.vectors([image_id])[0]
        return self.search_by_vector(vector, k=k, metric=metric, min_score=min_score, query=record.path,
                                     exclude={image_id}, where=where, path_prefix=path_prefix, method=method)

    def search_by_vector(self, vector: np.ndarray, k: int = 10, metric: str = "cosine",
                         min_score: float | None = None, query: str = "<vector>",
                         timings: dict[str, float] | None = None, exclude: set[int] | None = None,
                         model: dict[str, Any] | None = None, where: dict[str, str | Sequence[str]] | None = None,
                         path_prefix: str | None = None, method: str = "cosine") -> SearchResult:
        """Search with a vector; `model` (an embedder description) is checked against the index's."""
        if model is not None:
            _check_same_model(self.manifest["embedder"], model)
        vector = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        if vector.shape[1] != self.embedder.dimension:
            reduced = " (reduced by PCA inside the index: give the model's full vector)" if self.reduction else ""
            raise ModelMismatchError(
                f"query vector has {vector.shape[1]} dimensions, the index holds {self.embedder.dimension}{reduced}"
            )
        if method == "euclidean":
            metric = method
        elif method != "cosine":  # a learned similarity re-ranks the vector index's candidates
            from lookalike.similarity.methods import rerank_search

            if where or path_prefix:
                raise ValueError(f"filters (where, path_prefix) are not supported with the learned method {method!r}")

            return rerank_search(self, vector, method, k=k, min_score=min_score, query=query, timings=timings,
                                 exclude=exclude)
        timings = dict(timings or {})
        if len(self.store) == 0:
            return SearchResult([], query, metric, timings | {"search": 0.0})
        started = time.perf_counter()
        exclude = exclude or set()
        allowed = None
        if where or path_prefix is not None:
            allowed = self.store.ids_matching(where, path_prefix)
            if len(allowed) == 0:
                return SearchResult([], query, metric, timings | {"search": (time.perf_counter() - started) * 1e3})
        inner, ids = self.store.search(vector, k + len(exclude), allowed_ids=allowed)
        scores = scores_from_inner_products(inner[0], metric)
        timings["search"] = (time.perf_counter() - started) * 1e3
        matches = [self._match(int(i), float(s)) for i, s in zip(ids[0], scores, strict=True)
                   if i >= 0 and int(i) not in exclude and (min_score is None or s >= min_score)]
        return SearchResult(matches[:k], query, metric, timings)

    def random_id(self, seed: int | None = None) -> int:
        count = len(self.store)
        if count == 0:
            raise ValueError("the index is empty: nothing to pick at random")
        return self.store.id_at(random.Random(seed).randrange(count))

    def _match(self, image_id: int, score: float) -> Match:
        record = self.store.record(image_id)
        assert record is not None
        return Match(image_id, record.path, score, self.store.labels(image_id))

    # --- reduction ----------------------------------------------------------------------------
    @property
    def reduction(self) -> Any:
        return self.store.reduction

    def fit_pca(self, components: int, whiten: bool = False, sample: int | None = None, seed: int = 0) -> None:
        """(Re)fit PCA on the indexed vectors (or a random sample of them, at most MAX_FIT_SAMPLE unless
        `sample` says more, so RAM stays bounded); searches then use it. SQLite keeps the full vectors,
        so refitting or removing never re-embeds."""
        ids = self.store.ids()
        sample = reduction_module.MAX_FIT_SAMPLE if sample is None else sample
        if sample < len(ids):
            ids = np.sort(np.random.default_rng(seed).choice(ids, size=sample, replace=False))
        reduction = fit_pca(self.store.vectors(ids.tolist()), components, whiten)
        self.store.use_reduction(reduction)  # new generation first: a crash from here on rebuilds on open
        reduction.save(self.folder)
        self.manifest["reduction"] = reduction.describe()
        write_manifest(self.folder, self.manifest)
        self.store.save()

    def remove_pca(self) -> None:
        self.store.use_reduction(None)
        remove_reduction(self.folder)
        self.manifest.pop("reduction", None)
        write_manifest(self.folder, self.manifest)
        self.store.save()

    def import_labels(self, csv_path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> Any:
        """Labels from a CSV (path + one column per label); see lookalike.labels.import_labels."""
        from lookalike.organise.labels import import_labels

        return import_labels(self, csv_path, root)

    # --- facts ------------------------------------------------------------------------------
    def vectors(self) -> tuple[np.ndarray, Matrix]:
        """All ids and their vectors (for evaluation, clustering, training)."""
        ids = self.store.ids()
        return ids, self.store.vectors(ids.tolist())

    def info(self) -> dict[str, Any]:
        embedder = self.manifest["embedder"]
        return {
            "folder": str(self.folder),
            "model": embedder["model"],
            "model_version": embedder["version"],
            "preprocessing": embedder["preprocessing"],
            "dimension": embedder["dimension"],
            "layer": embedder.get("layer"),
            "pool": embedder.get("pool"),
            "reduction": _reduction_text(self.manifest.get("reduction")),
            "count": len(self.store),
            "index_type": self.manifest["index_type"],
            "store": self.manifest.get("store", "faiss"),
            "disk_bytes": self.store.disk_bytes(),
            "created": self.manifest["created"],
        }


def delete_index(folder: str | os.PathLike[str]) -> None:
    read_manifest(Path(folder))  # refuse to delete a folder that is not an index
    shutil.rmtree(folder)


def _reduction_text(reduction: dict[str, Any] | None) -> str:
    if not reduction:
        return "none"
    whiten = ", whitened" if reduction["whiten"] else ""
    size = f"{reduction['input_dimension']} -> {reduction['components']}"
    return f"pca {size}{whiten} (fitted on {reduction['fitted_on']})"


def _check_same_model(recorded: dict[str, Any], current: dict[str, Any]) -> None:
    keys = ("model", "version", "dimension", "layer", "pool", "preprocessing")
    different = [k for k in keys if recorded.get(k) != current.get(k)]
    if different:
        details = "; ".join(f"{k}: index {recorded.get(k)!r} vs query {current.get(k)!r}" for k in different)
        raise ModelMismatchError(f"the index was built by a different model ({details})")


def _handled(report: IndexReport) -> int:
    """Files an indexing run has dealt with so far, in any way (a reused vector counts as added or updated)."""
    return report.added + report.updated + report.unchanged + report.failed


__all__ = ["ImageIndex", "IndexFormatError", "IndexReport", "ImageError", "ModelMismatchError", "delete_index"]
