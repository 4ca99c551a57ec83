"""The call users make, timed beside hnswlib in one run (issue 29), and what the work around its vector search costs.

The issue's own harness: benchmarks/synthetic.py's generator with seed 1, 100,000 indexed 1,280-d vectors and 1,000
held-out ones as queries (never indexed). The index is created with the defaults (`index_type="auto"` for the
expected count, PCA, DBA; the default query expansion and guard at search time) and tuned by its own `index.tune`;
hnswlib M16 (ef_construction 100) is built over the same vectors and its ef set to recall@10 >= 0.95 on the queries.

Rows, timed one query at a time in ROUNDS interleaved rounds (p50 / p99: of all rounds' queries):
- hnswlib M16, one thread;
- the raw backend of the default index (the query through its PCA, then its HNSW: what the call is built around);
- `ImageIndex.search(vector=q, expand="none")` and `ImageIndex.search(vector=q)` (the defaults);
- a warm `lookalike serve` of the same index, searched by id over loopback (HTTP takes no vector, so these queries
  are indexed images, left out of their answers), timed by the server's own `timings_ms.total`.
Recall@10 of the default call against the same call with every vector search exact (its own truth: PCA, DBA,
expansion, guard), and of the raw backend against exact full-vector search. Then each step of the call, timed
apart with perf_counter ("before" rows: reads the call made before issue 29 and makes no more).

    .venv/bin/python -m benchmarks.call_cost [--size N] [--wait SECONDS] [--build-only]
    # times under /tmp/lookalike-bench.lock, waited for up to SECONDS; --size 1000000 for the 1M run (its own section)
"""

from __future__ import annotations

import argparse
import atexit
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from benchmarks import collect
from benchmarks.synthetic import synthetic_vectors
from lookalike.expansion import GUARD_CANDIDATES, GUARD_NEIGHBOUR, Expansion, expanded_queries
from lookalike.index import ImageIndex, NewImage
from lookalike.index.autoselect import plan_index, searches_per_call
from lookalike.index.read_vectors import ReadVectors
from lookalike.index.resident import indexed_vectors

HERE = Path(__file__).resolve().parent
SIZE, HELD_OUT, SEED = 100_000, 1_000, 1
OUT = HERE / "out" / f"call-{SIZE}"
K, TARGET, ROUNDS, PER_ROUND = 10, 0.95, 5, 200
PAUSE_MS = 3.0  # about a request's round trip on loopback: the server's search thread sleeps that long between two
SHARD = 20_000
LOCK = "/tmp/lookalike-bench.lock"
EF = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768)


@contextmanager
def bench_lock(wait_s: float) -> Iterator[bool]:
    """The machine's benchmark lock for the timed part, waited for up to `wait_s`; yields whether it is held (the
    build, the tuning and the recalls need no quiet machine, so the script is not started under flock)."""
    with open(LOCK, "a") as handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    yield False
                    return
                time.sleep(1)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon"):
            return int(line.split()[1]) * 1024
    return 0


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)]))


# --- what is compared -------------------------------------------------------------------------------
def default_index(base: np.ndarray) -> Path:
    """The index a user gets with the defaults and `index_type="auto"` (built once, kept in OUT)."""
    folder = OUT / "index"
    if not (folder / "manifest.json").exists():
        with ImageIndex.create(folder, index_type="auto", expected_count=SIZE) as index:
            run = index.sync()
            for start in range(0, SIZE, SHARD):
                made_up = [NewImage(f"/made-up/{n}.jpg", f"hash{n}", 1, 0.0, 8, 8) for n in range(start, start + SHARD)]
                run.store_images(made_up, np.asarray(base[start:start + SHARD]))
            run.finish()
    if not (OUT / "tuned").exists():
        with ImageIndex.open(folder) as index:
            index.tune(target_recall=TARGET, k=K)
        (OUT / "tuned").write_text("yes")
    return folder


def hnswlib_m16(base: np.ndarray, queries: np.ndarray, truth: np.ndarray):
    import hnswlib

    graph, path = hnswlib.Index(space="ip", dim=base.shape[1]), OUT / "hnswlib-M16.bin"
    if path.exists():
        graph.load_index(str(path))
    else:
        graph.init_index(max_elements=SIZE, ef_construction=100, M=16)
        graph.add_items(np.asarray(base), np.arange(SIZE), num_threads=os.cpu_count())
        graph.save_index(str(path))
    for ef in EF:  # the cheapest ef reaching the target on the held-out queries, as benchmarks/peers.py tunes it
        graph.set_ef(ef)
        if recall(list(graph.knn_query(queries, K)[0]), truth) >= TARGET:
            break
    graph.set_num_threads(1)
    return graph, ef


def served(folder: Path):
    import httpx

    from benchmarks.load_test import free_port, start_server

    port = free_port()
    server = start_server(folder, port)
    atexit.register(server.terminate)
    client, url = httpx.Client(), f"http://127.0.0.1:{port}/api/indexes/index/search"

    def by_id(image_id: int) -> float:
        return float(client.get(url, params={"id": image_id, "k": K}).raise_for_status().json()["timings_ms"]["total"])

    by_id(1), by_id(2)  # the second search starts reading the guard's rows: a read of 100,000 takes 1.4-2.9 s
    time.sleep(15 * max(1.0, SIZE / 100_000))
    return by_id, server


def exact_call_answers(index: ImageIndex, queries: np.ndarray) -> list[np.ndarray]:
    """The default call with every vector search exact: the same indexed vectors in a flat index."""
    store = index._store
    approximate = (store.backend, store.index_type, store.backend_options)
    store.index_type, store.backend_options = "flat-ip", {}
    store.backend = store._rebuild()
    try:
        return [call_ids(index, q) for q in queries]
    finally:
        store.backend, store.index_type, store.backend_options = approximate


def reuse_agreement(index: ImageIndex, queries: np.ndarray) -> tuple[float, float]:
    """How often the expansion's second search could be the first one's candidates re-ranked: the share of queries
    whose expanded query gets the same top k (in order; as a set) from its own search and from the first search's
    GUARD_CANDIDATES candidates ranked by their indexed vectors."""
    store, expansion = index._store, Expansion.of(None)
    same_order = same_set = 0
    for query in queries:
        searchable = store.to_searchable(query[None])
        inner, ids = store.search(searchable, GUARD_CANDIDATES, searchable=True)
        n = expansion.neighbours
        expanded = expanded_queries(searchable, inner[:, :n], store.indexed_vectors(ids[0][:n].tolist())[None],
                                    expansion.alpha)
        searched = store.search(expanded, K, searchable=True)[1][0]
        reused = ids[0][np.argsort(-(store.indexed_vectors(ids[0].tolist()) @ expanded[0]), kind="stable")[:K]]
        same_order += bool(np.array_equal(searched, reused))
        same_set += set(searched.tolist()) == set(reused.tolist())
    return same_order / len(queries), same_set / len(queries)


def call_ids(index: ImageIndex, query: np.ndarray) -> np.ndarray:
    return np.array([m.id for m in index.search(vector=query, k=K).matches], np.int64)


# --- timing -----------------------------------------------------------------------------------------
def timed(step: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    out = step()
    return (time.perf_counter() - started) * 1e3, out


def rounds(systems: dict[str, Callable[[int], float]]) -> dict[str, list[float]]:
    """ms per query of each system, ROUNDS rounds of PER_ROUND queries, the systems' order rotating."""
    times: dict[str, list[float]] = {name: [] for name in systems}
    names = list(systems)
    for round_ in range(ROUNDS):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            times[name] += [systems[name](row) for row in range(round_ * PER_ROUND, (round_ + 1) * PER_ROUND)]
    return times


def paused(system: Callable[[int], float]) -> Callable[[int], float]:
    """The system timed after PAUSE_MS of sleep, as a server's search runs between requests (caches gone cold)."""
    def after_a_pause(row: int) -> float:
        time.sleep(PAUSE_MS / 1e3)
        return system(row)
    return after_a_pause


def clock(search: Callable[[np.ndarray], object], queries: np.ndarray) -> Callable[[int], float]:
    return lambda row: timed(lambda: search(queries[row % len(queries)]))[0]


def steps_of(index: ImageIndex, query: np.ndarray) -> dict[str, float]:
    """Each step of one default call, redone with the store's own reads (ms)."""
    store, times, resident = index._store, {}, index.searcher.resident
    times["query to the index's space (PCA)"], searchable = timed(lambda: store.to_searchable(query[None]))
    times["first vector search (k=40)"], (_, ids) = timed(lambda: store.search(searchable, GUARD_CANDIDATES,
                                                                              searchable=True))
    times["expansion: 3 neighbours' indexed vectors (backend memory)"], _ = timed(
        lambda: indexed_vectors(store, ids[0][:3]))
    times["second vector search (k=10)"], _ = timed(lambda: store.search(searchable, K, searchable=True))
    candidates = ids[0].tolist()
    times["guard: 40 floors and plain similarities (rows in memory)"], _ = timed(
        lambda: resident.compared(store, ids[0], set(), True, ReadVectors(searchable[0])))
    matches = candidates[:K]
    times["path, labels and capture of 10 (rows in memory)"], _ = timed(lambda: resident.shown(store, matches, K))
    times["first match's full vector (confidence)"], _ = timed(lambda: store.vectors(matches[:1]))
    times["before: expansion's vectors from SQLite"], _ = timed(lambda: store.indexed_vectors(ids[0][:3].tolist()))
    times["before: guard: neighbour floors of 40 (SQLite)"], _ = timed(
        lambda: store.neighbour_floors(candidates, GUARD_NEIGHBOUR))
    times["before: guard: 40 full vectors read"], full = timed(lambda: store.vectors(candidates))
    times["before: guard: 40 vectors projected"], _ = timed(lambda: store.to_searchable(full))
    times["before: records and labels of 10 (SQLite)"], _ = timed(
        lambda: (store.records_of(matches), store.labels_of(matches)))
    times["confidence floor (calibrated once)"], _ = timed(index.searcher._confidence_floor)
    times["whole call: ImageIndex.search(vector=q)"], _ = timed(lambda: index.search(vector=query, k=K))
    return times


# --- the run ----------------------------------------------------------------------------------------
def exact_truth(base: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The queries' exact top K among `base` by inner product (cached in OUT; read in shards: 1M do not fit twice)."""
    import faiss

    path = OUT / "truth.npy"
    if not path.exists():
        heap = faiss.ResultHeap(len(queries), K, keep_max=True)
        for start in range(0, len(base), SHARD):
            scores, rows = faiss.knn(queries, np.ascontiguousarray(base[start:start + SHARD]), K,
                                     metric=faiss.METRIC_INNER_PRODUCT)
            heap.add_result(scores, rows + start)
        heap.finalize()
        np.save(path, heap.I)
    return np.load(path)


def main(wait_s: float, build_only: bool = False) -> list[str]:
    pool = synthetic_vectors(SIZE + HELD_OUT, seed=SEED)
    base, queries = pool[:SIZE], np.ascontiguousarray(pool[SIZE:])
    OUT.mkdir(parents=True, exist_ok=True)
    truth = exact_truth(base, queries)
    folder = default_index(base)
    if build_only:
        hnswlib_m16(base, queries, truth)
        return []
    before = rss_anon()
    opened_ms, index = timed(lambda: ImageIndex.open(folder))
    first_ms, _ = timed(lambda: index.search(vector=queries[0], k=K))
    second_ms, _ = timed(lambda: index.search(vector=queries[1], k=K))  # starts reading the guard's rows (a thread)
    read_ms, _ = timed(index.searcher.resident.wait)
    index_memory, resident_memory = rss_anon() - before, index.searcher.resident.nbytes
    held = index.searcher.resident.held(index._store)
    shown_memory = 0 if held is None else held.shown.nbytes
    before = rss_anon()
    graph, ef = hnswlib_m16(base, queries, truth)
    graph_memory = rss_anon() - before
    row_of = {int(i): n for n, i in enumerate(index.ids().tolist())}
    found = [call_ids(index, q) for q in queries]
    pipeline = recall(found, exact_call_answers(index, queries))
    raw = [index._store.search(q[None], K)[1][0] for q in queries]
    raw_recall = recall([np.array([row_of.get(int(i), -1) for i in r]) for r in raw], truth)
    reuse = reuse_agreement(index, queries)
    by_id, server = served(folder)
    ids = index.ids()

    def indexed(row: int) -> int:  # the same indexed image for a row in every by-id system
        return int(ids[(row * 7919) % len(ids)])

    def searched_by_id(row: int) -> float:
        return timed(lambda: index.search(id=indexed(row), k=K))[0]

    systems = {
        f"hnswlib M16 (ef {ef})": clock(lambda q: graph.knn_query(q[None], K), queries),
        "raw backend of the default index": clock(lambda q: index._store.search(q[None], K), queries),
        "ImageIndex.search(vector=q, expand=\"none\")": clock(lambda q: index.search(vector=q, k=K, expand="none"),
                                                               queries),
        "ImageIndex.search(vector=q) (defaults)": clock(lambda q: index.search(vector=q, k=K), queries),
        "HTTP, server side (timings_ms total; by id)": lambda row: by_id(indexed(row)),
        "ImageIndex.search(id=i) (defaults; by id, as over HTTP)": searched_by_id,
        f"hnswlib M16 (ef {ef}), {PAUSE_MS:g} ms pause before each query": paused(
            clock(lambda q: graph.knn_query(q[None], K), queries)),
        f"ImageIndex.search(id=i), {PAUSE_MS:g} ms pause before each query": paused(searched_by_id),
    }
    with bench_lock(wait_s) as locked:
        for system in systems.values():  # warm
            for row in range(50):
                system(row)
        times = rounds(systems)
        server.terminate()
        steps = [steps_of(index, q) for q in queries[:300]]
    manifest = index.manifest
    return report(times, steps, {
        "kind": manifest.index_type, "params": manifest.index_params, "tuned": manifest.tuned,
        "pca": (manifest.reduction or {}).get("components"), "dba": index.augmentation_text,
        "pipeline": pipeline, "raw_recall": raw_recall, "opened_ms": opened_ms, "first_ms": first_ms,
        "second_ms": second_ms, "read_ms": read_ms, "resident_memory": resident_memory, "shown_memory": shown_memory,
        "index_memory": index_memory, "graph_memory": graph_memory, "ef": ef, "load": os.getloadavg()[0],
        "reuse": reuse, "locked": locked,
        "auto": plan_index("auto", SIZE, index.reduction.dimension, searches=searches_per_call())})


def pause_lines(times: dict[str, list[float]]) -> list[str]:
    """What a pause between queries does to each call (why the server's search is slower than the same call)."""
    def p50(start: str, paused: bool = False) -> float:
        return float(np.percentile(next(ms for name, ms in times.items()
                                        if name.startswith(start) and ("pause" in name) == paused), 50))

    graph, graph_paused = p50("hnswlib M16"), p50("hnswlib M16", paused=True)
    by_id, by_id_paused = p50("ImageIndex.search(id=i)"), p50("ImageIndex.search(id=i)", paused=True)
    http = p50("HTTP, server side")
    return [f"- A pause of {PAUSE_MS:g} ms before each query (what a server's search thread gets between requests) "
            f"makes the search by id {by_id_paused / by_id:.2f}x as slow ({by_id:.3f} -> {by_id_paused:.3f} ms) "
            f"and hnswlib {graph_paused / graph:.2f}x ({graph:.3f} -> {graph_paused:.3f} ms); the server's own "
            f"time for the same searches by id is {http / by_id_paused:.2f}x the paused call in this process."]


def report(times: dict[str, list[float]], steps: list[dict[str, float]], facts: dict) -> list[str]:
    graph = next(name for name in times if name.startswith("hnswlib"))
    base_p50 = np.percentile(times[graph], 50)
    lines = [f"## The call users make, beside hnswlib (issue 29){'' if SIZE == 100_000 else f': {SIZE:,} images'}", "",
             f"Written by `benchmarks/call_cost.py`. {collect.machine_line()} Load average (1 min) at the end: "
             f"{facts['load']:.1f} on 2 cores shared with other work"
             f"{'' if facts['locked'] else ', timed without the benchmark lock (another benchmark held it)'}: "
             f"ratios in one run are what to read, not milliseconds. {SIZE:,} synthetic 1,280-d vectors (seed "
             f"{SEED}) and {HELD_OUT:,} held-out queries. "
             f"The index was created with the defaults and `index_type=\"auto\"`: {facts['kind']} {facts['params']}, "
             f"PCA to {facts['pca']}, {facts['dba']} (what auto plans for it: {facts['auto'].index_type} "
             f"{facts['auto'].params}); its knob set by `index.tune` ({facts['tuned']}). "
             f"{ROUNDS} interleaved rounds of {PER_ROUND} single queries per row.", "",
             "| call | p50 ms | p99 ms | p50 / hnswlib M16 |", "|---|---|---|---|"]
    for name, ms in times.items():
        p50, p99 = np.percentile(ms, 50), np.percentile(ms, 99)
        lines.append(f"| {name} | {p50:.3f} | {p99:.3f} | {p50 / base_p50:.2f} |")
    call, http = times["ImageIndex.search(vector=q) (defaults)"], times["HTTP, server side (timings_ms total; by id)"]
    call_ratio, http_ratio = np.percentile(call, 50) / base_p50, np.percentile(http, 50) / base_p50
    lines += ["", f"- Recall@10 of the default call against the same call with every vector search exact: "
                  f"{facts['pipeline']:.3f}; of the raw backend against exact full-vector search: "
                  f"{facts['raw_recall']:.3f} (hnswlib M16 at ef {facts['ef']} reaches >= {TARGET} on the same "
                  "queries).",
              f"- The expansion's second search against the first search's {GUARD_CANDIDATES} candidates re-ranked by "
              f"the expanded query: the same top {K} in the same order for {facts['reuse'][0]:.1%} of the queries, "
              f"the same set for {facts['reuse'][1]:.1%}.",
              f"- Cold: `ImageIndex.open` {facts['opened_ms']:.0f} ms, then the first call {facts['first_ms']:.1f} ms "
              f"(files in the page cache) and the second {facts['second_ms']:.1f} ms (it starts reading the guard's "
              f"rows into memory, lookalike/index/resident.py, in a thread of their own: they were in "
              f"{facts['read_ms']:.0f} ms later, searches going on from SQLite meanwhile). Memory gained by opening "
              f"the index and two searches: "
              f"{facts['index_memory'] / 2**20:,.0f} MiB anonymous, of which the guard's rows "
              f"{facts['resident_memory'] / 2**20:,.0f} MiB (what the matches show: paths, labels and captures "
              f"{facts['shown_memory'] / 2**20:,.1f} MiB); by loading hnswlib's graph: "
              f"{facts['graph_memory'] / 2**20:,.0f} MiB.",
              *pause_lines(times),
              f"- Targets (issue 29): default `ImageIndex.search` p50 <= 1.0x hnswlib M16: "
              f"{'met' if call_ratio <= 1 else 'missed'} ({call_ratio:.2f}); through HTTP (server side) <= 1.3x: "
              f"{'met' if http_ratio <= 1.3 else 'missed'} ({http_ratio:.2f}).", "",
              "Each step of the default call, timed apart (median ms of 300 held-out queries; \"before\" rows are the "
              "reads the call made before issue 29 and no longer makes while the guard's rows are in memory and the "
              "backend holds its vectors):", "", "| step | median ms |", "|---|---|"]
    lines += [f"| {name} | {np.median([row[name] for row in steps]):.3f} |" for name in steps[0]]
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=SIZE, help="indexed vectors (the 1,000 queries come after)")
    parser.add_argument("--wait", type=float, default=3600, help="seconds to wait for the benchmark lock")
    parser.add_argument("--build-only", action="store_true", help="build, tune and load hnswlib; time nothing")
    args = parser.parse_args()
    SIZE, OUT = args.size, HERE / "out" / f"call-{args.size}"
    section = main(args.wait, args.build_only)
    if section:
        print("\n".join(section))
        collect.write_section("call-cost" if SIZE == 100_000 else f"call-cost-{SIZE}", "\n".join(section))
