"""lookalike against the tools people would pick instead, side by side in one run (issue 18).

Same vectors for everyone (benchmarks/synthetic.py: a Gaussian mixture fitted to real embeddings;
the "1M" collection holds 999,000 of them, 1,000 further held-out vectors are the queries), exact
ground truth computed here, every system tuned with its own knob, cheapest setting first, to
recall@10 >= 0.95 on the same 1,000 queries it is then timed on:

- lookalike: the index `plan_index("auto", ...)` picks with a 2G memory budget (IVF fast-scan +
  float16 re-rank rows memory-mapped at 1M; HNSW at 100k), built, saved and loaded through
  lookalike's own backend and tuned by `tune_backend`; at 100k also its IVF plan (`lookalike-ivf`);
  `-ram` loads the same index with its re-rank rows read into RAM (`rows_in_ram`);
- FAISS as a knowledgeable user writes it: IVF_HNSW32 fast-scan (by residual) + Refine(SQfp16), all
  in RAM, knobs nprobe and k_factor; run once with FAISS's default threads and once with one thread;
- hnswlib (M 16 and 32, ef_construction 100), knob ef;
- usearch (f32 and i8, connectivity 16), knob expansion_search;
- the call users make (issue 29; a run naming them writes a section of its own, "the call users make"):
  `lookalike-call` is `ImageIndex.search(vector=q, k=10)` on an index created with the defaults
  (`index_type="auto"`, PCA, DBA), filled through a sync run and tuned by `index.tune`, its recall against the
  same call run with exact vector search; `lookalike-http` the same index behind a `lookalike serve` process,
  searched by indexed id and timed by the server's own `timings_ms.total`.

RAM is the anonymous memory the process gained by loading the index and searching (after importing
the system's library); "mapped" is the file pages it touched (page cache, shared and reclaimable).

Each system is built once (cached in benchmarks/out/peers-SIZE/) in its own process, then measured
in rounds; every round starts a fresh process per system (the order rotates from round to round)
after dropping its files from the page cache (posix_fadvise DONTNEED). In that process: load time
and the first queries (cold), resident memory, then one query at a time: warm, with one busy-loop
process loading one core, with two loading both cores, and (for systems that read their files
while searching) right after the index's pages were evicted from the page cache under it.

    /work/main/.venv/bin/python -m benchmarks.peers 100000   # times under /tmp/lookalike-bench.lock, waited for
    /work/main/.venv/bin/python -m benchmarks.peers 100000 --systems lookalike-call,lookalike-http,lookalike,hnswlib-M16
"""

from __future__ import annotations

import argparse
import atexit
import fcntl
import importlib
import json
import mmap
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
POOL = 1_000_000
HELD_OUT = 1_000
K = 10
TARGET = 0.95
COLD_QUERIES = 20
EVICTED_QUERIES = 100
WARM_UP = 200
BUSY_QUERIES = 500  # per round, with one or two cores busy
SLOW_MS, SLOW_QUERIES = 10.0, 100  # a system slower than SLOW_MS a query is timed on SLOW_QUERIES per condition
SHARD = 50_000
CALL_SHARD = 20_000  # images per store_images call when the call's index is filled
EF = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
NPROBE = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
K_FACTOR = (10, 20, 30, 40, 50, 80)
SYSTEMS = ("lookalike", "lookalike-ram", "faiss", "faiss-1thread", "hnswlib-M16", "hnswlib-M32", "usearch-f32",
           "usearch-i8")
LOCK = "/tmp/lookalike-bench.lock"
BASELINE = "hnswlib-M16"  # what the call's rows are ratios to (issue 29)
BUDGET = "2G"
METHOD = ("Same 1,280-d synthetic vectors for every system (benchmarks/synthetic.py; the 1M collection holds 999,000, "
          "1,000 held-out vectors are the queries), exact ground truth; each system tuned with its own knob, cheapest "
          "first, to recall@10 >= 0.95 on those 1,000 queries, then timed one query at a time on them. Each system is "
          "measured in a fresh process per round (rounds interleave the systems, order rotating), after its files "
          "were dropped from the page cache (posix_fadvise DONTNEED): load time and first queries (cold), then warm, "
          "with one busy-loop process loading one core, with two loading both cores, and, for a system that reads "
          "its files while searching (lookalike's memory-mapped re-rank rows), right after the file's pages were "
          "evicted from the process and the page cache (evicted: what memory pressure does to a running server). "
          "p50 and p99 are those of the median round. RAM: anonymous memory the process gained by loading the index "
          "and searching (library imported first); mapped: file pages it touched (page cache: shared, reclaimable). "
          "hnswlib and usearch search with one thread per query (the best for lone queries); \"faiss\" keeps FAISS's "
          "default threads, \"faiss-1thread\" sets omp_set_num_threads(1); \"-ram\": lookalike's re-rank rows read "
          "into RAM at load (`rows_in_ram`) instead of memory-mapped. lookalike's `tune_backend` and FAISS's "
          "knobs are set the same way: for each re-rank depth the smallest nprobe reaching the target, then the "
          "fastest of those.")
CALL_METHOD = ("The call users make (issue 29), beside what it is built around, in the same run: lookalike-call is "
               "`ImageIndex.search(vector=q, k=10)` with the defaults on an index created as a user gets it "
               "(`ImageIndex.create(folder, index_type=\"auto\", expected_count=N)`: PCA to 128 and DBA by default; "
               "filled through `index.sync()` / `store_images` / `finish` with made-up image records, then "
               "`index.tune(target_recall=0.95, k=10)`, its own tuner on held-out indexed images); lookalike-http is "
               "the same index served by `lookalike serve` on loopback, searched by indexed id "
               "(`GET /api/indexes/index/search?id=N&k=10`). lookalike is the raw vector backend as above, "
               "hnswlib-M16 the yardstick. Before the warm timings each lookalike-call process waits for the guard's "
               "rows, read into memory by a thread from its second search on (`index.searcher.resident.wait()`), "
               "lookalike-http 15 s per 100,000 images after its cold queries: the warm columns are the steady "
               "state, the cold ones what a fresh process gets.")
LIBRARIES = {"lookalike": ("lookalike", "torch"), "faiss": ("faiss",), "hnswlib": ("hnswlib",),
             "usearch": ("usearch.index",)}


# --- the systems -------------------------------------------------------------------------------
class Lookalike:
    """lookalike's own backend, as the index folder holds it (VectorStore.search calls backend.search)."""

    def __init__(self, name: str):
        self.in_ram, self.name = name.endswith("-ram"), name.removesuffix("-ram")
        self.forced = "ivfpq" if self.name == "lookalike-ivf" else None

    def plan(self, size: int):
        from lookalike.index.autoselect import plan_index

        return plan_index(self.forced or "auto", size, 1280, None if self.forced else BUDGET)

    def build(self, base: np.ndarray, size: int, folder: Path) -> dict:
        from lookalike.backends import new_backend

        plan = self.plan(size)
        backend = new_backend(plan.index_type, base.shape[1], plan.params)
        for start in range(0, size, SHARD):
            stop = min(size, start + SHARD)
            backend.add(np.arange(start, stop, dtype=np.int64), np.asarray(base[start:stop]))
        if getattr(backend, "trained", True) is False:
            backend.train()
        backend.save(folder, 1)
        return {"kind": plan.index_type, "params": plan.params}

    def open(self, folder: Path, built: dict):
        from lookalike.backends import load_backend

        params = built["params"] | built.get("knob", {}) | ({"rows_in_ram": True} if self.in_ram else {})
        self.backend = load_backend(built["kind"], 1280, folder, 1, params)
        assert self.backend is not None, f"{folder} holds no loadable {built['kind']} index"

    def tune(self, queries: np.ndarray, truth: np.ndarray) -> tuple[dict, list]:
        from lookalike.index.tune import tune_backend

        report = tune_backend(self.backend, queries, truth, TARGET, K)
        return report.params, [[t.params, round(t.recall, 4)] for t in report.trials]

    def search(self, query: np.ndarray) -> np.ndarray:
        return self.backend.search(query[None], K)[1][0]

    def evict(self) -> bool:
        """Drop the mapped re-rank rows from this process and from the page cache (what memory pressure does)."""
        mapped = getattr(getattr(self.backend, "vectors", None), "base", None)
        while mapped is not None and not isinstance(mapped, mmap.mmap):  # the array's buffer: the mapped file
            mapped = mapped.obj if isinstance(mapped, memoryview) else getattr(mapped, "base", None)
        if mapped is None:
            return False
        mapped.madvise(mmap.MADV_DONTNEED)
        return True


class LookalikeCall:
    """The call users make (issue 29): `ImageIndex.search(vector=q)` on an index created with the defaults (PCA, DBA,
    `index_type="auto"`), filled through a sync run and tuned by its own `index.tune`; answers mapped to base rows."""

    tuner = "index.tune, on held-out indexed images"

    def __init__(self, name: str):
        self.name = name

    def build(self, base: np.ndarray, size: int, folder: Path) -> dict:
        from lookalike.index import ImageIndex, NewImage

        with ImageIndex.create(folder / "index", index_type="auto", expected_count=size) as index:
            run = index.sync()
            for start in range(0, size, CALL_SHARD):  # as benchmarks/call_cost.py fills it: made-up image records
                stop = min(size, start + CALL_SHARD)
                made_up = [NewImage(f"/made-up/{n}.jpg", f"hash{n}", 1, 0.0, 8, 8) for n in range(start, stop)]
                run.store_images(made_up, np.asarray(base[start:stop]))
            run.finish()
            np.save(folder / "row-of-id.npy", rows_of_ids(index.ids_by_path()))
            manifest = index.manifest
            return {"kind": manifest.index_type, "params": manifest.index_params, "tuner": self.tuner,
                    "pca": (manifest.reduction or {}).get("components"), "dba": index.augmentation_text}

    def open(self, folder: Path, built: dict):
        from lookalike.index import ImageIndex

        self.folder, self.index = folder, ImageIndex.open(folder / "index")
        self.row_of_id = np.load(folder / "row-of-id.npy")
        truth = folder / "pipeline-truth.npy"
        self.truth = np.load(truth) if truth.exists() else None

    def tune(self, queries: np.ndarray, truth: np.ndarray) -> tuple[dict, list]:
        """The index's own tuner; then the truth its recall is measured against: the same call, every search exact."""
        from benchmarks.call_cost import exact_call_answers

        tuned = self.index.tune(target_recall=TARGET, k=K)
        answers = exact_call_answers(self.index, queries)
        rows = [np.pad(self.row_of_id[ids], (0, K - len(ids)), constant_values=-1) for ids in answers]
        np.save(self.folder / "pipeline-truth.npy", np.stack(rows))
        return tuned.params, [[t.params, round(t.recall, 4)] for t in tuned.trials]

    def search(self, query: np.ndarray) -> np.ndarray:
        return self.row_of_id[[match.id for match in self.index.search(vector=query, k=K).matches]]

    def settle(self, size: int) -> None:
        """The guard's rows are read by a thread from the second search on: the warm timings are of the rows in."""
        self.index.searcher.resident.wait()


class LookalikeHttp(LookalikeCall):
    """The same index served by `lookalike serve` on loopback, searched by indexed id (HTTP takes no vector; the
    answer leaves the query out), timed by the server's own `timings_ms.total`."""

    def open(self, folder: Path, built: dict):
        import httpx

        from benchmarks.load_test import free_port, start_server

        port = free_port()
        self.server = start_server(folder / "index", port)
        atexit.register(self.server.terminate)
        self.client, self.url = httpx.Client(), f"http://127.0.0.1:{port}/api/indexes/index/search"
        self.query_ids = np.flatnonzero(np.load(folder / "row-of-id.npy") >= 0)
        self.truth = None

    def search_indexed(self, row: int) -> float:
        """The server's own time (ms) of a search for the row's indexed image."""
        image_id = int(self.query_ids[(row * 7919) % len(self.query_ids)])
        answer = self.client.get(self.url, params={"id": image_id, "k": K}).raise_for_status().json()
        return float(answer["timings_ms"]["total"])

    def settle(self, size: int) -> None:
        time.sleep(15 * max(1.0, size / 100_000))  # a read of the guard's 100,000 rows takes 1.4-2.9 s

    def server_memory(self) -> dict[str, int]:
        return memory(self.server.pid)

    def close(self) -> None:
        self.server.terminate()
        self.server.wait()


def rows_of_ids(ids_by_path: dict[str, int]) -> np.ndarray:
    """Base row of each image id (-1: no such id), from the made-up paths /made-up/ROW.jpg."""
    rows = np.full(max(ids_by_path.values()) + 1, -1, np.int64)
    for path, image_id in ids_by_path.items():
        rows[image_id] = int(Path(path).stem)
    return rows


CALLS = {"lookalike-call": LookalikeCall, "lookalike-http": LookalikeHttp}
BUILT_BY = {"lookalike-http": "lookalike-call"}  # the served index is the call's own


class Faiss:
    """IVF fast-scan + Refine(SQfp16) in RAM, the recipe lookalike's IVF plan wraps, written directly."""

    def __init__(self, name: str):
        self.name, self.threads = name, 1 if name.endswith("1thread") else None

    def files_name(self) -> str:
        return "faiss"

    def build(self, base: np.ndarray, size: int, folder: Path) -> dict:
        import faiss

        from lookalike.backends.ivfpq import MAX_TRAIN, TRAIN_PER_LIST
        from lookalike.index.autoselect import plan_index

        nlist = plan_index("ivfpq", size, base.shape[1]).params["nlist"]
        d = base.shape[1]
        index = faiss.index_factory(d, f"IVF{nlist}_HNSW32,PQ{d // 4}x4fsr,Refine(SQfp16)", faiss.METRIC_INNER_PRODUCT)
        sample = min(size, max(20_000, min(MAX_TRAIN, TRAIN_PER_LIST * nlist)))  # what lookalike trains on
        rows = np.sort(np.random.default_rng(0).choice(size, sample, replace=False))
        index.train(np.ascontiguousarray(base[rows]))
        for start in range(0, size, SHARD):
            index.add(np.ascontiguousarray(base[start:min(size, start + SHARD)]))
        faiss.write_index(index, str(folder / "index.faiss"))
        return {"factory": f"IVF{nlist}_HNSW32,PQ{d // 4}x4fsr,Refine(SQfp16)", "train": sample}

    def open(self, folder: Path, built: dict):
        import faiss

        if self.threads:
            faiss.omp_set_num_threads(self.threads)
        self.index = faiss.read_index(str(folder / "index.faiss"))
        self.set(**built.get("knob", {"nprobe": 64, "k_factor": 30}))

    def set(self, nprobe: int, k_factor: int) -> None:
        import faiss

        self.index.k_factor = k_factor
        ivf = faiss.extract_index_ivf(self.index)
        ivf.nprobe = nprobe
        faiss.downcast_index(ivf.quantizer).hnsw.efSearch = max(64, 2 * nprobe)

    def tune(self, queries: np.ndarray, truth: np.ndarray) -> tuple[dict, list]:
        return fastest_reaching(self.set, lambda q: self.index.search(q, K)[1], "k_factor", K_FACTOR, queries, truth)

    def search(self, query: np.ndarray) -> np.ndarray:
        return self.index.search(query[None], K)[1][0]


class Hnswlib:
    def __init__(self, name: str):
        self.name, self.M = name, int(name.rsplit("M", 1)[1])

    def build(self, base: np.ndarray, size: int, folder: Path) -> dict:
        import hnswlib

        index = hnswlib.Index(space="ip", dim=base.shape[1])
        index.init_index(max_elements=size, ef_construction=100, M=self.M)
        for start in range(0, size, SHARD):
            stop = min(size, start + SHARD)
            index.add_items(np.asarray(base[start:stop]), np.arange(start, stop), num_threads=os.cpu_count())
        index.save_index(str(folder / "index.bin"))
        return {"M": self.M, "ef_construction": 100}

    def open(self, folder: Path, built: dict):
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=1280)
        self.index.load_index(str(folder / "index.bin"))
        self.index.set_num_threads(1)  # one query at a time
        self.index.set_ef(built.get("knob", {}).get("ef", 64))

    def tune(self, queries: np.ndarray, truth: np.ndarray) -> tuple[dict, list]:
        def found(ef: int) -> np.ndarray:
            self.index.set_ef(max(ef, K))
            return self.index.knn_query(queries, K, num_threads=os.cpu_count())[0]

        return tune_one_knob("ef", found, truth, self.index.set_ef)

    def search(self, query: np.ndarray) -> np.ndarray:
        return self.index.knn_query(query[None], K)[0][0]


class Usearch:
    def __init__(self, name: str):
        self.name, self.dtype = name, name.rsplit("-", 1)[1]

    def build(self, base: np.ndarray, size: int, folder: Path) -> dict:
        from usearch.index import Index

        index = Index(ndim=base.shape[1], metric=self.metric(), dtype=self.dtype, connectivity=16)
        for start in range(0, size, SHARD):
            stop = min(size, start + SHARD)
            index.add(np.arange(start, stop), np.asarray(base[start:stop]), threads=os.cpu_count())
        index.save(str(folder / "index.usearch"))
        return {"connectivity": 16, "expansion_add": int(index.expansion_add), "dtype": self.dtype,
                "metric": self.metric()}

    def metric(self) -> str:
        return "cos" if self.dtype == "i8" else "ip"  # int8 codes are of normalised vectors (ours are)

    def open(self, folder: Path, built: dict):
        from usearch.index import Index

        self.index = Index.restore(str(folder / "index.usearch"))
        self.index.expansion_search = built.get("knob", {}).get("expansion_search", 64)

    def tune(self, queries: np.ndarray, truth: np.ndarray) -> tuple[dict, list]:
        def found(ef: int) -> np.ndarray:
            self.index.expansion_search = ef
            return self.index.search(queries, K, threads=os.cpu_count()).keys

        def keep(ef: int) -> None:
            self.index.expansion_search = ef

        return tune_one_knob("expansion_search", found, truth, keep)

    def search(self, query: np.ndarray) -> np.ndarray:
        return self.index.search(query, K, threads=1).keys


def system(name: str):
    if name in CALLS:
        return CALLS[name](name)
    if name.startswith("lookalike"):
        return Lookalike(name)
    if name.startswith("faiss"):
        return Faiss(name)
    return Hnswlib(name) if name.startswith("hnswlib") else Usearch(name)


def fastest_reaching(set_params, search, depth_name: str, depths, queries: np.ndarray,
                     truth: np.ndarray) -> tuple[dict, list]:
    """For each re-rank depth the smallest nprobe reaching the target; the fastest of those (batched timing), as a
    FAISS user picks an operating point."""
    trials, reached = [], []
    for depth in depths:
        for nprobe in NPROBE:
            set_params(**{"nprobe": nprobe, depth_name: depth})
            started = time.perf_counter()
            found = search(queries)
            ms = (time.perf_counter() - started) * 1e3 / len(queries)
            trials.append([{"nprobe": nprobe, depth_name: depth}, round(recall(found, truth), 4), round(ms, 3)])
            if trials[-1][1] >= TARGET:
                reached.append(trials[-1])
                break
    best = min(reached, key=lambda t: t[2])[0] if reached else max(trials, key=lambda t: t[1])[0]
    set_params(**best)
    return best, trials


def tune_one_knob(knob: str, found, truth: np.ndarray, keep) -> tuple[dict, list]:
    trials = []
    for ef in EF:
        trials.append([{knob: ef}, round(recall(found(ef), truth), 4)])
        if trials[-1][1] >= TARGET:
            break
    best = max(trials, key=lambda t: t[1])[0] if trials[-1][1] < TARGET else trials[-1][0]
    keep(best[knob])
    return best, trials


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)]))


# --- shared data ---------------------------------------------------------------------------------
def folder_of(size: int, name: str) -> Path:
    """Variants that only search differently share their system's build (faiss-1thread, lookalike-ram,
    lookalike-http)."""
    built_by = "faiss" if name.startswith("faiss") else BUILT_BY.get(name, name).removesuffix("-ram")
    return OUT / f"peers-{size}" / built_by


def queries_and_truth(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The held-out queries and their exact top k among the first `size` vectors (cached)."""
    queries_path, truth_path = OUT / "peers-queries.npy", OUT / f"peers-truth-{size}.npy"
    if not queries_path.exists() or not truth_path.exists():
        import faiss

        from benchmarks.synthetic import synthetic_vectors

        pool = synthetic_vectors(POOL)
        queries = np.ascontiguousarray(pool[POOL - HELD_OUT:])
        heap = faiss.ResultHeap(len(queries), K, keep_max=True)
        for start in range(0, size, SHARD):
            _add_chunk(heap, queries, np.ascontiguousarray(pool[start:min(size, start + SHARD)]), start)
        heap.finalize()
        np.save(queries_path, queries)
        np.save(truth_path, heap.I)
    return np.load(queries_path), np.load(truth_path)


def _add_chunk(heap, queries: np.ndarray, chunk: np.ndarray, start: int) -> None:
    import faiss

    scores, rows = faiss.knn(queries, chunk, K, metric=faiss.METRIC_INNER_PRODUCT)
    heap.add_result(scores, rows + start)


def memory(process: int | str = "self") -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{process}/status").read_text().splitlines():
        if line.startswith(("RssAnon", "RssFile", "VmHWM")):
            name, value = line.split(":")
            fields[name] = int(value.split()[0]) * 1024
    return fields


# --- building (one process per system) ------------------------------------------------------------
def build_one(name: str, size: int) -> None:
    from benchmarks.synthetic import synthetic_vectors

    base = synthetic_vectors(POOL)
    queries, truth = queries_and_truth(size)
    folder = folder_of(size, name)
    folder.mkdir(parents=True, exist_ok=True)
    chosen = system(name)
    print(f"building {name} over {size:,} vectors", flush=True)
    started = time.perf_counter()
    built = chosen.build(base, size, folder)
    built["build_s"] = time.perf_counter() - started
    built["build_peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    (folder / "build.json").write_text(json.dumps(built, indent=1))
    print(f"{name}: built in {built['build_s']:.0f} s", flush=True)


def tune_one(name: str, size: int) -> None:
    """Set the system's knob on all the queries: every system reaches the target on the same queries."""
    queries, truth = queries_and_truth(size)
    folder = folder_of(size, name)
    saved = json.loads((folder / "build.json").read_text())
    chosen = system(name)
    chosen.open(folder, {key: value for key, value in saved.items() if not key.startswith("knob")})
    saved["knob"], saved["trials"] = chosen.tune(queries, truth)
    saved["tuned_on"] = len(queries)
    (folder / "build.json").write_text(json.dumps(saved, indent=1))
    print(f"{name}: knob {saved['knob']}", flush=True)


def built_info(size: int, name: str) -> dict | None:
    """The system's build record: how it was built, its knob as tuned ("knob", "trials", "tuned_on")."""
    path = folder_of(size, name) / "build.json"
    return json.loads(path.read_text()) if path.exists() else None


# --- measuring (the worker: one fresh process per system and round) -------------------------------
def worker(name: str, size: int) -> None:
    """Answers commands on stdin, one JSON line each; replies on stdout."""
    queries, truth = queries_and_truth(size)
    chosen = system(name)
    built = built_info(size, name)
    for module in LIBRARIES[name.split("-")[0]]:  # the baseline: the library loaded, no index yet
        importlib.import_module(module)
    before = memory()
    started = time.perf_counter()
    chosen.open(folder_of(size, name), built)
    reply({"load_s": time.perf_counter() - started})
    truth = getattr(chosen, "truth", truth)  # lookalike-call: its own pipeline run exactly; HTTP: none
    served = getattr(chosen, "server_memory", None)  # a server's memory: its whole process
    if served:
        before = {"RssAnon": 0, "RssFile": 0}
    for line in sys.stdin:
        command = json.loads(line)
        if command["do"] == "run":
            reply(run_queries(chosen, queries, truth, range(command["start"], command["stop"])))
        elif command["do"] == "settle":
            getattr(chosen, "settle", lambda size: None)(size)
            reply({})
        elif command["do"] == "memory":
            now = served() if served else memory()
            reply({"anon": now["RssAnon"] - before["RssAnon"], "file": now["RssFile"] - before["RssFile"],
                   "total": now["RssAnon"] + now["RssFile"]})
        elif command["do"] == "evict":
            evicted = getattr(chosen, "evict", lambda: False)()
            reply({"evicted": evicted})
        else:
            return getattr(chosen, "close", lambda: None)()


def run_queries(chosen, queries: np.ndarray, truth: np.ndarray | None, rows: range) -> dict:
    """One query at a time, each timed by this process; a served system's by the server's own clock (the round
    trip kept beside)."""
    clock, found = [], []
    by_id = hasattr(chosen, "search_indexed")  # HTTP takes no vector: the row's indexed image is the query
    for row in rows:
        started = time.perf_counter()
        found.append(chosen.search_indexed(row) if by_id else chosen.search(queries[row]))
        clock.append((time.perf_counter() - started) * 1e3)
    if by_id:
        return {"ms": found, "round_trip": clock, "recall": None}
    if truth is None:
        return {"ms": clock, "recall": None}
    hits = [len(set(f.tolist()) & set(truth[r].tolist())) / K for f, r in zip(found, rows, strict=True)]
    return {"ms": clock, "recall": float(np.mean(hits))}


def reply(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class Worker:
    def __init__(self, name: str, size: int):
        self.process = subprocess.Popen([sys.executable, "-m", "benchmarks.peers", "--worker", name, str(size)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=HERE.parent)
        self.load_s = self.read()["load_s"]

    def ask(self, **command) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self.read()

    def read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited with {self.process.wait()}")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.write(json.dumps({"do": "quit"}) + "\n")
        self.process.stdin.close()
        self.process.wait()


class BusyCores:
    """`count` processes each spinning one core, for as long as the block runs."""

    def __init__(self, count: int):
        self.count, self.processes = count, []

    def __enter__(self):
        self.processes = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.count)]
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


def files_in(folder: Path) -> list[Path]:
    return [path for path in sorted(folder.rglob("*")) if path.is_file()]  # the call's index is a folder inside


@contextmanager
def bench_lock() -> Iterator[None]:
    """The machine's benchmark lock, held for the timed rounds only (waited for): two timings never overlap."""
    with open(LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def drop_from_page_cache(folder: Path) -> None:
    for path in files_in(folder):
        with open(path, "rb") as handle:
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def cached_bytes(folder: Path) -> int:
    """Bytes of the folder's files in the page cache (util-linux fincore), -1 when it cannot be asked."""
    try:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", *map(str, files_in(folder))],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return -1
    return sum(int(v) for v in out.split())


def measure_round(name: str, size: int, round_: int) -> dict:
    folder = folder_of(size, name)
    drop_from_page_cache(folder)
    left = cached_bytes(folder)
    load_average = os.getloadavg()[0]
    worker_ = Worker(name, size)
    result = {"load_s": worker_.load_s, "cached_before_load": left, "load_average": load_average}
    cold_start = (round_ * COLD_QUERIES) % HELD_OUT
    result["cold"] = worker_.ask(do="run", start=cold_start, stop=cold_start + COLD_QUERIES)["ms"]
    worker_.ask(do="settle")  # the call's guard rows, read by a thread from its second search on, are in
    warm_up = worker_.ask(do="run", start=0, stop=WARM_UP)["ms"]
    count = HELD_OUT if np.median(warm_up) < SLOW_MS else SLOW_QUERIES  # exact search at 100k: 76 ms a query
    warm = worker_.ask(do="run", start=0, stop=count)
    result["warm"], result["recall"] = warm["ms"], warm["recall"]
    if "round_trip" in warm:
        result["round_trip"] = warm["round_trip"]
    result["memory"] = worker_.ask(do="memory")
    for busy in (1, 2):
        start, stop = (round_ * BUSY_QUERIES) % HELD_OUT, (round_ * BUSY_QUERIES) % HELD_OUT + min(count, BUSY_QUERIES)
        with BusyCores(busy):
            result[f"busy{busy}"] = worker_.ask(do="run", start=start, stop=stop)["ms"]
    if worker_.ask(do="evict")["evicted"]:
        drop_from_page_cache(folder)
        result["evicted_cached"] = cached_bytes(folder)
        start = (round_ * EVICTED_QUERIES) % HELD_OUT
        result["evicted"] = worker_.ask(do="run", start=start, stop=start + EVICTED_QUERIES)["ms"]
    worker_.close()
    return result


# --- the report ----------------------------------------------------------------------------------
def summarise(rounds: list[dict]) -> dict:
    recalls = [r["recall"] for r in rounds if r["recall"] is not None]  # HTTP has none
    row = {"load_s": float(np.median([r["load_s"] for r in rounds])),
           "recall": float(np.median(recalls)) if recalls else None,
           "anon": float(np.median([r["memory"]["anon"] for r in rounds])),
           "file": float(np.median([r["memory"]["file"] for r in rounds])),
           "first": float(np.median([r["cold"][0] for r in rounds])),
           "cold_p50": float(np.median([np.percentile(r["cold"], 50) for r in rounds])),
           "cold_max": float(np.median([max(r["cold"]) for r in rounds]))}
    for condition in ("warm", "busy1", "busy2", "evicted", "round_trip"):  # the median round's p50 and p99
        if condition in rounds[0]:
            for percentile in (50, 99):
                row[f"{condition}_p{percentile}"] = float(np.median([np.percentile(r[condition], percentile)
                                                                     for r in rounds]))
    return row


def report(size: int, names: list[str], results: dict[str, list[dict]], loads: list[float]) -> list[str]:
    from benchmarks import collect

    rows = {name: summarise(results[name]) for name in names}
    calls = any(name in CALLS for name in names)
    lines = [heading(size, names), "",
             f"{collect.machine_line()} Load average (1 min) when each process started: "
             f"{min(loads):.1f} to {max(loads):.1f}; this machine has 2 cores, so \"both cores busy\" means two "
             f"busy-loop processes plus the search on 2 cores.{host_reclaim()}", ""]
    if calls:
        lines += [CALL_METHOD, ""]
    lines += table(size, names, rows, calls)
    if calls:
        return lines + ["", *call_ratios(names, rows), "", *call_targets(rows, results, loads), "", *call_notes(rows)]
    ours = next((name for name in names if name.startswith("lookalike")), None)
    if ours:
        lines += ["", *peer_ratios(ours, names, rows), "", *targets(ours, rows, loads)]
    return lines


def heading(size: int, names: list[str]) -> str:
    """A run naming the call's systems writes a section of its own: the earlier peers rows stay."""
    return f"### {size:,} vectors" + (": the call users make" if any(name in CALLS for name in names) else "")


def table(size: int, names: list[str], rows: dict[str, dict], calls: bool) -> list[str]:
    lines = [f"| system | knob (tuned) | recall@10{' (against)' if calls else ''} | build | RAM | mapped | load | "
             "first query cold | cold p50 / max | warm p50 / p99 | 1 core busy p50 / p99 | 2 cores busy p50 / p99 | "
             "evicted p50 / p99 |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        row, built = rows[name], built_info(size, name)
        evicted = (f"{row['evicted_p50']:.2f} / {row['evicted_p99']:.2f} ms" if "evicted_p50" in row else "-")
        lines.append(
            f"| {name} | {knob_text(built)} | {recall_text(name, row['recall'], calls)} | {built['build_s']:.0f} s | "
            f"{row['anon'] / 2**20:,.0f} MiB | {row['file'] / 2**20:,.0f} MiB | {row['load_s']:.2f} s | "
            f"{row['first']:.2f} ms | {row['cold_p50']:.2f} / {row['cold_max']:.2f} ms | "
            f"{row['warm_p50']:.2f} / {row['warm_p99']:.2f} ms | {row['busy1_p50']:.2f} / {row['busy1_p99']:.2f} ms | "
            f"{row['busy2_p50']:.2f} / {row['busy2_p99']:.2f} ms | {evicted} |")
    return lines


def recall_text(name: str, recall_: float | None, calls: bool) -> str:
    if recall_ is None:
        return "- (see below)"
    if not calls:
        return f"{recall_:.3f}"
    return f"{recall_:.3f} ({'the same call run exactly' if name in CALLS else 'full-vector exact'})"


def peer_ratios(ours: str, names: list[str], rows: dict[str, dict]) -> list[str]:
    lines = [f"Ratios {ours} / peer (below 1: lookalike is faster or smaller):", "",
             "| peer | warm p50 | warm p99 | 1 core busy p50 | 1 core busy p99 | 2 cores busy p50 | cold p50 "
             "| RAM |", "|---|---|---|---|---|---|---|---|"]
    us = rows[ours]
    for name in names:
        if name != ours:
            ratios = [us[key] / rows[name][key] for key in ("warm_p50", "warm_p99", "busy1_p50", "busy1_p99",
                                                            "busy2_p50", "cold_p50", "anon")]
            lines.append(f"| {name} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")
    return lines


def call_ratios(names: list[str], rows: dict[str, dict]) -> list[str]:
    """Each row over hnswlib M16 measured in the same run (issue 29's yardstick)."""
    keys = ("warm_p50", "warm_p99", "busy1_p50", "busy1_p99", "busy2_p50", "first", "cold_p50", "anon")
    graph = rows[BASELINE]
    lines = [f"Each row / {BASELINE} of this run (below 1: faster or smaller):", "",
             "| system | warm p50 | warm p99 | 1 core busy p50 | 1 core busy p99 | 2 cores busy p50 | first query cold "
             "| cold p50 | RAM |", "|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        if name != BASELINE:
            lines.append(f"| {name} | " + " | ".join(f"{rows[name][key] / graph[key]:.2f}" for key in keys) + " |")
    return lines


def call_targets(rows: dict[str, dict], results: dict[str, list[dict]], loads: list[float]) -> list[str]:
    """Issue 29's targets, each met or missed as measured, with p99, the first cold query and memory beside, and the
    ratio in each round (the spread on a shared machine)."""
    graph = rows[BASELINE]
    checks = [("default call `ImageIndex.search(vector=q, k=10)`", "lookalike-call", 1.0),
              ("HTTP, server side (`timings_ms.total`)", "lookalike-http", 1.3)]
    lines = [f"Targets (issue 29; the machine was {'quiet' if max(loads) < 1 else 'not quiet'}: load average up to "
             f"{max(loads):.1f} when a process started):", ""]
    for what, name, limit in checks:
        if name in rows:
            row = rows[name]
            ratio = row["warm_p50"] / graph["warm_p50"]
            lines.append(f"- {'met' if ratio <= limit else 'missed'}: {what} warm p50 <= {limit:.1f}x {BASELINE}: "
                         f"{row['warm_p50']:.2f} / {graph['warm_p50']:.2f} ms = {ratio:.2f}x (p99 "
                         f"{row['warm_p99']:.2f} / {graph['warm_p99']:.2f} ms = "
                         f"{row['warm_p99'] / graph['warm_p99']:.2f}x; first query cold {row['first']:.2f} ms against "
                         f"{graph['first']:.2f} ms; RAM {row['anon'] / 2**20:,.0f} MiB against "
                         f"{graph['anon'] / 2**20:,.0f} MiB; warm p50 ratio round by round: "
                         f"{' / '.join(f'{r:.2f}' for r in round_ratios(results[name], results[BASELINE]))})")
    return lines


def round_ratios(ours: list[dict], graph: list[dict]) -> list[float]:
    return [float(np.median(us["warm"]) / np.median(them["warm"])) for us, them in zip(ours, graph, strict=True)]


def call_notes(rows: dict[str, dict]) -> list[str]:
    notes = ["- Recall: the peers' against exact search over the full 1,280-d vectors; lookalike-call's against the "
             "same call (PCA, DBA, expansion, guard) with every vector search exact (the store's backend swapped for "
             "a flat one, benchmarks/call_cost.py's `exact_call_answers`), computed once after tuning."]
    if "lookalike-http" in rows:
        http = rows["lookalike-http"]
        notes += ["- lookalike-http's recall is \"-\": HTTP takes no vector, so its queries are indexed images (one id "
                  "per query), each left out of its own answer; there is no held-out truth to hold them to. It "
                  "searches the same index, tuned the same, as lookalike-call.",
                  f"- lookalike-http's times are the server's own `timings_ms.total` (the handler, from the parsed "
                  f"request to the JSON body); the client's round trip over loopback (httpx): warm p50 "
                  f"{http['round_trip_p50']:.2f} / p99 {http['round_trip_p99']:.2f} ms. Its load is the server's "
                  "start to `/ready` (Python's imports included), its RAM and mapped the server process's whole "
                  "(Python, FastAPI, lookalike and the index), not the gain over the library as for the others."]
    return notes


def targets(ours: str, rows: dict[str, dict], loads: list[float]) -> list[str]:
    """Issue 18's targets for lookalike, each met or missed as measured."""
    us, graph = rows[ours], next((rows[n] for n in rows if n.startswith("hnswlib")), None)
    checks = [(f"warm p50 <= 0.85 ms: {us['warm_p50']:.2f} ms", us["warm_p50"] <= 0.85),
              (f"one core busy p50 <= 2 ms: {us['busy1_p50']:.2f} ms", us["busy1_p50"] <= 2),
              (f"one core busy p99 <= 5 ms: {us['busy1_p99']:.2f} ms", us["busy1_p99"] <= 5),
              (f"first query cold <= 10 ms: {us['first']:.2f} ms (slowest of the first {COLD_QUERIES}: "
               f"{us['cold_max']:.2f} ms)", us["cold_max"] <= 10)]
    if "evicted_p50" in us:
        checks.append((f"queries right after eviction <= 10 ms: p50 {us['evicted_p50']:.2f} ms",
                       us["evicted_p50"] <= 10))
    if graph:
        ratios = [us[key] / graph[key] for key in ("warm_p50", "busy1_p50", "busy2_p50")]
        checks += [("never slower than hnswlib: warm / 1 busy / 2 busy p50 ratios "
                    + " / ".join(f"{r:.2f}" for r in ratios), max(ratios) <= 1),
                   (f"RAM <= 1/5 of hnswlib's: {us['anon'] / graph['anon']:.2f} (mapped re-rank rows not counted: "
                    f"{us['file'] / 2**30:.1f} GiB of page cache)", us["anon"] / graph["anon"] <= 0.2)]
    quiet = "quiet: load average below 1 when each process started" if max(loads) < 1 else \
        f"not quiet: load average up to {max(loads):.1f} when a process started"
    return [f"Targets for {ours} (issue 18; the machine was {quiet}):", "",
            *(f"- {'met' if ok else 'missed'}: {text}" for text, ok in checks)]


def host_reclaim() -> str:
    """A sentence on the host's proactive reclaim (DAMON pageout), which drops file pages idle for a while."""
    kdamond = Path("/sys/kernel/mm/damon/admin/kdamonds/0")
    scheme = kdamond / "contexts/0/schemes/0"
    try:
        running = (kdamond / "state").read_text().strip() == "on"
        action = (scheme / "action").read_text().strip()
        age = int((scheme / "access_pattern/age/min").read_text())
        aggregation_us = int((kdamond / "contexts/0/monitoring_attrs/intervals/aggr_us").read_text())
    except (OSError, ValueError):
        return ""
    if not running or action != "pageout":
        return ""
    return (f" This host runs DAMON proactive reclaim: memory idle for {age * aggregation_us / 1e6:.0f} s or more is "
            "paged out, so the pages of a memory-mapped index that queries have not touched for that long leave the "
            "page cache even without memory pressure (anonymous memory stays: there is no swap).")


def knob_text(built: dict) -> str:
    knob = ", ".join(f"{k}={v}" for k, v in built["knob"].items()) or "exact"
    shape = built.get("factory") or (f"M={built['M']}" if "M" in built else None) or (
        f"{built['dtype']}" if "dtype" in built else built.get("kind"))
    if built.get("pca"):  # the call's index: its graph is over the PCA-reduced vectors
        shape = f"{shape} M={built['params'].get('M')} on PCA {built['pca']}, {built['dba']}"
    return f"{shape}: {knob}" + (f" ({built['tuner']})" if "tuner" in built else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("size", type=int, nargs="?", default=POOL - HELD_OUT)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rebuild", default="", help="comma-separated systems to build again")
    parser.add_argument("--retune", default="", help="comma-separated systems to tune again")
    parser.add_argument("--build-only", action="store_true", help="build and tune, measure nothing")
    parser.add_argument("--report", action="store_true", help="write the section from the last run's results")
    parser.add_argument("--tune", nargs=2, metavar=("SYSTEM", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs=2, metavar=("SYSTEM", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--build", nargs=2, metavar=("SYSTEM", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker[0], int(args.worker[1]))
    if args.build:
        return build_one(args.build[0], int(args.build[1]))
    if args.tune:
        return tune_one(args.tune[0], int(args.tune[1]))
    names = args.systems.split(",")
    calls = any(name in CALLS for name in names)
    saved = OUT / f"peers-{args.size}" / ("results-call.json" if calls else "results.json")
    if args.report:  # the section again from the last run's measurements
        results = json.loads(saved.read_text())
        names = [name for name in names if name in results]
        loads = [r["load_average"] for name in names for r in results[name]]
        return write(report(args.size, names, results, loads))
    queries_and_truth(args.size)
    def run(step: str, name: str) -> None:
        subprocess.run([sys.executable, "-m", "benchmarks.peers", f"--{step}", name, str(args.size)], check=True,
                       cwd=HERE.parent)

    builds = {folder_of(args.size, n): BUILT_BY.get(n, n) for n in reversed(names)}  # variants share a build
    for name in builds.values():
        if built_info(args.size, name) is None or name in args.rebuild.split(","):
            run("build", name)
    for name in builds.values():  # and a knob
        if built_info(args.size, name).get("tuned_on") != HELD_OUT or name in args.retune.split(","):
            run("tune", name)
    if args.build_only:
        return None
    results: dict[str, list[dict]] = {name: [] for name in names}
    loads = []
    with bench_lock():
        for round_ in range(args.rounds):
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                print(f"round {round_ + 1}: {name}", flush=True)
                results[name].append(measure_round(name, args.size, round_))
                loads.append(results[name][-1]["load_average"])
    saved.write_text(json.dumps(results))
    lines = report(args.size, names, results, loads)
    print("\n".join(lines))
    write(lines)


def write(lines: list[str]) -> None:
    """Replace the section with this run's heading; the others (earlier runs, other sizes) stay as they were."""
    from benchmarks import collect

    path = collect.SECTIONS / "peers.md"
    sections = {}
    if path.exists():
        for part in path.read_text().split("\n### ")[1:]:
            sections[part.split("\n", 1)[0]] = "### " + part.rstrip()
    sections[lines[0].removeprefix("### ")] = "\n".join(lines)
    head = ["## Side by side with the tools people would pick instead (issue 18)", "",
            f"Written by `benchmarks/peers.py`. {METHOD}", ""]
    order = sorted(sections, key=lambda title: (int(title.split(" ", 1)[0].replace(",", "")), title))
    collect.write_section("peers", "\n".join(head + [sections[title] + "\n" for title in order]))


if __name__ == "__main__":
    main()
