"""ImageIndex: the Python API and the only door to an index folder.

Everything else in lookalike (organising, learned similarity, Ray ingestion, the CLI and HTTP) calls
this class; none of it touches the store. Product policy lives here too: the default reduction, the
automatic index type and the checks on the embedder, so every door builds and searches alike.

Several processes may have one index open: writes take turns (each holds the folder's writer lock,
another writer gets IndexBusyError at once) and every search first catches up with what the others
committed (one small query when they committed nothing).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import random as random_module
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt

from lookalike import confidence
from lookalike import reduction as reduction_module
from lookalike.backends import backend_options, store_manifest
from lookalike.embedders import DEFAULT_MODEL, Embedder, Matrix, new_index_precision
from lookalike.embedders.spec import EmbedderSpec, ModelMismatchError, check_same_vectors, text_tower
from lookalike.expansion import GUARD_CANDIDATES, GUARD_NEIGHBOUR, diffusion_order, expanded_queries, guarded_order
from lookalike.faults import crash_point, storage_problem
from lookalike.files import walk_images
from lookalike.images import ImageError, is_image_path, load_image
from lookalike.index import augmentation
from lookalike.index import tune as tuning
from lookalike.index.autoselect import plan_index
from lookalike.index.folder import MANIFEST, IndexFolder
from lookalike.index.labels import import_folder_labels
from lookalike.index.manifest import IndexFormatError, new_manifest, read_manifest, write_manifest
from lookalike.index.store import ImageRecord, VectorStore
from lookalike.index.sync import IndexReport, Sync
from lookalike.index.writer import IndexBusyError, WriterLock
from lookalike.ingest import Failure
from lookalike.reduction import ReductionFileError, fit_pca, load_reduction, remove_reduction
from lookalike.search import (
    METRICS,
    SCOPES,
    Match,
    Query,
    ResolvedQuery,
    SearchOptions,
    SearchResult,
    learned_method_names,
    provider_of,
    scores_from_inner_products,
)

Progress = Callable[[int, int], None]  # (images done, images to do)
Ids = npt.NDArray[np.int64]
log = logging.getLogger("lookalike")
P = ParamSpec("P")
R = TypeVar("R")


def writes(method: Callable[Concatenate[ImageIndex, P], R]) -> Callable[Concatenate[ImageIndex, P], R]:
    """A write operation: it holds the index's writer lock while it runs (IndexBusyError when another
    writer has it), starts from what is committed now and, when it fails, leaves nothing half-written."""

    @functools.wraps(method)
    def writing(self: ImageIndex, *args: P.args, **kwargs: P.kwargs) -> R:
        outermost = not self._writer.held
        with self._writer.holding():
            try:
                self._catch_up()
                return method(self, *args, **kwargs)
            except BaseException:
                if outermost:
                    self._store.rollback()
                raise

    return writing


class ImageIndex:
    """A folder on disk holding image vectors and their metadata."""

    def __init__(self, folder: Path, embedder: Embedder, manifest: dict[str, Any]):
        self.folder = Path(folder)
        self.files = IndexFolder(self.folder)
        self.embedder = embedder
        self.manifest = manifest
        self._writer = WriterLock(self.files.writer_lock)
        self._catching_up = threading.Lock()
        self._floor: tuple[int, confidence.Floor | None] | None = None  # (images when calibrated, the floor)
        self._store = VectorStore(self.folder, embedder.dimension, manifest["index_type"],
                                  recorded_reduction(self.files.reduction, manifest), **backend_options(manifest))

    # --- lifecycle ------------------------------------------------------------------------
    @classmethod
    def create(cls, folder: str | os.PathLike[str], model: str | None = DEFAULT_MODEL, weights: Path | None = None,
               device: str = "cpu", layer: str | None = None, pool: str | None = None,
               store: str | None = None, index_type: str = "flat-ip", expected_count: int = 0,
               max_memory: str | int | None = None, latency_ms: float | None = None,
               pca: int | None = None, whiten: bool = False, pca_sample: int | None = None,
               dba: int | None = None, dba_alpha: float | None = None, precision: str | None = None) -> ImageIndex:
        """A new index. `store` keeps the vectors in Milvus (milvus://HOST:PORT/COLLECTION or a .db file);
        `index_type` 'auto' chooses from expected_count, max_memory and latency_ms (without expected_count,
        when the first files arrive: see `expect`). `pca` None is the
        default reduction (PCA 128, fitted once when the index first holds 1,000 images), 0 keeps the
        full vectors, N fits PCA to N as soon as there are N images. `dba` is the database-side augmentation:
        None the default (each image searched as the blend of itself and its 10 nearest, kept up to date
        after every run), 0 off, N neighbours (weighted by similarity^`dba_alpha`). `precision` 'int8' runs an
        EfficientNet-Lite model quantized, 'float32' not; None: int8 where the CPU has integer dot-product
        instructions (x86 VNNI, Arm dot product), float32 elsewhere."""
        files = IndexFolder(folder)
        if files.is_index():
            raise FileExistsError(f"an index already exists in {files.root}; open it instead")
        if not files.is_empty_or_missing() and not files.is_unfinished():
            raise FileExistsError(f"{files.root} is not empty and not a lookalike index: give a new or empty folder "
                                  "for the index (the photos themselves can be anywhere)")
        model = model or DEFAULT_MODEL
        precision = precision or new_index_precision(model, device)
        embedder = EmbedderSpec(model, layer, pool, weights, device, precision).build()
        reduction_plan = reduction_module.plan_reduction(pca, whiten, pca_sample)
        searched = reduction_module.planned_dimension(reduction_plan, embedder.dimension)
        plan = plan_index(index_type, expected_count, searched, max_memory, latency_ms)
        manifest = new_manifest(embedder.describe(), plan.index_type) | {
            "index_params": plan.params, "index_choice": plan.reasons, "reduction_plan": reduction_plan,
            "augmentation_plan": augmentation.plan_augmentation(dba, dba_alpha)} | store_manifest(store)
        if index_type == "auto" and expected_count <= 0 and store is None:
            manifest["index_type_pending"] = {"max_memory": max_memory, "latency_ms": latency_ms}
        files.root.mkdir(parents=True, exist_ok=True)
        index = cls(files.root, embedder, manifest)  # reaches the store before the folder becomes an index
        if len(index._store):  # a database that lost its manifest, not a creation killed before writing it
            index.close()
            raise FileExistsError(f"{files.root} holds images but no {files.manifest.name}: restore it from a "
                                  "backup, or index the photos again into a new folder")
        write_manifest(files.root, manifest)
        return index

    @classmethod
    def open(cls, folder: str | os.PathLike[str], weights: Path | None = None, device: str = "cpu",
             store: str | None = None) -> ImageIndex:
        folder = Path(folder)
        manifest = read_manifest(folder)
        if store is not None and store_manifest(store).get("store") != manifest.get("store"):
            raise ValueError(f"{folder} keeps its vectors in {manifest.get('store', 'faiss')}, not {store}")
        if not IndexFolder(folder).database.exists():
            raise IndexFormatError(f"{folder} has a manifest but no {IndexFolder(folder).database.name}, which holds "
                                   "its images and vectors: restore it from a backup, or index the photos again "
                                   "into a new folder")
        if IndexFolder(folder).database.stat().st_size == 0:
            raise IndexFormatError(f"{IndexFolder(folder).database} is empty, so damaged or truncated: restore it "
                                   "from a backup, or index the photos again into a new folder")
        recorded = manifest["embedder"]
        embedder = EmbedderSpec.of_index(recorded, weights, device).build_matching(recorded)
        try:
            index = cls(folder, embedder, manifest)
        except sqlite3.DatabaseError as error:  # a disk that is full or may not be written damages nothing
            raise storage_problem(error, folder) or IndexFormatError(
                f"{IndexFolder(folder).database} is damaged ({error}): restore it from a backup, or index the "
                "photos again into a new folder") from None
        index._refit_lost_reduction()
        return index

    def _refit_lost_reduction(self) -> None:
        """Derived state is rebuilt, never trusted: a reduction the manifest records whose file is missing or
        does not match (a crash between the two, a damaged file) is fitted again with the recorded settings."""
        recorded = self.manifest.get("reduction")
        if recorded is None or self.reduction is not None:
            return
        plan = self.manifest.get("reduction_plan") or {}
        self.manifest.pop("reduction")
        self.fit_pca(recorded["components"], whiten=recorded["whiten"], sample=plan.get("sample"))

    @classmethod
    def open_or_create(cls, folder: str | os.PathLike[str], model: str | None = None,
                       layer: str | None = None, pool: str | None = None, **options: Any) -> ImageIndex:
        """Open the index in folder (model, layer, pool, precision and pca, when given, must match it) or create one."""
        if not IndexFolder(folder).is_index():
            return cls.create(folder, model=model, layer=layer, pool=pool, **options)
        opening = {name: options[name] for name in ("weights", "device", "store") if name in options}
        index = cls.open(folder, **opening)
        try:
            index._check_asked(model=model, layer=layer, pool=pool, precision=options.get("precision"))
            index._check_reduction_asked(options.get("pca"), options.get("whiten", False))
            index._check_augmentation_asked(options.get("dba"), options.get("dba_alpha"))
        except (ModelMismatchError, ValueError, IndexBusyError):
            index.close()
            raise
        return index

    def _check_asked(self, **asked: str | None) -> None:
        recorded = {"precision": "float32"} | self.manifest["embedder"]
        different = [k for k, v in asked.items() if v is not None and recorded.get(k) != v]
        if different:
            built = ", ".join(f"{k} {recorded.get(k)}" for k in different)
            raise ModelMismatchError(
                f"{self.folder} was built with {built}, not {', '.join(f'{k} {asked[k]}' for k in different)}; "
                "use another index folder for another model, layer, pooling or precision"
            )

    def _check_reduction_asked(self, pca: int | None, whiten: bool) -> None:
        current = self.manifest.get("reduction")
        if pca is None and whiten:
            raise ValueError("whiten needs pca=N (the number of components)")
        if pca is None:
            return
        if pca and current is None:
            with self._writer.holding():
                self.manifest["reduction_plan"] = reduction_module.plan_reduction(pca, whiten, None)
                write_manifest(self.folder, self.manifest)
        elif pca and (current["components"], current["whiten"]) != (pca, whiten):
            raise ValueError(f"{self.folder} already has PCA to {current['components']} "
                             f"(whiten {current['whiten']}); refit explicitly with `lookalike pca`")
        elif pca == 0 and current is not None:
            raise ValueError(f"{self.folder} already has PCA to {current['components']}; "
                             "remove it with `lookalike pca --off`")

    def _check_augmentation_asked(self, dba: int | None, dba_alpha: float | None) -> None:
        if dba is None and dba_alpha is None:
            return
        asked = augmentation.plan_augmentation(dba, dba_alpha)
        if asked != self.manifest.get("augmentation_plan"):
            raise ValueError(f"{self.folder} has database-side augmentation "
                             f"{self.manifest.get('augmentation_plan') or 'off'}, not {asked or 'off'}; "
                             "change it with `lookalike dba`")

    def close(self) -> None:
        try:
            self._store.close()
        finally:
            self._writer.release_all()

    def __enter__(self) -> ImageIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        self._catch_up()
        return len(self._store)

    def _catch_up(self) -> None:
        """Search what other processes committed since this one last looked: the saved copy of the
        database's generation, else a rebuild (and their manifest, when they fitted PCA or tuned)."""
        if not self._store.is_behind():
            return
        with self._catching_up:
            manifest = read_manifest(self.folder)
            if manifest != self.manifest:
                self._adopt(manifest)
            self._store.catch_up()

    def _adopt(self, manifest: dict[str, Any]) -> None:
        """Another process's manifest: its reduction, index type and search parameters become this index's."""
        before, self.manifest = self.manifest, manifest
        reduction = self._store.reduction
        if manifest.get("reduction") != before.get("reduction"):
            reduction = recorded_reduction(self.files.reduction, manifest)
        if (reduction is not self._store.reduction or manifest["index_type"] != before["index_type"]
                or backend_options(manifest) != backend_options(before)):
            self._store.configure(manifest["index_type"], reduction, **backend_options(manifest))

    # --- keeping the index in step with the disk ------------------------------------------------
    def sync(self, report: IndexReport | None = None) -> Sync:
        """One indexing run (plan, embed, store, commit, finish): what add_folder, HTTP jobs and Ray use.
        It holds the writer lock until it is finished or closed (IndexBusyError when another writer has it)."""
        self._writer.acquire()
        try:
            self._catch_up()
            return Sync(self._store, self.files, self.embedder, report or IndexReport(), on_finish=self._after_sync,
                        on_close=self._writer.release)
        except BaseException:
            self._writer.release()
            raise

    @writes
    def expect(self, count: int) -> None:
        """About `count` images are coming: an empty index created with index_type 'auto' and no
        expected_count chooses its index type now (every door calls this before its first run)."""
        pending = self.manifest.get("index_type_pending")
        if pending is None or len(self) > 0:
            return
        searched = reduction_module.planned_dimension(self.manifest.get("reduction_plan"), self.embedder.dimension)
        plan = plan_index("auto", count, searched, pending["max_memory"], pending["latency_ms"])
        self.manifest.pop("index_type_pending")
        self.manifest |= {"index_type": plan.index_type, "index_params": plan.params, "index_choice": plan.reasons}
        write_manifest(self.folder, self.manifest)
        self._store.close()
        self._store = VectorStore(self.folder, self.embedder.dimension, plan.index_type,
                                  recorded_reduction(self.files.reduction, self.manifest),
                                  **backend_options(self.manifest))

    @writes
    def add_folder(self, folder: str | os.PathLike[str], progress: Progress | None = None) -> IndexReport:
        """Index every image under a folder; re-running only embeds what changed and drops what vanished.
        A labels.csv (path,label[,...]) at the folder's top labels its images (report.labels says what it gave)."""
        paths = list(walk_images(Path(folder)))
        self.expect(len(paths))
        with self.sync() as run:
            run.embed(paths, progress)
            run.remove_vanished(folder, paths)
            report = run.finish()
        report.labels = import_folder_labels(self, folder)
        return report

    @writes
    def add_files(self, files: Iterable[str | os.PathLike[str]], progress: Progress | None = None) -> IndexReport:
        paths = list({os.path.abspath(f): Path(f) for f in files}.values())  # each file once
        self.expect(len(paths))
        with self.sync() as run:
            run.fail(Failure(p, "not a supported image type (by extension)") for p in paths
                     if not is_image_path(p) and p.exists())
            run.embed([p for p in paths if is_image_path(p) or not p.exists()], progress)
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

    def _after_sync(self, report: IndexReport) -> None:
        """Product policy after every indexing run: fit the planned reduction once the index is big enough."""
        plan = self.manifest.get("reduction_plan", reduction_module.DEFAULT_PLAN)
        if plan and "reduction" not in self.manifest and len(self) >= plan["min_images"]:
            self.fit_pca(plan["components"], whiten=plan["whiten"], sample=plan["sample"])
            report.reduction = self.info()["reduction"]
        else:
            self._augment()

    # --- search ---------------------------------------------------------------------------
    def search(self, query: str | os.PathLike[str] | bytes | int | np.ndarray | Query | None = None, *,
               id: int | None = None, random: bool = False, seed: int | None = None,  # noqa: A002
               vector: np.ndarray | None = None, model: dict[str, Any] | None = None,
               text: str | None = None, text_weight: float | None = None, **options: Any) -> SearchResult:
        """The indexed images most like a query: an image file or its bytes, an indexed `id`, a `random`
        indexed image (`seed` repeats it) or a `vector` (made by `model`, an embedder description); or
        `text`, words (a CLIP-family index), alone or mixed with one of those (`text_weight`, default 0.5).
        `options` are SearchOptions: k, method, min_score, where, path_prefix, by_class,
        class_confidence, by_cluster."""
        kinds = {"id": id, "random": random, "seed": seed, "vector": vector, "model": model, "text": text,
                 "text_weight": text_weight}
        given = Query.of(query, **{k: v for k, v in kinds.items() if v is not None and v is not False})
        return self.search_with(given, SearchOptions.of(**options))

    def search_with(self, query: Query, options: SearchOptions) -> SearchResult:
        """The one search every door ends in: resolve the query once, narrow by scopes and filters, rank."""
        self._catch_up()
        provider = provider_of(self, options.method) if options.is_learned else None  # raises on an unknown one
        resolved = self.resolve(query)
        where, predicted = self._narrowed(resolved, options)
        timings = dict(resolved.timings)
        started = time.perf_counter()
        allowed = self._store.ids_matching(where, options.path_prefix) if where or options.path_prefix else None
        exclude = {resolved.id} if resolved.id is not None else set()
        if allowed is not None and len(allowed) == 0:
            ids, scores = np.zeros(0, np.int64), np.zeros(0, np.float32)
        elif provider is not None:
            ids, scores = provider.rank(self, resolved.vector, options.method, options.k, exclude, allowed)
        else:
            ids, scores = self._ranked(resolved.vector, options, exclude, allowed)
        timings["search"] = (time.perf_counter() - started) * 1e3
        found = [(int(i), float(s)) for i, s in zip(ids, scores, strict=True)
                 if i >= 0 and int(i) not in exclude and (options.min_score is None or s >= options.min_score)]
        matches = self._readable(self._matches(found)[:options.k], resolved)
        judged = confidence.judge(self._best_cosine(matches, resolved.vector),
                                  None if query.text is not None else self._confidence_floor(),
                                  bool(where or options.path_prefix), predicted,
                                  matches[0].similarity if matches else None)
        return SearchResult(matches, resolved.label, options.method, timings, predicted, resolved.id,
                            judged.low_confidence, judged.note)

    def resolve(self, query: Query) -> ResolvedQuery:
        """A query as a vector, once: a stored vector for an indexed image (its file unchanged), else embedded;
        words are embedded by the text tower, and mixed with the rest by their weight."""
        if query.text is not None:
            return self._resolve_text(query)
        if query.random:
            query = Query(id=self.random_id(query.seed))
        if query.id is not None:
            record = self._store.record(query.id)
            if record is None:
                raise KeyError(f"no image with id {query.id} in the index")
            return ResolvedQuery(self._store.vectors([query.id])[0], record.path, record.id, photo=record.path)
        if query.vector is not None:
            return ResolvedQuery(self._checked_vector(query.vector, query.model), "<vector>")
        assert query.image is not None
        if not isinstance(query.image, bytes):
            known = self._store.record_by_path(os.path.abspath(query.image))
            if known is not None and known.size == os.path.getsize(query.image):
                return ResolvedQuery(self._store.vectors([known.id])[0], known.path, known.id, photo=known.path)
        vector, timings = self.embed_image(query.image)
        label = "<uploaded image>" if isinstance(query.image, bytes) else os.fsdecode(query.image)
        photo = query.image if isinstance(query.image, bytes) else os.fsdecode(query.image)
        return ResolvedQuery(vector, label, None, timings, photo)

    def _resolve_text(self, query: Query) -> ResolvedQuery:
        words, timings = self.embed_text(query.text or "")
        label = f'"{query.text}"'
        rest = query.without_text()
        if rest is None:
            return ResolvedQuery(words, label, None, timings)
        other = self.resolve(rest)
        mixed = query.text_weight * words + (1.0 - query.text_weight) * other.vector
        mixed /= max(float(np.linalg.norm(mixed)), 1e-12)
        return ResolvedQuery(mixed.astype(np.float32), f"{other.label} + {label}", other.id, other.timings | timings)

    def embed_text(self, text: str) -> tuple[np.ndarray, dict[str, float]]:
        """Words as a vector comparable with the indexed images', with the time it took (ms). An index whose
        model has no text tower raises NoTextTowerError (a ValueError) saying so."""
        tower = text_tower(self.embedder)
        started = time.perf_counter()
        vector = tower.embed_texts([text])[0]
        return vector, {"embed_text": (time.perf_counter() - started) * 1e3}

    def embed_image(self, image: str | os.PathLike[str] | bytes) -> tuple[np.ndarray, dict[str, float]]:
        """One query image as a vector, with decode and embed times (ms). Bad images raise ImageError."""
        started = time.perf_counter()
        decoded = load_image(image, target_side=self.embedder.input_side)
        tensor = self.embedder.preprocess(decoded)
        decoded_at = time.perf_counter()
        vector = self.embedder.embed_batch(tensor[None])[0]
        embedded_at = time.perf_counter()
        return vector, {"decode": (decoded_at - started) * 1e3, "embed": (embedded_at - decoded_at) * 1e3}

    def _checked_vector(self, vector: np.ndarray, model: dict[str, Any] | None) -> np.ndarray:
        if model is not None:
            check_same_vectors(self.manifest["embedder"], model)
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.embedder.dimension:
            reduced = " (reduced by PCA inside the index: give the model's full vector)" if self.reduction else ""
            raise ModelMismatchError(
                f"query vector has {vector.shape[0]} dimensions, the index holds {self.embedder.dimension}{reduced}"
            )
        return vector

    def _narrowed(self, query: ResolvedQuery,
                  options: SearchOptions) -> tuple[dict[str, tuple[str, ...]], dict[str, float] | None]:
        """`where` with every scope the options ask for (by_class, by_cluster) added."""
        missing = [name for name in ("by_class", "by_cluster") if getattr(options, name) is not None
                   and name not in SCOPES]
        if missing:
            raise ValueError(f"{', '.join(missing)} needs lookalike.organise, which is not installed")
        where = self._known_where(options.where)
        predicted = None
        for option, rule in SCOPES.items():
            if getattr(options, option) is None:
                continue
            scope = rule.narrow(self, query.vector, options)
            wanted = where.get(scope.name)  # a filter on the same label keeps only values both allow
            where[scope.name] = scope.values if wanted is None else tuple(v for v in wanted if v in scope.values)
            predicted = scope.predicted_class or predicted
        return where, predicted

    def _ranked(self, vector: np.ndarray, options: SearchOptions, exclude: set[int],
                allowed: Ids | None) -> tuple[Ids, np.ndarray]:
        """The vector index's answer, re-ranked by the expansion the options ask for (within `allowed`), with the
        guard that keeps near matches first whenever the answer was re-ranked (expansion.guarded_order)."""
        if self._store.is_empty():  # not len(): COUNT(*) reads every row, 7 ms a search at 1M
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        expansion, wanted = options.expansion, options.k + len(exclude)
        augmented = self.manifest.get("augmentation_plan") is not None
        guarded = expansion.method != "diffusion" and (expansion.active or augmented)
        query = self._store.to_searchable(vector.reshape(1, -1))
        ids, inner = self._answer(query, max(expansion.candidates(wanted), GUARD_CANDIDATES if guarded else 0), allowed)
        if expansion.method == "diffusion":
            return diffusion_order(query[0], ids, self._store.indexed_vectors(ids.tolist()), expansion)
        ranked_ids, ranked = ids, inner
        if expansion.blends and len(ids):
            count = min(expansion.neighbours, len(ids))
            expanded = expanded_queries(query, inner[None, :count],
                                        self._store.indexed_vectors(ids[:count].tolist())[None], expansion.alpha)
            ranked_ids, ranked = self._answer(expanded, wanted, allowed)
        if guarded:
            candidates = ids[~np.isin(ids, list(exclude))]
            floors = self._store.neighbour_floors(candidates.tolist(), GUARD_NEIGHBOUR) if augmented else None
            plain = self._store.searchable_vectors(candidates.tolist()) @ query[0]
            ranked_ids, ranked = guarded_order(ranked_ids, ranked, candidates, plain, floors)
        return ranked_ids[:wanted], scores_from_inner_products(ranked[:wanted], options.method)

    def _answer(self, searchable: np.ndarray, count: int, allowed: Ids | None) -> tuple[Ids, np.ndarray]:
        inner, ids = self._store.search(searchable, count, allowed_ids=allowed, searchable=True)
        found = ids[0] >= 0  # the backend pads with -1 when fewer images are allowed than asked for
        return ids[0][found], inner[0][found]

    def nearest(self, vector: np.ndarray, count: int, allowed: Ids | None = None) -> tuple[Ids, np.ndarray]:
        """Ids and cosines of the `count` indexed images nearest a vector (candidates for re-ranking)."""
        self._catch_up()
        if self._store.is_empty():  # not len(): COUNT(*) reads every row, 7 ms a search at 1M
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        inner, ids = self._store.search(np.asarray(vector, np.float32).reshape(1, -1), count, allowed_ids=allowed)
        keep = ids[0] >= 0
        return ids[0][keep], inner[0][keep]

    def methods(self) -> list[str]:
        """The search methods this index offers: cosine, euclidean and the learned ones trained for it."""
        return [*METRICS, *learned_method_names(self)]

    def scopes(self) -> dict[str, bool]:
        """Each scope option (by_class, by_cluster) and whether this index can use it now."""
        return {option: rule.available(self) for option, rule in SCOPES.items()}

    def random_id(self, seed: int | None = None) -> int:
        count = len(self._store)
        if count == 0:
            raise ValueError("the index is empty: nothing to pick at random")
        return self._store.id_at(random_module.Random(seed).randrange(count))

    def _readable(self, matches: list[Match], query: ResolvedQuery) -> list[Match]:
        """Matches with their plain similarity to the query (the index's space) and whether each is the same photo."""
        if not matches:
            return matches
        searchable = self._store.to_searchable(query.vector.reshape(1, -1))[0]
        similarities = self._store.searchable_vectors([m.id for m in matches]) @ searchable
        return [dataclasses.replace(m, similarity=float(s),
                                    same_photo=rank < confidence.CHECKED_MATCHES
                                    and confidence.is_same_photo(float(s), query.photo, m.path))
                for rank, (m, s) in enumerate(zip(matches, similarities, strict=True))]

    def _best_cosine(self, matches: list[Match], vector: np.ndarray) -> float | None:
        """The full-vector cosine of the query and its first match (what the confidence floor compares)."""
        if not matches:
            return None
        return float(confidence.best_cosines(vector.reshape(1, -1), self._store.vectors([matches[0].id]))[0])

    def _confidence_floor(self) -> confidence.Floor | None:
        """This index's own floor (lookalike.confidence), calibrated once and again when it grew or shrank a tenth."""
        count = self._store.searchable_count()
        calibrated = self._floor
        if calibrated is not None and (calibrated[1] is None and calibrated[0] == count
                                       or calibrated[1] is not None and not calibrated[1].is_stale(count)):
            return calibrated[1]
        floor = None
        if count >= confidence.MIN_IMAGES:
            ids = self._store.ids()
            sample = np.random.default_rng(0).choice(ids, min(confidence.CALIBRATION_SAMPLE, len(ids)), replace=False)
            full = self._store.vectors(sample.tolist())
            _, found = self._store.search(full, 2)
            best = np.where(found[:, 0] == sample, found[:, 1], found[:, 0])
            keep = best >= 0
            cosines = confidence.best_cosines(full[keep], self._store.vectors(best[keep].tolist()))
            floor = confidence.floor_from(cosines, count)
        self._floor = (count, floor)
        return floor

    def _matches(self, found: list[tuple[int, float]]) -> list[Match]:
        """Found (id, score) pairs as matches, in order, with two queries for all of them (two per match cost
        0.25 ms a search); an image another process removed since the search is left out."""
        records = self._store.records_of([image_id for image_id, _ in found])
        labels = self._store.labels_of(list(records))
        return [Match(image_id, records[image_id].path, score, labels.get(image_id, {}))
                for image_id, score in found if image_id in records]

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
            ids = self._store.ids()
            return ids, self._store.vectors(ids.tolist())
        return self._store.vectors([int(i) for i in image_ids])

    def searchable_vectors(self, image_ids: Sequence[int]) -> Matrix:
        """Vectors as searches compare them (reduced, when the index has a reduction)."""
        return self._store.searchable_vectors([int(i) for i in image_ids])

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
        for image_id, values in labels.items():
            self._store.set_labels(int(image_id), dict(values))
        self._store.commit()
        return len(labels)

    def ids_matching(self, where: Mapping[str, str | Sequence[str]] | None = None,
                     path_prefix: str | None = None) -> Ids:
        return self._store.ids_matching(self._known_where(SearchOptions.of(where=where).where), path_prefix)

    def _known_where(self, where: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        """`where` in the index's spelling (case is ignored); a label name or value no image has raises
        UnknownLabelError (a ValueError) naming the ones that exist. Every door's filter passes here."""
        return self._store.label_catalog().resolve(where) if where else {}

    @property
    def generation(self) -> int:
        """Goes up with every committed change: caches of the index's vectors compare it."""
        return self._store.generation

    # --- reduction, tuning and upkeep -----------------------------------------------------------
    @property
    def reduction(self) -> Any:
        return self._store.reduction

    @writes
    def fit_pca(self, components: int, whiten: bool = False, sample: int | None = None, seed: int = 0) -> None:
        """(Re)fit PCA on the indexed vectors (or a random sample of them, at most MAX_FIT_SAMPLE unless
        `sample` says more, so RAM stays bounded); searches then use it. SQLite keeps the full vectors,
        so refitting or removing never re-embeds."""
        ids = self._store.ids()
        sample = reduction_module.MAX_FIT_SAMPLE if sample is None else sample
        if sample < len(ids):
            ids = np.sort(np.random.default_rng(seed).choice(ids, size=sample, replace=False))
        reduction = fit_pca(self._store.vectors(ids.tolist()), components, whiten)
        self._store.use_reduction(reduction)  # new generation first: a crash from here on rebuilds on open
        reduction.save(self.files.reduction)
        self.manifest["reduction"] = reduction.describe()
        write_manifest(self.folder, self.manifest)
        self._store.mark_changed()  # other processes reload once the reduction beside the database is written
        self._store.save()
        self._augment()  # the reduction dropped the augmented vectors: they live in its space

    @writes
    def remove_pca(self) -> None:
        """Search the full vectors again; the default reduction is not fitted again later."""
        self._store.use_reduction(None)
        remove_reduction(self.files.reduction)
        self.manifest.pop("reduction", None)
        self.manifest["reduction_plan"] = None
        write_manifest(self.folder, self.manifest)
        self._store.mark_changed()
        self._store.save()
        self._augment()

    # --- database-side augmentation (see augmentation.py) ---------------------------------------
    @writes
    def augment(self, neighbours: int = augmentation.DEFAULT_NEIGHBOURS, alpha: float = augmentation.DEFAULT_ALPHA,
                progress: Progress | None = None) -> int:
        """(Re)build database-side augmentation: every image is searched as the blend of itself and its
        `neighbours` nearest (weighted by similarity^alpha), kept up to date after every run. The count."""
        self.manifest["augmentation_plan"] = augmentation.plan_augmentation(neighbours, alpha)
        write_manifest(self.folder, self.manifest)
        return self._augment(progress, full=True)

    @writes
    def remove_augmentation(self) -> None:
        """Search every image by its own vector again; later runs do not augment."""
        self.manifest["augmentation_plan"] = None
        write_manifest(self.folder, self.manifest)
        self._store.drop_augmented()
        self._store.commit()
        self._store.save()

    def _augment(self, progress: Progress | None = None, full: bool = False) -> int:
        """Bring the augmented vectors up to date with the images, in one commit: a full build when asked or
        when none exist yet, else only what the changes since the last pass touched. Images augmented."""
        plan = augmentation.AugmentationPlan.of(self.manifest.get("augmentation_plan"))
        if plan is None:
            return 0
        changed = self._store.changed_vector_ids()
        if not full and not changed and self._store.augmented_count() == len(self._store):
            return 0  # every image has its augmented vector (rows of removed images go with them)
        graph = augmentation.Graph(*self._store.augmented_graph())
        ids = self._store.ids()
        vectors = self._store.searchable_vectors(ids.tolist())
        if (full or len(graph.ids) == 0 or graph.neighbours.shape[1] != plan.neighbours
                or augmentation.rebuild_is_cheaper(graph, ids, changed)):
            graph, rows_vectors = augmentation.augment_all(ids, vectors, plan, progress)
            touched = graph.ids
        else:
            graph, touched = augmentation.update(graph, ids, vectors, changed, plan)
            rows_vectors = augmentation.augmented_rows(graph, np.searchsorted(graph.ids, touched), ids, vectors,
                                                       plan.alpha)
        rows = np.searchsorted(graph.ids, touched)
        self._store.set_augmented(touched, graph.neighbours[rows], graph.similarities[rows], rows_vectors,
                                  rebuild=len(touched) > len(ids) // 10)
        crash_point("augmentation.writing")
        self._store.commit()
        self._store.save()
        return len(touched)

    @property
    def augmentation_text(self) -> str:
        """The index's database-side augmentation in words ("none" when off)."""
        return augmentation.describe_text(self.manifest.get("augmentation_plan"))

    def to_searchable(self, vectors: np.ndarray) -> Matrix:
        """Full vectors (a model's output) as this index compares them: reduced when it has a reduction."""
        return self._store.to_searchable(np.asarray(vectors, np.float32).reshape(-1, self.embedder.dimension))

    def neighbour_floors(self, image_ids: Sequence[int]) -> Matrix:
        """Each image's similarity to its GUARD_NEIGHBOUR-th nearest (the guard's floor; +inf before DBA ran)."""
        self._catch_up()
        return self._store.neighbour_floors([int(i) for i in image_ids], GUARD_NEIGHBOUR)

    def indexed_vectors(self, image_ids: Sequence[int]) -> Matrix:
        """Vectors as searches find them: augmented (when the index augments), reduced (when it has a reduction)."""
        self._catch_up()
        return self._store.indexed_vectors([int(i) for i in image_ids])

    @writes
    def tune(self, target_recall: float = 0.95, sample: int = 500, k: int = 10, seed: int = 0) -> tuning.TuneReport:
        """Measure recall@k on `sample` of the index's own vectors, set the fastest search parameters that
        reach `target_recall` and record them in the manifest."""
        report = tuning.tune_store(self._store, target_recall, sample, k, seed)
        if report.params:
            self.manifest["index_params"] = {**self.manifest.get("index_params", {}), **report.params}
            self.manifest["tuned"] = {"target_recall": target_recall, "recall": round(report.recall, 4),
                                      "sample": min(sample, len(self)), "k": k}
            write_manifest(self.folder, self.manifest)
        return report

    @writes
    def compact(self) -> int | None:
        """Drop deleted vectors from an HNSW or IVF-PQ index for good: the live count, or None for index
        types that delete in place."""
        return self._store.compact()

    # --- facts ------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        self._catch_up()
        embedder = self.manifest["embedder"]
        return {
            "folder": str(self.folder),
            "model": embedder["model"],
            "model_version": embedder["version"],
            "preprocessing": embedder["preprocessing"],
            "dimension": embedder["dimension"],
            "layer": embedder.get("layer"),
            "pool": embedder.get("pool"),
            "reduction": reduction_module.describe_text(self.manifest.get("reduction")),
            "augmentation": self.augmentation_text,
            "count": len(self._store),
            "index_type": self.manifest["index_type"],
            "store": self.manifest.get("store", "faiss"),
            "disk_bytes": self._store.disk_bytes(),
            "created": self.manifest["created"],
        }

    def embedder_spec(self, weights: str | Path | None = None, device: str = "cpu") -> EmbedderSpec:
        """What rebuilds this index's embedder anywhere (a Ray worker, another process)."""
        return EmbedderSpec.of_index(self.manifest["embedder"], weights, device)


def recorded_reduction(path: Path, manifest: dict[str, Any]) -> Any:
    """The reduction file, only when it is the one the manifest records (same digest); else None."""
    recorded = manifest.get("reduction")
    if recorded is None:
        return None
    try:
        reduction = load_reduction(path)
    except ReductionFileError as damaged:
        log.warning("lookalike: %s; it is fitted again from the full vectors", damaged)
        return None
    if reduction is not None and not reduction.is_recorded_as(recorded["digest"]):
        log.warning("lookalike: %s is not the reduction %s records (another digest); it is fitted again from the "
                    "full vectors", path, MANIFEST)
        return None
    return reduction


def delete_index(folder: str | os.PathLike[str]) -> None:
    read_manifest(Path(folder))  # refuse to delete a folder that is not an index
    shutil.rmtree(folder)


__all__ = ["ImageError", "ImageIndex", "IndexBusyError", "IndexFormatError", "IndexReport", "ModelMismatchError",
           "delete_index"]
