"""ImageIndex: the Python API and the only door to an index folder, a facade over its parts: the searcher
(searcher.py), the upkeep of its reduction, augmentation and tuning (upkeep.py), and the state they share
(state.py). Everything else in lookalike calls this class; none of it touches the store.

Several processes may have one index open: writes take turns (each holds the folder's writer lock, another
writer gets IndexBusyError at once) and every search first catches up with what the others committed.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike import reduction as reduction_module
from lookalike.embedders import DEFAULT_MODEL, Embedder, new_index_precision
from lookalike.embedders.spec import EmbedderSpec, ModelMismatchError
from lookalike.faults import storage_problem
from lookalike.files import walk_media
from lookalike.images import ImageError
from lookalike.index import augmentation, capture_reads, upkeep
from lookalike.index import tune as tuning
from lookalike.index.explained import ExplainsPairs
from lookalike.index.folder import IndexFolder
from lookalike.index.labels import import_folder_labels
from lookalike.index.manifest import IndexFormatError, Manifest, read_manifest_json, write_manifest
from lookalike.index.plan import IndexPlan
from lookalike.index.searcher import Searcher
from lookalike.index.state import IndexState, writes
from lookalike.index.store import ImageRecord, VectorStore
from lookalike.index.sync import IndexReport, Progress, Sync
from lookalike.index.upgrade import opened_manifest
from lookalike.index.writer import IndexBusyError
from lookalike.search import QUERY_MORE, Example, Query, SearchOptions, SearchResult, WhereTerms

Ids = npt.NDArray[np.int64]


class ImageIndex(ExplainsPairs):
    """A folder on disk holding image vectors and their metadata."""

    def __init__(self, folder: Path, embedder: Embedder, manifest: Manifest):
        self._state = IndexState(folder, embedder, manifest)
        self.folder, self.files, self.embedder = self._state.folder, self._state.files, embedder
        self.searcher = Searcher(self._state, self)
        self._upkeep = upkeep.Upkeep(self._state)

    @property
    def manifest(self) -> Manifest:
        return self._state.manifest

    @property
    def _store(self) -> VectorStore:
        return self._state.store

    # --- lifecycle ------------------------------------------------------------------------
    @classmethod
    def create(cls, folder: str | os.PathLike[str], plan: IndexPlan | None = None, **options: Any) -> ImageIndex:
        """A new index in `folder`, made as `plan` says, or as `options` say by IndexPlan's field names (model,
        layer, pool, weights, device, precision; store, catalog; index_type, expected_count, max_memory, latency_ms;
        pca, whiten, pca_sample; dba, dba_alpha: see lookalike.index.plan). `store` keeps the vectors in Milvus
        (milvus://HOST:PORT/COLLECTION or a .db file); `index_type` 'auto' chooses from expected_count, max_memory
        and latency_ms (without expected_count, when the first files arrive: see `expect`). `pca` None is the
        default reduction (PCA 128, fitted once when the index first holds 1,000 images), 0 keeps the
        full vectors, N fits PCA to N as soon as there are N images. `dba` is the database-side augmentation:
        None the default (each image searched as the blend of itself and its 10 nearest, kept up to date
        after every run), 0 off, N neighbours (weighted by similarity^`dba_alpha`). `precision` 'int8' runs an
        EfficientNet-Lite model quantized, 'float32' not; None: int8 where the CPU has integer dot-product
        instructions (x86 VNNI, Arm dot product), float32 elsewhere."""
        plan = plan or IndexPlan.of(**options)
        files = IndexFolder(folder)
        if files.is_index():
            raise FileExistsError(f"an index already exists in {files.root}; open it instead")
        if not files.is_empty_or_missing() and not files.is_unfinished():
            raise FileExistsError(f"{files.root} is not empty and not a lookalike index: give a new or empty folder "
                                  "for the index (the photos themselves can be anywhere)")
        model = plan.model or DEFAULT_MODEL
        precision = plan.precision or new_index_precision(model, plan.device)
        embedder = EmbedderSpec(model, plan.layer, plan.pool, plan.weights, plan.device, precision).build()
        manifest = upkeep.planned_manifest(embedder, plan)
        files.root.mkdir(parents=True, exist_ok=True)
        index = cls(files.root, embedder, manifest)  # reaches the store before the folder becomes an index
        if len(index._store):  # a database that lost its manifest, not a creation killed before writing it
            index.close()
            raise FileExistsError(index._store.db.orphaned(files.root))
        write_manifest(files.root, manifest)
        return index

    @classmethod
    def open(cls, folder: str | os.PathLike[str], weights: Path | None = None, device: str = "cpu",
             store: str | None = None, catalog: str | None = None) -> ImageIndex:
        folder = Path(folder)
        manifest = opened_manifest(folder, store, catalog)  # checked, and upgraded first when of an earlier format
        embedder = EmbedderSpec.of_index(manifest.embedder, weights, device).build_matching(manifest.embedder)
        try:
            index = cls(folder, embedder, manifest)
        except sqlite3.DatabaseError as error:  # a disk that is full or may not be written damages nothing
            raise storage_problem(error, folder) or IndexFormatError(
                f"{IndexFolder(folder).database} is damaged ({error}): restore it from a backup, or index the "
                "photos again into a new folder") from None
        index._upkeep.refit_lost_reduction()
        return index

    @classmethod
    def open_or_create(cls, folder: str | os.PathLike[str], plan: IndexPlan | None = None,
                       **options: Any) -> ImageIndex:
        """Open the index in folder (model, layer, pool, precision, pca and dba, when given, must match it) or create
        one as `plan` (or `options`, IndexPlan's fields) says."""
        plan = plan or IndexPlan.of(**options)
        if not IndexFolder(folder).is_index():
            return cls.create(folder, plan)
        index = cls.open(folder, weights=plan.weights, device=plan.device, store=plan.store, catalog=plan.catalog)
        try:
            index._upkeep.check_asked(model=plan.model, layer=plan.layer, pool=plan.pool, precision=plan.precision)
            index._upkeep.check_reduction_asked(plan.pca, plan.whiten)
            index._upkeep.check_augmentation_asked(plan.dba, plan.dba_alpha)
        except (ModelMismatchError, ValueError, IndexBusyError):
            index.close()
            raise
        return index

    def close(self) -> None:
        try:
            self._store.close()
        finally:
            self._state.writer.release_all()

    def __enter__(self) -> ImageIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        self._state.catch_up()
        return len(self._store)

    # --- keeping the index in step with the disk ------------------------------------------------
    def sync(self, report: IndexReport | None = None) -> Sync:
        """One indexing run (plan, embed, store, commit, finish): what add_folder, HTTP jobs and Ray use.
        It holds the writer lock until it is finished or closed (IndexBusyError when another writer has it)."""
        writer = self._state.writer
        writer.acquire()
        try:
            self._state.catch_up()
            return Sync(self._store, self.files, self.embedder, report or IndexReport(),
                        on_finish=self._upkeep.after_sync, on_close=writer.release)
        except BaseException:
            writer.release()
            raise

    @writes
    def expect(self, count: int) -> None:
        """About `count` images are coming: an empty index created with index_type 'auto' and no
        expected_count chooses its index type now (every door calls this before its first run)."""
        if self.manifest.index_type_pending is not None and len(self) == 0:
            self._state.change_manifest(**upkeep.chosen_index_type(self.manifest, count, self.embedder.dimension))
            self._store.close()
            self._state.store = self._state.new_store()

    @writes
    def add_folder(self, folder: str | os.PathLike[str], progress: Progress | None = None,
                   frames_per_minute: int | None = None) -> IndexReport:
        """Index every image under a folder (a video as its keyframes: lookalike.video); re-running only embeds what
        changed and drops what vanished. A labels.csv (path,label[,...]) at its top labels images (report.labels)."""
        paths = list(walk_media(Path(folder)))
        self.expect(len(paths))
        with self.sync() as run:
            run.embed(paths, progress, frames_per_minute=frames_per_minute)
            run.remove_vanished(folder, paths)
            report = run.finish()
        report.labels = import_folder_labels(self, folder)
        return report

    @writes
    def add_files(self, files: Iterable[str | os.PathLike[str]], progress: Progress | None = None,
                  frames_per_minute: int | None = None) -> IndexReport:
        paths = list({os.path.abspath(f): Path(f) for f in files}.values())  # each file once
        self.expect(len(paths))
        with self.sync() as run:
            run.embed_named(paths, progress, frames_per_minute)
            return run.finish()

    @writes
    def remove_files(self, files: Iterable[str | os.PathLike[str]]) -> IndexReport:
        with self.sync() as run:
            run.remove_files(files)
            return run.finish()

    @writes
    def remove_ids(self, image_ids: Iterable[int]) -> int:
        removed = self._store.remove([i for i in image_ids if self._store.record(i) is not None])
        self._store.commit()
        self._store.save()
        return removed

    # --- search ---------------------------------------------------------------------------
    def search(self, query: str | os.PathLike[str] | bytes | int | np.ndarray | Query | Sequence[Example] | None = None,
               *, id: int | Sequence[int] | None = None, random: bool = False, seed: int | None = None,  # noqa: A002
               vector: np.ndarray | None = None, model: dict[str, Any] | None = None,
               text: str | None = None, text_weight: float | None = None, **options: Any) -> SearchResult:
        """The indexed images most like a query: an image file or its bytes, an indexed `id`, a `random`
        indexed image (`seed` repeats it) or a `vector` (made by `model`, an embedder description); or
        `text`, words (a CLIP-family index), alone or mixed with one of those (`text_weight`, default 0.5).
        A list of examples searches for what they share; `options` are Query's other fields and SearchOptions'."""
        kinds = {"id": id, "random": random, "seed": seed, "vector": vector, "model": model, "text": text,
                 "text_weight": text_weight} | {name: options.pop(name) for name in list(options) if name in QUERY_MORE}
        given = Query.of(query, **{k: v for k, v in kinds.items() if v is not None and v is not False})
        return self.search_with(given, SearchOptions.of(**options))

    def search_with(self, query: Query, options: SearchOptions) -> SearchResult:
        """The one search every door ends in (lookalike.index.searcher does it)."""
        return self.searcher.search_with(query, options)

    # --- records, vectors and labels ----------------------------------------------------------
    def records(self) -> Iterator[ImageRecord]:
        """Every indexed image, in id order."""
        return self._store.records()

    def record(self, image_id: int) -> ImageRecord | None:
        return self._store.record(int(image_id))

    def record_by_path(self, path: str | os.PathLike[str]) -> ImageRecord | None:
        """The image indexed from this file (a relative path is taken from the working folder), or None."""
        text = os.fsdecode(path)
        return self._store.record_by_path(text if "://" in text else os.path.abspath(text))

    def ids(self) -> Ids:
        return self._store.ids()

    def ids_by_path(self) -> dict[str, int]:
        return {record.path: record.id for record in self._store.records()}

    def vectors(self, image_ids: Sequence[int] | None = None) -> Any:
        """The stored full vectors of `image_ids` (a matrix); without ids, all ids and their vectors."""
        if image_ids is None:
            return (ids := self._store.ids()), self._store.vectors(ids.tolist())
        return self._store.vectors([int(i) for i in image_ids])

    def labels(self, image_id: int) -> dict[str, str]:
        return self._store.labels(int(image_id))

    def label_values(self, name: str) -> dict[int, str]:
        """Every image's value of one label (images without it are left out)."""
        return self._store.label_values(name)

    def label_counts(self) -> dict[str, dict[str, int]]:
        """Each label name, its values and how many images have each."""
        return self._store.label_counts()

    @writes
    def set_labels(self, labels: Mapping[int, Mapping[str, str]]) -> int:
        """Give images labels (id -> name -> value), replacing those of the same names, as one commit."""
        self._store.set_labels({int(image_id): values for image_id, values in labels.items()})
        self._store.commit()
        return len(labels)

    def ids_matching(self, where: WhereTerms | None = None, path_prefix: str | None = None) -> Ids:
        return self.searcher.ids_matching(SearchOptions.of(where=where, path_prefix=path_prefix))

    @property
    def generation(self) -> int:
        """Goes up with every committed change: caches of the index's vectors compare it."""
        return self._store.generation

    # --- reduction, augmentation, tuning (lookalike.index.upkeep does them) ---------------------
    @property
    def reduction(self) -> Any:
        return self._store.reduction

    @writes
    def fit_pca(self, components: int, whiten: bool = False, sample: int | None = None, seed: int = 0) -> None:
        """(Re)fit PCA on the indexed vectors (or a random sample of them, at most MAX_FIT_SAMPLE unless
        `sample` says more, so RAM stays bounded); searches then use it. SQLite keeps the full vectors,
        so refitting or removing never re-embeds."""
        self._upkeep.fit_pca(components, whiten, sample, seed)

    @writes
    def remove_pca(self) -> None:
        """Search the full vectors again; the default reduction is not fitted again later."""
        self._upkeep.remove_pca()

    @writes
    def augment(self, neighbours: int = augmentation.DEFAULT_NEIGHBOURS, alpha: float = augmentation.DEFAULT_ALPHA,
                progress: Progress | None = None) -> int:
        """(Re)build database-side augmentation: every image is searched as the blend of itself and its
        `neighbours` nearest (weighted by similarity^alpha), kept up to date after every run. The count."""
        self._state.change_manifest(augmentation_plan=augmentation.plan_augmentation(neighbours, alpha))
        return self._upkeep.augment(progress, full=True)

    @writes
    def remove_augmentation(self) -> None:
        """Search every image by its own vector again; later runs do not augment."""
        self._upkeep.remove_augmentation()

    @property
    def augmentation_text(self) -> str:
        """The index's database-side augmentation in words ("none" when off)."""
        return augmentation.describe_text(self.manifest.augmentation_plan)

    @writes
    def tune(self, target_recall: float = 0.95, sample: int = 500, k: int = 10, seed: int = 0,
             **knob: int | None) -> tuning.TuneReport:
        """Set the fastest knob reaching target_recall@k on held-out images, or yours (ef_search=, nprobe=, rerank=)."""
        return self._upkeep.tune(target_recall, sample, k, seed, knob)

    @writes
    def read_capture(self) -> capture_reads.CaptureReport:
        """Read the EXIF capture of images indexed before format 3 from their files (nothing is embedded again)."""
        return capture_reads.read_missing_capture(self._store)

    @writes
    def compact(self) -> int | None:
        """Drop deleted vectors from an HNSW or IVF-PQ index for good, or remake a Milvus collection made before
        its label_pairs field (so label filters run inside Milvus): the live count, or None for index types that
        delete in place."""
        return self._store.compact()

    # --- facts ------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        self._state.catch_up()
        embedder, manifest = self.manifest.embedder, self.manifest
        return {
            "folder": str(self.folder), "model": embedder["model"], "model_version": embedder["version"],
            "preprocessing": embedder["preprocessing"], "dimension": embedder["dimension"],
            "layer": embedder.get("layer"), "pool": embedder.get("pool"), "created": manifest.created,
            "reduction": reduction_module.describe_text(manifest.reduction), "augmentation": self.augmentation_text,
            "count": len(self._store), "index_type": manifest.index_type, "store": manifest.store or "faiss",
            "catalog": manifest.catalog or "sqlite", "disk_bytes": self._store.disk_bytes(),
        }

    def embedder_spec(self, weights: str | Path | None = None, device: str = "cpu") -> EmbedderSpec:
        """What rebuilds this index's embedder anywhere (a Ray worker, another process)."""
        return EmbedderSpec.of_index(self.manifest.embedder, weights, device)


def delete_index(folder: str | os.PathLike[str]) -> None:
    read_manifest_json(Path(folder))  # refuse to delete a folder that is not an index (of any format)
    shutil.rmtree(folder)


__all__ = ["ImageError", "ImageIndex", "IndexBusyError", "IndexFormatError", "IndexReport", "ModelMismatchError",
           "delete_index"]
