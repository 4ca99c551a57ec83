"""Setting an approximate index's search parameters from measured recall on the user's own vectors.

A sample of the indexed images is left out of a copy of the index and searched there as new photos, exactly and
then with each candidate setting (efSearch for HNSW, nprobe and the re-rank depth for IVF-PQ), cheapest first; the
fastest setting whose recall@k reaches the target is kept, in the backend and in the manifest. Above
LEAVE_OUT_LIMIT images the sample is searched in the index itself (each query left out of both result lists), and
the report says the recall is in-sample.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.backends import Ids, Matrix, VectorBackend, new_backend
from lookalike.backends.exact import exact_top_k
from lookalike.errors import RequestError

if TYPE_CHECKING:
    from lookalike.index.augmentation import AugmentationPlan
    from lookalike.index.store import VectorStore

Search = Callable[[Matrix, int], tuple[Matrix, Ids]]  # queries and k to inner products and ids, as a backend's search

EF_SEARCH = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
NPROBE = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048, 4096)
RERANK = (10, 20, 30, 40, 50, 80, 100, 150, 200)
PLATEAU = 0.002  # more probes that gain less recall than this are not tried
REBUILD_BATCH = 4096  # vectors per add when VectorStore rebuilds its backend (tune's copy is built the same way)
LEAVE_OUT_LIMIT = 200_000  # up to this many images, tune builds a copy of the index without its sample queries


@dataclass
class Trial:
    params: dict[str, int]
    recall: float
    ms_per_query: float
    error: float = 0.0  # the standard error of `recall` over the queries: a setting reaches the target only beyond it

    @property
    def reaches(self) -> float:
        """The recall this setting is sure to reach: measured, less its standard error."""
        return self.recall - self.error


@dataclass
class TuneReport:
    index_type: str
    target_recall: float
    params: dict[str, int] = field(default_factory=dict)
    recall: float = 1.0
    trials: list[Trial] = field(default_factory=list)
    note: str = ""
    measured: str = ""  # on what the recall was measured (held out, or in-sample)

    def to_dict(self) -> dict[str, Any]:
        return {"index_type": self.index_type, "target_recall": self.target_recall, "params": self.params,
                "recall": round(self.recall, 4), "note": self.note, "measured": self.measured,
                "trials": [{**t.params, "recall": round(t.recall, 4), "standard_error": round(t.error, 4),
                            "ms_per_query": round(t.ms_per_query, 3)} for t in self.trials]}


class UnreachableRecallError(RequestError):
    """No setting reaches the target recall; `report` holds every trial."""

    def __init__(self, message: str, report: TuneReport):
        super().__init__(message)
        self.report = report


def recall_at_k(found: Ids, truth: Ids, query_ids: Ids | None, k: int) -> float:
    """Mean fraction of the true k nearest (the query itself left out) that were found."""
    return float(np.mean(query_recalls(found, truth, query_ids, k))) if len(truth) else 0.0


def query_recalls(found: Ids, truth: Ids, query_ids: Ids | None, k: int) -> np.ndarray:
    """Each query's fraction of its true k nearest (itself left out) that were found."""
    recalls = np.zeros(len(truth))
    for row in range(len(truth)):
        own = -2 if query_ids is None else int(query_ids[row])
        wanted = [i for i in truth[row] if i >= 0 and i != own][:k]
        got = {i for i in found[row] if i >= 0 and i != own}
        recalls[row] = len(got.intersection(wanted)) / max(1, len(wanted))
    return recalls


def candidate_settings(backend: VectorBackend) -> list[dict[str, int]]:
    """Search settings to try, cheapest first."""
    if backend.kind == "hnsw" or (backend.kind == "hnsw-reduced" and getattr(backend, "trained", False)):
        return [{"ef_search": ef} for ef in EF_SEARCH]
    if backend.kind == "ivfpq" and getattr(backend, "trained", False):
        nlist = int(backend.nlist)  # type: ignore[attr-defined]
        probes = [p for p in NPROBE if p < nlist] + [nlist]
        return [{"nprobe": p, "rerank": r} for r in RERANK for p in probes]
    return []


def knob_settings(backend: VectorBackend, knob: dict[str, int]) -> list[dict[str, int]]:
    """The one setting a user chose (`knob`: ef_search, or nprobe and rerank), checked against the backend's knobs."""
    offered = candidate_settings(backend)
    names = set(offered[0]) if offered else set()
    unknown = sorted(set(knob) - names)
    if unknown:
        has = f"its knobs are {', '.join(sorted(names))}" if names else "it has no search knob (exact search)"
        raise RequestError(f"{backend.kind} index: cannot set {', '.join(unknown)}; {has}")
    for name, value in knob.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 1 <= value <= 1_000_000:
            raise RequestError(f"{name} must be a whole number from 1 to 1000000, not {value!r}")
    current = {name: int(getattr(backend, name, offered[0][name])) for name in names}
    return [current | {name: int(value) for name, value in knob.items()}]


def tune_backend(backend: VectorBackend, queries: Matrix, truth: Ids, target_recall: float = 0.95, k: int = 10,
                 query_ids: Ids | None = None, knob: dict[str, int] | None = None,
                 answers: Callable[[Search], Ids] | None = None) -> TuneReport:
    """The fastest setting reaching `target_recall`: for each re-rank depth the smallest nprobe (or ef_search)
    that reaches it beyond the standard error of its measurement (tune's 500 queries: about 0.005 at 0.95; at 100k
    a setting measured 0.951 gave new photos 0.949), then the fastest of those as measured; raises ValueError when
    none does. With `knob` (the
    setting a user chose) that setting is kept and its recall measured, whatever it is. `answers` makes the ids
    compared with `truth` from the backend's search (default: its top k for each query)."""
    if not 0 < target_recall <= 1:
        raise RequestError(f"target recall must be in (0, 1], not {target_recall}")
    report = TuneReport(backend.kind, target_recall)
    settings = candidate_settings(backend) if not knob else knob_settings(backend, knob)
    if not settings:
        report.note = ("exact search: recall is 1.0, nothing to tune" if backend.kind == "flat-ip" else
                       f"{getattr(backend, 'describe', lambda: backend.kind)()}: recall is 1.0, nothing to tune yet")
        return report
    extra = 0 if query_ids is None else 1
    reached: list[Trial] = []
    for params in settings:
        if _plateaued(report.trials, params) or any(_same_depth(t.params, params) for t in reached):
            continue
        backend.set_search_params(**params)  # type: ignore[attr-defined]
        started = time.perf_counter()
        found = backend.search(queries, k + extra)[1] if answers is None else answers(backend.search)
        elapsed = (time.perf_counter() - started) * 1e3 / len(queries)
        recalls = query_recalls(found, truth, query_ids, k)
        trial = Trial(params, float(recalls.mean()), elapsed, float(recalls.std() / np.sqrt(len(recalls))))
        report.trials.append(trial)
        if trial.reaches >= target_recall:
            reached.append(trial)
    if knob:  # the user's setting, measured
        report.params, report.recall = report.trials[0].params, report.trials[0].recall
        return report
    if reached:
        fastest = min(reached, key=lambda t: t.ms_per_query)
        backend.set_search_params(**fastest.params)  # type: ignore[attr-defined]
        report.params, report.recall = fastest.params, fastest.recall
        return report
    best = max(report.trials, key=lambda t: t.recall)
    backend.set_search_params(**best.params)  # type: ignore[attr-defined]
    raise UnreachableRecallError(
        f"target recall@{k} {target_recall} cannot be reached by this {backend.kind} index: the best "
        f"measured is {best.recall:.3f} with {best.params}; lower the target or rebuild with more "
        "bytes per image (or a more exact index type)", report)


def _same_depth(a: dict[str, int], b: dict[str, int]) -> bool:
    """Two settings of one knob family at the same re-rank depth (HNSW settings have a single family)."""
    return a.get("rerank") == b.get("rerank")


def _plateaued(trials: list[Trial], params: dict[str, int]) -> bool:
    """True when, at this re-rank depth, the last increase of nprobe gained less than PLATEAU recall."""
    if "nprobe" not in params:
        return False
    same_depth = [t for t in trials if t.params.get("rerank") == params.get("rerank")]
    return len(same_depth) >= 2 and same_depth[-1].recall - same_depth[-2].recall < PLATEAU


def tune_store(store: VectorStore, target_recall: float = 0.95, sample: int = 500, k: int = 10,
               seed: int = 0, knob: dict[str, int | None] | None = None,
               augmentation: AugmentationPlan | None = None) -> TuneReport:
    """Tune a store's backend on `sample` of its own images, held out (ImageIndex.tune records the setting); with
    `knob`, set that setting and measure its recall the same way.

    A query that is itself in the index is found too easily (an approximate index starts next to it: 0.962 measured
    in-sample where new queries got 0.927). So, up to LEAVE_OUT_LIMIT images, the sample is left out of a copy of
    the index built alike, and measured there as new photos would be; above it the copy would cost too much and the
    report says that its recall is measured in-sample."""
    ids = store.ids()
    knob = {name: value for name, value in (knob or {}).items() if value is not None}
    if knob:
        knob_settings(store.backend, knob)  # an unknown knob is refused before anything is measured
    if len(ids) <= k:
        raise RequestError(f"the index holds {len(ids)} images: too few to measure recall@{k}")
    query_ids = np.sort(np.random.default_rng(seed).choice(ids, min(sample, len(ids) - k), replace=False))
    queries = store.searchable_vectors(query_ids.tolist())
    if not candidate_settings(store.backend) or len(ids) > LEAVE_OUT_LIMIT:
        report = _tune_in_sample(store, ids, queries, query_ids, target_recall, k, knob)
        report.measured = f"in-sample: {len(query_ids)} of the index's own images (recall is overstated)"
        return report
    rest = np.setdiff1d(ids, query_ids)
    vectors, plain, floors = held_out_rows(store, rest, augmentation)
    copy = new_backend(store.index_type, store.searchable_dimension, **store.backend_options)
    for start in range(0, len(rest), REBUILD_BATCH):  # as the store builds its backend: a graph differs with it
        copy.add(rest[start:start + REBUILD_BATCH], vectors[start:start + REBUILD_BATCH])
    call = default_call(queries, rest, vectors, plain, floors, k)
    truth = call(lambda found, count: exact_top_k(found, [(rest, vectors)], count))
    try:
        report = tune_backend(copy, queries, truth, target_recall, k, knob=knob, answers=call)
    except UnreachableRecallError as error:
        store.backend.set_search_params(**max(error.report.trials, key=lambda t: t.recall).params)
        raise
    if report.params:
        store.backend.set_search_params(**report.params)
    report.measured = (f"held out: {len(query_ids)} images left out of a copy of the index and searched as new "
                       "photos; recall of the default search call (its expansion and guard) against the same call "
                       "with exact searches")
    return report


def held_out_rows(store: VectorStore, rest: Ids, plan: AugmentationPlan | None) -> tuple[Matrix, Matrix, Matrix | None]:
    """What an index of only `rest` would search: its indexed vectors, its plain (searchable) ones and, with an
    augmentation, the guard's floors. The augmentation is made again without the held-out images: blended into
    their neighbours' vectors they would lead the search to those neighbours (recall overstated)."""
    from lookalike.expansion import GUARD_NEIGHBOUR
    from lookalike.index.augmentation import Graph, augmented_rows, update
    from lookalike.index.resident import floors_of

    plain = store.searchable_vectors(rest.tolist())
    graph = Graph(*store.augmented_graph())
    if plan is None or len(graph.ids) == 0:
        return store.indexed_vectors(rest.tolist()), plain, None
    graph, _ = update(graph, rest, plain, set(), plan)
    rows = np.searchsorted(graph.ids, rest)
    return augmented_rows(graph, rows, rest, plain, plan.alpha), plain, floors_of(graph.similarities[rows],
                                                                                   GUARD_NEIGHBOUR)


def default_call(queries: Matrix, ids: Ids, vectors: Matrix, plain: Matrix, floors: Matrix | None,
                 k: int) -> Callable[[Search], Ids]:
    """The ids a search call with the default options finds among `ids` (held as `vectors`; `plain`: as searchable
    before any augmentation, `floors`: the guard's, None without an augmentation) for each query, given the vector
    search it makes: the first answer, its expansion searched again, the guard over the first answer
    (lookalike.index.searcher). Recall of this, not of one search, is what users of the call get (issue 29)."""
    from lookalike.expansion import GUARD_CANDIDATES, Expansion, expanded_queries, guarded_order

    expansion = Expansion.of(None)
    if not expansion.blends:
        return lambda search: search(queries, k)[1]

    def call(search: Search) -> Ids:
        inner, first = search(queries, max(expansion.candidates(k), GUARD_CANDIDATES))
        rows = np.searchsorted(ids, np.maximum(first, 0))
        count = min(expansion.neighbours, first.shape[1])
        expanded = expanded_queries(queries, inner[:, :count], vectors[rows[:, :count]], expansion.alpha)
        second_inner, second = search(expanded, k)
        found = np.full((len(queries), k), -1, np.int64)
        for row in range(len(queries)):
            keep = first[row] >= 0
            candidates, at = first[row][keep], rows[row][keep]
            ranked = guarded_order(second[row], second_inner[row], candidates, plain[at] @ queries[row],
                                   None if floors is None else floors[at])[0][:k]
            found[row, :len(ranked)] = ranked
        return found

    return call


def _tune_in_sample(store: VectorStore, ids: Ids, queries: Matrix, query_ids: Ids, target_recall: float,
                    k: int, knob: dict[str, int] | None = None) -> TuneReport:
    parts = np.array_split(ids, max(1, len(ids) // 65_536))
    chunks = ((chunk, store.indexed_vectors(chunk.tolist())) for chunk in parts)  # as the backend holds them
    _, truth = exact_top_k(queries, chunks, k + 1)
    return tune_backend(store.backend, queries, truth, target_recall, k, query_ids, knob)
