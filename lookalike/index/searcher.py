"""The search half of an index: a query resolved to a vector once, narrowed by scopes and filters, ranked
(with the expansion the options ask for and the guard that keeps near matches first), its matches made
readable (similarity, same photo) and judged (lookalike.confidence against the index's own floor).

ImageIndex.search_with hands each search here whole; scopes and learned methods are given the ImageIndex.
"""

from __future__ import annotations

import os
import random as random_module
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lookalike import confidence, cutoff
from lookalike.backends.filters import Filter
from lookalike.capture_filter import taken_order
from lookalike.embedders import Matrix
from lookalike.embedders.spec import ModelMismatchError, check_same_vectors, text_tower
from lookalike.errors import NotFoundError, RequestError
from lookalike.expansion import GUARD_CANDIDATES, GUARD_NEIGHBOUR, diffusion_order, expanded_queries, guarded_order
from lookalike.images import Box, load_image
from lookalike.index import described
from lookalike.index.examples import resolve_examples
from lookalike.index.read_vectors import ReadVectors
from lookalike.index.resident import ResidentGuard, indexed_vectors
from lookalike.search import (
    METRICS,
    SCOPES,
    Index,
    Match,
    Query,
    ResolvedQuery,
    SearchOptions,
    SearchResult,
    learned_method_names,
    provider_of,
    scores_from_inner_products,
)

if TYPE_CHECKING:
    from lookalike.index.state import IndexState
    from lookalike.index.store import VectorStore

Ids = npt.NDArray[np.int64]


class Searcher:
    """Every search of one index, and the vectors a search is made of."""

    def __init__(self, state: IndexState, index: Index):
        """`index` is the ImageIndex that scopes and learned methods are given."""
        self._state = state
        self.index = index
        self._floor: tuple[int, confidence.Floor | None] | None = None  # (images when calibrated, the floor)
        self.resident = ResidentGuard(GUARD_NEIGHBOUR)  # the guard's rows in memory (lookalike.index.resident)

    @property
    def _store(self) -> VectorStore:
        return self._state.store  # looked up each time: choosing an 'auto' index type replaces the store

    def search_with(self, query: Query, options: SearchOptions) -> SearchResult:
        """The one search every door ends in: resolve the query once, narrow by scopes and filters, rank."""
        self._state.catch_up()
        provider = provider_of(self.index, options.method) if options.is_learned else None  # raises on an unknown one
        resolved = self.resolve(query)
        where, predicted = self._narrowed(resolved, options)
        timings = dict(resolved.timings)
        started = time.perf_counter()
        allowed = self._allowed(where, options, inside=provider is None)
        exclude, read = resolved.excluded, ReadVectors()
        if isinstance(allowed, np.ndarray) and len(allowed) == 0:
            ids, scores = np.zeros(0, np.int64), np.zeros(0, np.float32)
        elif provider is not None:
            ids, scores = provider.rank(self.index, resolved.vector, options.method, options.limit, exclude, allowed)
        else:
            ids, scores = self._ranked(resolved.vector, options, exclude, allowed, read)
        timings["search"] = (time.perf_counter() - started) * 1e3
        found = [(int(i), float(s)) for i, s in zip(ids, scores, strict=True)
                 if i >= 0 and int(i) not in exclude and (options.min_score is None or s >= options.min_score)]
        matches = self._matches(found, resolved, read, options.limit)
        if options.k == cutoff.AUTO:
            matches = self._belonging(matches)
        judged = confidence.judge(self._best_cosine(matches, resolved.vector, read),
                                  None if query.text is not None else self._confidence_floor(),
                                  allowed is not None, predicted,
                                  matches[0].similarity if matches and matches[0].same_photo else None)
        if options.sort is not None:  # the k best, by the time taken (judged above as ranked)
            matches = [matches[i] for i in taken_order([m.taken for m in matches], options.sort.startswith("-"))]
        return SearchResult(matches, resolved.label, options.method, timings, predicted, resolved.id,
                            judged.low_confidence, judged.note)

    def resolve(self, query: Query) -> ResolvedQuery:
        """A query as a vector, once: a stored vector for an indexed image (its file unchanged), else embedded;
        words are embedded by the text tower, and mixed with the rest by their weight. Several examples are
        combined (lookalike.index.examples); a crop embeds that box of the image (or of the indexed file)."""
        if query.has_examples:
            return resolve_examples(self.resolve, query)
        if query.text is not None:
            return self._resolve_text(query)
        if query.random:
            query = Query(id=self.random_id(query.seed), crop=query.crop)
        if query.id is not None:
            found = self._store.record_with_vector(query.id)
            if found is None:
                raise NotFoundError(f"no image with id {query.id} in the index")
            record, vector = found
            if query.crop is not None:
                return self._resolve_crop(record.path, query.crop, record.path, record.id)
            return ResolvedQuery(vector, record.path, record.id, photo=record.path)
        if query.vector is not None:
            return ResolvedQuery(self._checked_vector(query.vector, query.model), "<vector>")
        assert query.image is not None
        label = "<uploaded image>" if isinstance(query.image, bytes) else os.fsdecode(query.image)
        if query.crop is not None:
            return self._resolve_crop(query.image, query.crop, label)
        if not isinstance(query.image, bytes):
            known = self._store.record_by_path(os.path.abspath(query.image))
            if known is not None and known.size == os.path.getsize(query.image):
                return ResolvedQuery(self._store.vectors([known.id])[0], known.path, known.id, photo=known.path)
        vector, timings = self.embed_image(query.image)
        photo = query.image if isinstance(query.image, bytes) else os.fsdecode(query.image)
        return ResolvedQuery(vector, label, None, timings, photo)

    def _resolve_crop(self, image: str | os.PathLike[str] | bytes, crop: Box, label: str,
                      image_id: int | None = None) -> ResolvedQuery:
        """A box of an image (a file, bytes or an indexed image's file) embedded as a photo of its own; the indexed
        image it was cut from is left out of the results."""
        vector, timings = self.embed_image(image, crop)
        return ResolvedQuery(vector, f"{label} [{','.join(map(str, crop))}]", image_id, timings)

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
        tower = text_tower(self._state.embedder)
        started = time.perf_counter()
        vector = tower.embed_texts([text])[0]
        return vector, {"embed_text": (time.perf_counter() - started) * 1e3}

    def embed_image(self, image: str | os.PathLike[str] | bytes,
                    crop: Box | None = None) -> tuple[np.ndarray, dict[str, float]]:
        """One query image (or its `crop` box) as a vector, with decode and embed times (ms). Bad images raise
        ImageError, a box outside the photo RequestError."""
        started = time.perf_counter()
        decoded = load_image(image, target_side=self._state.embedder.input_side, crop=crop)
        tensor = self._state.embedder.preprocess(decoded)
        decoded_at = time.perf_counter()
        vector = self._state.embedder.embed_batch(tensor[None])[0]
        embedded_at = time.perf_counter()
        return vector, {"decode": (decoded_at - started) * 1e3, "embed": (embedded_at - decoded_at) * 1e3}

    def _checked_vector(self, vector: np.ndarray, model: dict[str, Any] | None) -> np.ndarray:
        if model is not None:
            check_same_vectors(self._state.manifest.embedder, model)
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        dimension = self._state.embedder.dimension
        if vector.shape[0] != dimension:
            reduced = ""
            if self._store.reduction:
                reduced = " (reduced by PCA inside the index: give the model's full vector)"
            raise ModelMismatchError(
                f"query vector has {vector.shape[0]} dimensions, the index holds {dimension}{reduced}"
            )
        return vector

    def _narrowed(self, query: ResolvedQuery,
                  options: SearchOptions) -> tuple[dict[str, tuple[str, ...]], dict[str, float] | None]:
        """`where` with every scope the options ask for (by_class, by_cluster) added."""
        missing = [name for name in options.scopes_asked if name not in SCOPES]
        if missing:
            raise RequestError(f"{', '.join(missing)} needs lookalike.organise, which is not installed")
        where = self.known_where(options.capture_filter[0])
        predicted = None
        for option in options.scopes_asked:
            scope = SCOPES[option].narrow(self.index, query.vector, options)
            wanted = where.get(scope.name)  # a filter on the same label keeps only values both allow
            where[scope.name] = scope.values if wanted is None else tuple(v for v in wanted if v in scope.values)
            predicted = scope.predicted_class or predicted
        return where, predicted

    def _ranked(self, vector: np.ndarray, options: SearchOptions, exclude: set[int],
                allowed: Ids | Filter | None, read: ReadVectors) -> tuple[Ids, np.ndarray]:
        """The vector index's answer, re-ranked by the expansion the options ask for (within `allowed`), with the
        guard that keeps near matches first whenever the answer was re-ranked (expansion.guarded_order); what it
        reads is kept in `read`."""
        if self._store.is_empty():  # not len(): COUNT(*) reads every row, 7 ms a search at 1M
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        expansion, wanted = options.expansion, options.limit + len(exclude)
        augmented = self._state.manifest.augmentation_plan is not None
        guarded = expansion.method != "diffusion" and (expansion.active or augmented)
        query = self._store.to_searchable(vector.reshape(1, -1))
        read.query = query[0]
        ids, inner = self._answer(query, max(expansion.candidates(wanted), GUARD_CANDIDATES if guarded else 0), allowed)
        if expansion.method == "diffusion":
            return diffusion_order(query[0], ids, self._store.indexed_vectors(ids.tolist()), expansion)
        ranked_ids, ranked = ids, inner
        if expansion.blends and len(ids):
            count = min(expansion.neighbours, len(ids))
            expanded = expanded_queries(query, inner[None, :count], indexed_vectors(self._store, ids[:count])[None],
                                        expansion.alpha)
            ranked_ids, ranked = self._answer(expanded, wanted, allowed)
        if guarded:
            ranked_ids, ranked = guarded_order(ranked_ids, ranked,
                                               *self.resident.compared(self._store, ids, exclude, augmented, read))
        return ranked_ids[:wanted], scores_from_inner_products(ranked[:wanted], options.method)

    def _answer(self, searchable: np.ndarray, count: int, allowed: Ids | Filter | None) -> tuple[Ids, np.ndarray]:
        inner, ids = self._store.search(searchable, count, allowed_ids=allowed, searchable=True)
        found = ids[0] >= 0  # the backend pads with -1 when fewer images are allowed than asked for
        return ids[0][found], inner[0][found]

    def nearest(self, vector: np.ndarray, count: int, allowed: Ids | None = None) -> tuple[Ids, np.ndarray]:
        """Ids and cosines of the `count` indexed images nearest a vector (candidates for re-ranking)."""
        self._state.catch_up()
        if self._store.is_empty():  # not len(): COUNT(*) reads every row, 7 ms a search at 1M
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        inner, ids = self._store.search(np.asarray(vector, np.float32).reshape(1, -1), count, allowed_ids=allowed)
        keep = ids[0] >= 0
        return ids[0][keep], inner[0][keep]

    def methods(self) -> list[str]:
        """The search methods this index offers: cosine, euclidean and the learned ones trained for it."""
        return [*METRICS, *learned_method_names(self.index)]

    def scopes(self) -> dict[str, bool]:
        """Each scope option (by_class, by_cluster) and whether this index can use it now."""
        return {option: rule.available(self.index) for option, rule in SCOPES.items()}

    def random_id(self, seed: int | None = None) -> int:
        """The id at a random position in id order (the same for the same seed and images): from the guard's ids in
        memory when they are there, else the database walks its table to it (57 ms at 100,000 images)."""
        ids = getattr(self.resident.held(self._store), "ids", None)
        if (count := len(self._store) if ids is None else len(ids)) == 0:
            raise RequestError("the index is empty: nothing to pick at random")
        position = random_module.Random(seed).randrange(count)
        return self._store.id_at(position) if ids is None else int(ids[position])

    def _belonging(self, matches: list[Match]) -> list[Match]:
        """k="auto": the matches the query comes before the BELONG_NEIGHBOUR-th neighbour of (lookalike.cutoff);
        each image's neighbour floor from the augmentation's graph, else from a search of its own vector."""
        ids = [m.id for m in matches]
        floors = self._store.neighbour_floors(ids, cutoff.BELONG_NEIGHBOUR)
        missing = ~np.isfinite(floors)
        if missing.any():
            unknown = np.asarray(ids, np.int64)[missing]
            inner, found = self._store.search(self._store.searchable_vectors(unknown.tolist()),
                                              cutoff.BELONG_NEIGHBOUR + 1, searchable=True)
            floors[missing] = cutoff.kth_other_similarity(inner, found, unknown)
        kept = cutoff.belonging(np.array([m.similarity for m in matches], np.float32), floors)
        return [m for m, keep in zip(matches, kept, strict=True) if keep]

    def _best_cosine(self, matches: list[Match], vector: np.ndarray, read: ReadVectors) -> float | None:
        """The full-vector cosine of the query and its first match (what the confidence floor compares)."""
        if not matches:
            return None
        full = read.full_vector(self._store, matches[0].id).reshape(1, -1)
        return float(confidence.best_cosines(vector.reshape(1, -1), full)[0])

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

    def _matches(self, found: list[tuple[int, float]], query: ResolvedQuery, read: ReadVectors,
                 limit: int) -> list[Match]:
        """The first `limit` found (id, score) pairs as matches, in order, with their plain similarity to the query
        (the index's space; what the ranking read already, `read`, is not read again) and whether each is the same
        photo. What they show comes from the guard's rows in memory when it holds them, else from two queries for all
        of them (two per match cost 0.25 ms a search); an image another process removed since the search is left out."""
        shown = self.resident.shown(self._store, [image_id for image_id, _ in found], limit)
        kept = [(image_id, score) for image_id, score in found if image_id in shown][:limit]
        similarities = read.similarities(self._store, [image_id for image_id, _ in kept], query.vector) if kept else []
        matches = []
        for rank, ((image_id, score), similarity) in enumerate(zip(kept, similarities, strict=True)):
            path, labels, capture = shown[image_id]
            same = rank < confidence.CHECKED_MATCHES and confidence.is_same_photo(similarity, query.photo, path)
            matches.append(Match(image_id, path, score, labels, similarity, same, **capture))
        return matches

    def _allowed(self, where: Mapping[str, tuple[str, ...]], options: SearchOptions,
                 inside: bool = False) -> Ids | Filter | None:
        """The ids that `where` (labels, as the index spells them), path_prefix and the capture filters allow; None
        when none is set (every image); the filter itself when `inside` a search by a backend that applies it where
        its vectors are (Milvus: lookalike.index.described)."""
        capture = options.capture_filter[1]
        if not (where or options.path_prefix or capture):
            return None
        if inside and described.applies_inside(self._store.backend, Filter(where, options.path_prefix, capture)):
            return Filter(where, options.path_prefix, capture)
        return self._store.ids_matching(where, options.path_prefix, capture)

    def ids_matching(self, options: SearchOptions) -> Ids:
        """The ids the filters of `options` allow (all ids when it sets none)."""
        self._state.catch_up()
        allowed = self._allowed(self.known_where(options.capture_filter[0]), options)
        return self._store.ids() if allowed is None else allowed

    def known_where(self, where: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        """`where` in the index's spelling (case is ignored); a label name or value no image has raises
        UnknownLabelError (a ValueError) naming the ones that exist. Every door's filter passes here."""
        return self._store.label_catalog().resolve(where) if where else {}

    # --- vectors as searches compare them ---------------------------------------------------------
    def searchable_vectors(self, image_ids: Sequence[int]) -> Matrix:
        """Vectors as searches compare them (reduced, when the index has a reduction)."""
        return self._store.searchable_vectors([int(i) for i in image_ids])

    def to_searchable(self, vectors: np.ndarray) -> Matrix:
        """Full vectors (a model's output) as this index compares them: reduced when it has a reduction."""
        return self._store.to_searchable(np.asarray(vectors, np.float32).reshape(-1, self._state.embedder.dimension))

    def neighbour_floors(self, image_ids: Sequence[int]) -> Matrix:
        """Each image's similarity to its GUARD_NEIGHBOUR-th nearest (the guard's floor; +inf before DBA ran)."""
        self._state.catch_up()
        return self._store.neighbour_floors([int(i) for i in image_ids], GUARD_NEIGHBOUR)

    def indexed_vectors(self, image_ids: Sequence[int]) -> Matrix:
        """Vectors as searches find them: augmented (when the index augments), reduced (when it has a reduction)."""
        self._state.catch_up()
        return self._store.indexed_vectors([int(i) for i in image_ids])
