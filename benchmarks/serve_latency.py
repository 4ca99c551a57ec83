"""Search by uploaded photo through `lookalike serve` at 3,781 and ~1M images, next to the peers (issue 18, part 4).

Four indexes, built once into benchmarks/out/serve/ and reused:

- `clothing`: every clothing photo embedded by the server's default model with the product's defaults
  (what `lookalike index clothing` builds: PCA 128 and database-side augmentation);
- `clothing-full`: the same 3,781 vectors, full 1,280-d, no PCA, no augmentation, `index_type="auto"`
  (exact search at this size): the vectors the peers below search;
- `clothing-1m`: those 3,781 real vectors plus the 999,000 synthetic vectors benchmarks/peers.py measures
  the peers on (benchmarks/synthetic.py), added through the public indexing run (`index.sync()`,
  `store_images`), no PCA, no augmentation, `index_type="auto"` with a 2G memory budget (the plan
  peers.py's lookalike system gets), then `index.tune()`;
- `clothing-1m-default`: the product's defaults at that size: `index_type="auto"`, the 2G budget, the default PCA
  (128, fitted at the end of the first run, on the 3,781 real vectors) and the default database-side augmentation
  (DBA over 10 neighbours), filled with the same real vectors and then the same synthetic ones, then `index.tune()`.
  Each stage's time and the process's peak RAM after it are kept in its build record.

Each is served by `lookalike serve` on loopback and sent the 372 clothing test photos as JPEG uploads by
1 and 4 httpx client threads, with the server's default expansion (aQE: two searches) and with
`expand=none` (one search, as the peers do). The peers' figures are the server's own decode + embed
time of each request added to a peer's single-query search time: at 3,781 FAISS IndexFlatIP and hnswlib
measured here on the same real vectors; at 999,000 the per-query times of benchmarks/peers.py's last run
(benchmarks/out/peers-999000/results.json).

    flock /tmp/lookalike-bench.lock .venv/bin/python -m benchmarks.serve_latency [--requests 400] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

from benchmarks import collect
from benchmarks.load_test import Timed, free_port, load_average, query_photos, start_server, timed_requests
from benchmarks.peers import EF, HELD_OUT, POOL, BusyCores
from lookalike.cli.common import progress_bar
from lookalike.index import ImageIndex, NewImage
from lookalike.index.tune import UnreachableRecallError
from lookalike.settings import datasets_dir

HERE = Path(__file__).resolve().parent
WORK = HERE / "out" / "serve"
SYNTHETIC = POOL - HELD_OUT  # the peers' collection: the first 999,000 synthetic vectors
CHUNK = 20_000  # synthetic vectors per store_images call (100 MB of float32)
BUDGET = "2G"
K = 10
CLIENTS = (1, 4)
EXPANSIONS = ("aqe", "none")  # the server's default, and one search per query as the peers do
PEER_QUERIES = 1_000  # single-query searches per peer and condition at 3,781
PEERS_1M = ("faiss", "faiss-1thread", "hnswlib-M16", "lookalike", "lookalike-ram", "lookalike-fastest")


# --- the indexes -------------------------------------------------------------------------------
def default_index(folder: Path, datasets: Path) -> ImageIndex:
    """Every clothing photo, with the product's defaults (PCA 128, DBA): `lookalike index clothing`."""
    index = ImageIndex.open_or_create(folder)
    if len(index) < len(clothing_labels(datasets)):
        with progress_bar("embedding clothing") as progress:
            report = index.add_folder(datasets / "clothing", progress=progress)
        print(f"embedded clothing: {report.added} added, {report.failed} failed in {report.seconds:.0f} s",
              file=sys.stderr)
    return index


def full_vector_index(folder: Path, source: ImageIndex, synthetic: int) -> dict:
    """The source's real vectors plus `synthetic` of the peers' vectors, full 1,280-d, the index type `auto` picks
    with the 2G budget, tuned when approximate. Built once: the build record beside the folder says it finished."""
    record = folder.with_suffix(".json")
    if record.exists():
        return json.loads(record.read_text())
    ids, vectors = source.vectors()
    real = {r.id: r for r in source.records()}
    started = time.perf_counter()
    with ImageIndex.open_or_create(folder, index_type="auto", expected_count=len(ids) + synthetic,
                                   max_memory=BUDGET, pca=0, dba=0, precision=precision_of(source)) as index:
        if len(index) == 0:
            run = index.sync()
            run.store_images([NewImage(real[i].path, real[i].content_hash, real[i].size, real[i].mtime,
                                       real[i].width, real[i].height) for i in ids.tolist()], vectors)
            run.finish()
        add_synthetic(index, len(index) - len(ids), synthetic)
        built_s = time.perf_counter() - started
        tuned = index.tune().to_dict() if index.manifest.index_type != "flat-ip" else None
        info = index.info() | {"index_params": index.manifest.index_params,
                               "index_choice": index.manifest.index_choice}
    built = {"real": len(ids), "synthetic": synthetic, "build_s": built_s,
             "tune_s": time.perf_counter() - started - built_s, "tuned": tuned, "info": info,
             "built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    record.write_text(json.dumps(built, indent=1))
    return built


def default_index_at_1m(folder: Path, source: ImageIndex, synthetic: int) -> dict:
    """The product's defaults (auto, 2G, PCA 128, DBA 10) over the source's real vectors, then `synthetic` of the
    peers' vectors; each stage timed, with the process's peak RAM after it. Built once, like full_vector_index.

    The synthetic vectors arrive in a second indexing run with augmentation off, and the augmentation is then built
    in one full pass (`augment()`, the defaults): left on, that run's finish would update the neighbour graph
    incrementally, one exact search over the whole collection per new image (999,000 of them; see the report)."""
    record = folder.with_suffix(".json")
    if record.exists():
        return json.loads(record.read_text())
    ids, vectors = source.vectors()
    real = {r.id: r for r in source.records()}
    stages: dict[str, dict] = {}
    total = len(ids) + synthetic
    with ImageIndex.open_or_create(folder, index_type="auto", expected_count=total, max_memory=BUDGET,
                                   precision=precision_of(source)) as index:
        plan = {"index_type": index.manifest.index_type, "index_params": index.manifest.index_params,
                "index_choice": index.manifest.index_choice}
        if len(index) == 0:
            with stage(stages, "store real"):
                run = index.sync()
                run.store_images([NewImage(real[i].path, real[i].content_hash, real[i].size, real[i].mtime,
                                           real[i].width, real[i].height) for i in ids.tolist()], vectors)
            with stage(stages, "finish real: PCA fit, backend rebuild, DBA"):
                run.finish()
        if len(index) < total:
            if index.manifest.augmentation_plan:
                with stage(stages, "augmentation off"):
                    index.remove_augmentation()
            with stage(stages, "store synthetic"):
                add_synthetic(index, len(index) - len(ids), synthetic)
        if not index.manifest.augmentation_plan:
            with stage(stages, "DBA full pass") as timing:
                def neighbours_found(done: int, count: int) -> None:
                    if done == count:
                        timing["neighbours_s"] = time.perf_counter() - timing["started"]

                index.augment(progress=neighbours_found)
        with stage(stages, "tune"):
            tuned = tuned_or_missed(index)
        info = index.info() | {"index_params": index.manifest.index_params,
                               "index_choice": index.manifest.index_choice}
    built = {"real": len(ids), "synthetic": synthetic, "planned": plan, "stages": stages, "tuned": tuned,
             "info": info, "built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    record.write_text(json.dumps(built, indent=1))
    return built


def with_incremental_dba_cost(record: Path, rows: int = 512) -> dict:
    """The build record, with what the incremental augmentation pass would have cost (measured once): the exact
    neighbour search it runs for each new image, timed for `rows` of them over unit vectors of the index's size
    and dimension (its cost depends only on those)."""
    from lookalike.index import augmentation

    built = json.loads(record.read_text())
    if "incremental_dba" not in built:
        count, dimension = built["info"]["count"], 128
        vectors = np.random.default_rng(0).standard_normal((count, dimension), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        started = time.perf_counter()
        augmentation.nearest_others(vectors, np.arange(rows), augmentation.DEFAULT_NEIGHBOURS)
        seconds = time.perf_counter() - started
        built["incremental_dba"] = {"rows": rows, "collection": count, "dimension": dimension, "seconds": seconds,
                                    "per_new": seconds / rows}
        record.write_text(json.dumps(built, indent=1))
    return built


def tuned_or_missed(index: ImageIndex) -> dict | None:
    """`index.tune()`'s report (None for exact search); a target it cannot reach is a measured miss, kept."""
    if index.manifest.index_type == "flat-ip":
        return None
    try:
        return index.tune().to_dict()
    except UnreachableRecallError as missed:
        return missed.report.to_dict() | {"missed": str(missed)}


@contextmanager
def stage(stages: dict[str, dict], name: str) -> Iterator[dict]:
    """Time a build stage into `stages[name]`, with the process's peak resident memory (GiB) during it: the
    kernel's high-water mark is reset when the stage starts (Linux /proc/self/clear_refs)."""
    timing = stages.setdefault(name, {})
    Path("/proc/self/clear_refs").write_text("5")
    timing["started"] = time.perf_counter()
    yield timing
    timing["seconds"] = time.perf_counter() - timing.pop("started")
    timing["peak_rss_gib"] = peak_rss_kib() / 2**20
    print(f"stage {name}: {timing}", file=sys.stderr)


def peak_rss_kib() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def precision_of(source: ImageIndex) -> str:
    """The network precision the copied vectors were computed in: the new index embeds uploads with the same one
    (a new index's default precision depends on the CPU)."""
    return source.manifest.embedder.get("precision", "float32")


def add_synthetic(index: ImageIndex, done: int, count: int) -> None:
    """The peers' synthetic vectors `done`..`count` (no image files behind them), in chunks, one indexing run;
    each chunk's pages are dropped from the page cache once stored, so 5 GB never sit in memory twice."""
    if done >= count:
        return
    from benchmarks.synthetic import synthetic_vectors

    pool = synthetic_vectors(POOL)
    run = index.sync()
    with progress_bar("adding synthetic vectors") as progress, open(pool.filename, "rb") as raw:
        for start in range(done, count, CHUNK):
            stop = min(count, start + CHUNK)
            images = [NewImage(str(index.folder / "synthetic" / f"synthetic-{n:07d}.jpg"), f"synthetic-{n}", 0, 0.0,
                               224, 224) for n in range(start, stop)]
            run.store_images(images, np.array(pool[start:stop]))
            run.commit()
            row_bytes = pool.shape[1] * 4
            os.posix_fadvise(raw.fileno(), start * row_bytes, (stop - start) * row_bytes, os.POSIX_FADV_DONTNEED)
            progress(stop - done, count - done)
    print("saving the index", file=sys.stderr)
    run.finish()


# --- the server --------------------------------------------------------------------------------
Upload = Callable[[httpx.Client, int], httpx.Response]


def upload(base: str, photos: list[tuple[str, bytes]], expand: str) -> Upload:
    def by_upload(client: httpx.Client, n: int) -> httpx.Response:
        name, data = photos[n % len(photos)]
        return client.post(f"{base}/search", files={"image": (name, data, "image/jpeg")},
                           data={"k": str(K), "expand": expand})

    return by_upload


def measure_server(folder: Path, photos: list[tuple[str, bytes]], requests: int, rounds: int) -> dict:
    """Every (clients, expansion) cell `rounds` times, interleaved, on one server; the cells' requests pooled."""
    port = free_port()
    load_before = load_average()
    started = time.perf_counter()
    server = start_server(folder, port, ready_within=600)
    ready_s = time.perf_counter() - started
    cells: dict[str, list[Timed]] = {}
    try:
        base = f"http://127.0.0.1:{port}/api/indexes/{folder.name}"
        first = timed_requests(upload(base, photos, "aqe"), 1, 1)  # the first request after start
        timed_requests(upload(base, photos, "aqe"), 50, 1)  # warm-up, not reported
        for round_ in range(rounds):
            for clients in CLIENTS:
                for expand in EXPANSIONS:
                    timed = timed_requests(upload(base, photos, expand), requests, clients)
                    cells.setdefault(f"{clients}/{expand}", []).append(timed)
                    print(f"{folder.name} round {round_ + 1} clients {clients} expand {expand}: "
                          f"p50 {np.percentile(timed.latencies, 50):.1f} ms, p99 "
                          f"{np.percentile(timed.latencies, 99):.1f} ms, errors {timed.errors}", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=60)
    return {"load_before": load_before, "load_after": load_average(), "ready_s": ready_s,
            "first_ms": first.latencies[0], "cells": {name: pooled(runs) for name, runs in cells.items()}}


def pooled(runs: list[Timed]) -> dict:
    server = [t for run in runs for t in run.server_ms]
    return {"latencies": [x for run in runs for x in run.latencies], "errors": sum(run.errors for run in runs),
            "throughput": sum(len(run.latencies) for run in runs) / sum(run.wall for run in runs),
            "decode_embed": [t.get("decode", 0.0) + t.get("embed", 0.0) for t in server],
            "decode": [t.get("decode", 0.0) for t in server], "embed": [t.get("embed", 0.0) for t in server],
            "search": [t.get("search", 0.0) for t in server], "total": [t.get("total", 0.0) for t in server],
            "p99_per_round": [float(np.percentile(run.latencies, 99)) for run in runs]}


# --- the peers ---------------------------------------------------------------------------------
def peers_on_real_vectors(index: ImageIndex, photos: list[tuple[str, bytes]]) -> dict[str, dict[str, list[float]]]:
    """FAISS IndexFlatIP (exact, default threads and one thread) and hnswlib M16 (ef tuned to recall@10 >= 0.95)
    over the index's 3,781 real vectors, queried one at a time by the upload photos' own vectors (those the server
    computes: the photos are indexed), quiet and with both cores busy."""
    import faiss
    import hnswlib

    ids, base = index.vectors()
    base = np.ascontiguousarray(base, dtype=np.float32)
    by_path = index.ids_by_path()
    rows = np.searchsorted(ids, [by_path[os.path.abspath(p)] for p in test_photo_paths(datasets_dir())[:len(photos)]])
    queries = base[rows]
    flat = faiss.IndexFlatIP(base.shape[1])
    flat.add(base)
    truth = flat.search(queries, K)[1]
    graph = hnswlib.Index(space="ip", dim=base.shape[1])
    graph.init_index(max_elements=len(base), ef_construction=100, M=16)
    graph.add_items(base, np.arange(len(base)))
    graph.set_num_threads(1)
    ef = next((ef for ef in EF if hit_rate(graph, queries, truth, ef) >= 0.95), EF[-1])
    graph.set_ef(ef)
    threads = faiss.omp_get_max_threads()

    def faiss_search(one: int) -> Callable[[np.ndarray], object]:
        def search(query: np.ndarray) -> object:
            faiss.omp_set_num_threads(one)
            return flat.search(query[None], K)

        return search

    systems = {"faiss-flat": faiss_search(threads), "faiss-flat-1thread": faiss_search(1),
               f"hnswlib-M16 (ef {ef})": lambda query: graph.knn_query(query[None], K)}
    timings = {name: {"warm": single_queries(search, queries)} for name, search in systems.items()}
    with BusyCores(2):
        for name, search in systems.items():
            timings[name]["busy2"] = single_queries(search, queries)
    faiss.omp_set_num_threads(threads)
    return timings


def clothing_labels(datasets: Path) -> list[str]:
    return (datasets / "clothing" / "labels.csv").read_text().splitlines()[1:]


def test_photo_paths(datasets: Path) -> list[Path]:
    """The clothing test photos in the order load_test.query_photos uploads them."""
    return [datasets / "clothing" / line.split(",")[0] for line in clothing_labels(datasets)
            if line.endswith(",test")]


def hit_rate(graph, queries: np.ndarray, truth: np.ndarray, ef: int) -> float:
    graph.set_ef(max(ef, K))
    found = graph.knn_query(queries, K)[0]
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)]))


def single_queries(search: Callable[[np.ndarray], object], queries: np.ndarray) -> list[float]:
    for row in range(min(100, len(queries))):  # warm-up
        search(queries[row])
    times = []
    for n in range(PEER_QUERIES):
        started = time.perf_counter()
        search(queries[n % len(queries)])
        times.append((time.perf_counter() - started) * 1e3)
    return times


def peers_at_1m() -> tuple[dict[str, dict], str]:
    """benchmarks/peers.py's per-query times at 999,000 (all its rounds pooled), its recall, and when they were
    measured (the results file's time)."""
    path = HERE / "out" / f"peers-{SYNTHETIC}" / "results.json"
    if not path.exists():
        return {}, ""
    results = json.loads(path.read_text())
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(path.stat().st_mtime))
    timings = {name: {"warm": [x for r in results[name] for x in r["warm"]],
                      "busy2": [x for r in results[name] for x in r["busy2"]],
                      "recall": float(np.median([r["recall"] for r in results[name]]))}
               for name in PEERS_1M if name in results}
    return timings, when


def with_embedding(decode_embed: list[float], search: list[float]) -> tuple[float, float]:
    """p50 and p99 of decode+embed (each request's, as the server timed it) plus a peer's search time, every pair of
    the two distributions taken as equally likely (the two are independent)."""
    total = (np.asarray(decode_embed)[:, None] + np.asarray(search)[None, :]).ravel()
    return float(np.percentile(total, 50)), float(np.percentile(total, 99))


# --- the report --------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="requests per cell and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over the cells (requests pooled)")
    parser.add_argument("--sizes", default="3781,1m", help="which indexes to measure: 3781, 1m or both")
    parser.add_argument("--build-only", action="store_true", help="build the indexes, measure nothing")
    parser.add_argument("--no-section", action="store_true", help="print only (a smoke run of the script)")
    parser.add_argument("--report", action="store_true", help="write the section from the last run's measurements")
    args = parser.parse_args()

    datasets = datasets_dir()
    if not (datasets / "clothing" / "labels.csv").exists():
        raise SystemExit(f"serve_latency: {datasets / 'clothing'} not found; set LOOKALIKE_DATASETS")
    WORK.mkdir(parents=True, exist_ok=True)
    sizes = args.sizes.split(",")
    with default_index(WORK / "clothing", datasets) as small:
        builds = {"3781": full_vector_index(WORK / "clothing-full", small, 0)}
        if "1m" in sizes:
            builds["1m"] = full_vector_index(WORK / "clothing-1m", small, SYNTHETIC)
            with ImageIndex.open(WORK / "clothing-full") as full:
                builds["1m default"] = default_index_at_1m(WORK / "clothing-1m-default", full, SYNTHETIC)
            builds["1m default"] = with_incremental_dba_cost(WORK / "clothing-1m-default.json")
        small_info = small.info()
    if args.build_only:
        return
    saved = WORK / "measured.json"
    measured = json.loads(saved.read_text()) if args.report else measure(sizes, args.requests, args.rounds)
    if not args.report:
        saved.write_text(json.dumps(measured))
    lines = report(measured, builds, small_info)
    print("\n".join(lines))
    if not args.no_section:
        collect.write_section("serve_latency", "\n".join(lines))


def measure(sizes: list[str], requests: int, rounds: int) -> dict:
    """Every server and the peers at 3,781, with the machine and the peers' 1M times: what the section shows."""
    photos = query_photos(datasets_dir(), count=10_000)  # every clothing test photo
    measured: dict[str, dict] = {}
    peers: dict[str, dict] = {}
    if "3781" in sizes:
        with ImageIndex.open(WORK / "clothing-full") as full:
            peers["3781"] = peers_on_real_vectors(full, photos)
        measured["3781 default"] = measure_server(WORK / "clothing", photos, requests, rounds)
        measured["3781"] = measure_server(WORK / "clothing-full", photos, requests, rounds)
    if "1m" in sizes:
        measured["1m"] = measure_server(WORK / "clothing-1m", photos, requests, rounds)
        measured["1m default"] = measure_server(WORK / "clothing-1m-default", photos, requests, rounds)
    peers["1m"], peers_when = peers_at_1m()
    return {"machine": collect.machine_line(), "measured": measured, "peers": peers, "peers_when": peers_when,
            "photos": len(photos), "requests": requests, "rounds": rounds}


def report(saved: dict, builds: dict, small_info: dict) -> list[str]:
    measured, peers, photos = saved["measured"], saved["peers"], saved["photos"]
    lines = ["## Search by uploaded photo through the server, next to the peers (issue 18, part 4)", "",
             saved["machine"] + " Written by `benchmarks/serve_latency.py`.", "",
             f"`lookalike serve` (uvicorn, one process) on 127.0.0.1; clients: httpx threads on the same 2 cores, one "
             f"connection each. Queries: the {photos} clothing test photos uploaded as JPEG bytes (they are also "
             f"indexed), k={K}; each cell is {saved['rounds']} rounds x {saved['requests']} requests, rounds "
             "interleaved over the cells, requests pooled. Latency is the client's (request sent to JSON parsed); "
             "decode+embed and search are the server's own timings of each request (medians here). Load average "
             "(1/5/15 min) before and after each server's run is given with its table.", "",
             "Indexes: **3,781 default**: the clothing photos as `lookalike index` builds them "
             f"({small_info['reduction']}, augmentation {small_info['augmentation']}, {small_info['index_type']}); "
             "**3,781 full**: the same vectors at full 1,280-d, no PCA, no augmentation, `index_type=\"auto\"` "
             f"(it chose {builds['3781']['info']['index_type']}): what the peers search; "]
    if "1m" in builds:
        b = builds["1m"]
        lines[-1] += (f"**1M**: those {b['real']:,} real vectors plus the {b['synthetic']:,} synthetic vectors "
                      "benchmarks/peers.py measures the peers on (benchmarks/synthetic.py; no image files behind "
                      "them), added through `index.sync()` / `store_images`, no PCA and no augmentation (as the "
                      f"peers search full vectors), `index_type=\"auto\"`, `max_memory=\"{BUDGET}\"`: it chose "
                      f"{b['info']['index_type']} {json.dumps(b['info']['index_params'])}, after `index.tune()` "
                      f"(recall@10 {b['tuned']['recall'] if b['tuned'] else '-'} on 500 of its own vectors); "
                      f"built {b['built']} in {b['build_s'] / 60:.1f} min + {b['tune_s']:.0f} s tuning, "
                      f"{b['info']['disk_bytes'] / 2**30:.1f} GiB on disk.")
    if "1m default" in builds:
        lines[-1] += " " + default_at_1m_text(builds["1m default"])
    for name, run in measured.items():
        lines += ["", *server_table(name, run)]
    lines += ["", *peer_table(measured, peers, saved["peers_when"])]
    return lines + before_is_empty() + before_live_counter(measured)


def default_at_1m_text(b: dict) -> str:
    """What the product's defaults chose at 1M, each build stage's time and peak RAM, and what its recall means."""
    dba = b["stages"].get("DBA full pass", {})
    notes = {"store synthetic": " (SQLite rows and the HNSW graph over their PCA vectors, in chunks)",
             "DBA full pass": (f" (its neighbour search {dba['neighbours_s'] / 60:.1f} min, then the augmented vectors "
                               "written and the backend rebuilt from them)" if "neighbours_s" in dba else "")}
    stages = "; ".join((f"{name} {t['seconds'] / 60:.1f} min" if t["seconds"] >= 60 else f"{name} {t['seconds']:.1f} s")
                       + notes.get(name, "") for name, t in b["stages"].items())
    peak_stage = max(b["stages"], key=lambda name: b["stages"][name]["peak_rss_gib"])  # the first at the peak
    tuned = b["tuned"]
    tuning = ("no search knob to tune" if tuned is None else
              f"`index.tune()` set {json.dumps(tuned['params'])}, recall@10 {tuned['recall']}"
              + (f" (missed: {tuned['missed']})" if "missed" in tuned else ""))
    incremental = b.get("incremental_dba")
    why = ("" if incremental is None else
           f" Left on, the second run's finish would have updated the neighbour graph incrementally, which searches "
           f"each new image's neighbours exactly against the whole collection: {incremental['rows']} such rows over "
           f"{incremental['collection']:,} x {incremental['dimension']} vectors took {incremental['seconds']:.1f} s "
           f"here, so {incremental['per_new'] * b['synthetic'] / 3600:.1f} h for the {b['synthetic']:,} new images "
           "(a product issue, reported; a single run of all 1M images takes the full, approximate pass).")
    return (f"**1M default**: the product's defaults at that size, `ImageIndex.create(folder, index_type=\"auto\", "
            f"expected_count={b['real'] + b['synthetic']:,}, max_memory=\"{BUDGET}\")` with the default PCA and "
            "DBA (and the float32 network, in which the copied vectors were computed: new indexes now default to "
            "the int8 network on CPUs with integer dot-product instructions, this one included; every index here is "
            "float32, so the server embeds uploads in float32 for all of them), filled with the same "
            f"{b['real']:,} real vectors in a first indexing run (whose finish fits the "
            f"PCA on them: {b['info']['reduction']}) and the same {b['synthetic']:,} synthetic vectors in a second "
            f"run with augmentation off, then `index.augment()` in one full pass (the default: "
            f"{b['info']['augmentation']}). `auto` chose {b['planned']['index_type']} "
            f"{json.dumps(b['planned']['index_params'])} "
            f"over the {b['info']['reduction'].split(' (')[0].split('-> ')[-1]}-d vectors (\""
            + "; ".join(b["planned"]["index_choice"]) + f"\"); {tuning} on 500 of its own vectors, against exact "
            "search in its own space (its own PCA-128 vector as the query, the augmented vectors as the "
            "collection): not comparable with the full-vector indexes' recall, and the synthetic vectors have no "
            "labels, so its search quality on the synthetic part is not measured here. Built "
            f"{b['built']}: {stages}; peak resident memory of the building process "
            f"{b['stages'][peak_stage]['peak_rss_gib']:.1f} GiB, in the stage {peak_stage}; "
            f"{b['info']['disk_bytes'] / 2**30:.1f} GiB on disk." + why)


def before_live_counter(measured: dict) -> list[str]:
    """The previous run of this script, before searches stopped counting the backend's live rows, if kept."""
    path = WORK / "measured-before-live-counter.json"
    if not path.exists() or "1m" not in measured:
        return []
    earlier = json.loads(path.read_text())["measured"]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(path.stat().st_mtime))

    def change(size: str) -> str:
        cells = []
        for clients in CLIENTS:
            before, now = earlier[size]["cells"][f"{clients}/none"], measured[size]["cells"][f"{clients}/none"]
            cells.append(f"{clients} client{'s' if clients > 1 else ''}: server search p50 "
                         f"{np.percentile(before['search'], 50):.2f} -> {np.percentile(now['search'], 50):.2f} ms, "
                         f"HTTP p50 {np.percentile(before['latencies'], 50):.1f} -> "
                         f"{np.percentile(now['latencies'], 50):.1f} ms")
        return "; ".join(cells)

    control = (f" The 3,781 full-vector index (exact search: its backend kept no such count) in the same two runs: "
               f"{change('3781')}: what changed between the runs besides the fix (the machine's load, the working "
               "tree), to read the 1M change against."
               if "3781" in measured and "3781" in earlier else "")
    return ["", f"The run of {when} (after the `COUNT(*)` fix) still counted the backend's live rows on every "
                "search (`count_nonzero` over the 1M row ids); that count is now kept. 1M full vectors, `expand=none`, "
                f"that run -> this one: {change('1m')}." + control]


def before_is_empty() -> list[str]:
    """The same script's run before searches stopped counting the images (SQLite COUNT(*), every search), if kept."""
    path = WORK / "measured-before-is-empty.json"
    if not path.exists():
        return []
    earlier = json.loads(path.read_text())["measured"]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(path.stat().st_mtime))
    cells = []
    for size, label in (("3781", "3,781 full"), ("1m", "1M")):
        for clients in CLIENTS:
            if size in earlier:
                c = earlier[size]["cells"][f"{clients}/none"]
                cells.append(f"{label}, {clients} client{'s' if clients > 1 else ''}: HTTP p50 / p99 "
                             f"{np.percentile(c['latencies'], 50):.1f} / {np.percentile(c['latencies'], 99):.1f} ms, "
                             f"server search p50 {np.percentile(c['search'], 50):.2f} ms")
    return ["", f"An earlier run of the same script ({when}) measured every search also counting the index's images "
                "(`len()` of the store: SQLite `COUNT(*)`, which reads the whole table, 7 ms at 1M rows); searches "
                "now ask only whether the index is empty (`VectorStore.is_empty`). Then, `expand=none`: "
                + "; ".join(cells) + "."]


def server_table(name: str, run: dict) -> list[str]:
    title = {"3781 default": "3,781 images, default index (PCA 128 + DBA)", "3781": "3,781 images, full vectors",
             "1m": "1M images, full vectors", "1m default": "1M images, default index (PCA 128 + DBA)"}[name]
    lines = [f"### {title}", "",
             f"Load average before: {run['load_before']}, after: {run['load_after']}. Server ready "
             f"{run['ready_s']:.1f} s after start; first request {run['first_ms']:.1f} ms.", "",
             "| clients | expand | requests | errors | req/s | p50 | p99 (per round) | max | decode+embed p50 | "
             "search p50 / p99 | server total p50 | HTTP overhead p50 |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for cell, c in run["cells"].items():
        clients, expand = cell.split("/")
        lat = np.asarray(c["latencies"])
        overhead = np.percentile(lat, 50) - np.percentile(c["total"], 50)
        lines.append(f"| {clients} | {expand} | {len(lat)} | {c['errors']} | {c['throughput']:.1f} | "
                     f"{np.percentile(lat, 50):.1f} ms | {np.percentile(lat, 99):.1f} ms "
                     f"({' / '.join(f'{x:.1f}' for x in c['p99_per_round'])}) | {lat.max():.1f} ms | "
                     f"{np.median(c['decode_embed']):.1f} ms | {np.percentile(c['search'], 50):.2f} / "
                     f"{np.percentile(c['search'], 99):.2f} ms | {np.median(c['total']):.1f} ms | {overhead:.1f} ms |")
    return lines


def peer_table(measured: dict, peers: dict, peers_when: str) -> list[str]:
    lines = ["### Next to the peers: embedding + peer search", "",
             "Each peer's figure is what a user wiring that library behind the same model would get, minus the HTTP "
             "overhead: the server's own decode+embed time of each request in the `expand=none` cell (same size, "
             "same client count) added to the peer's single-query search time, every pair of the two measured "
             "distributions counted once (p50/p99 of the sum). With 1 client the peer's search is its quiet figure; "
             "with 4 clients (4 requests embedding at once on 2 cores) its figure with both cores busy. lookalike's "
             "row is the same sum from its own server timings (decode+embed + search, `expand=none`), and its HTTP "
             "latency is given beside it. At 3,781 the peers were measured in this run, on the same 3,781 real "
             "vectors, queried by the upload photos' own vectors (each is indexed, so hnswlib reaches recall@10 "
             "0.95 against exact search at a small ef). At 1M the peers' times are benchmarks/peers.py's "
             f"per-query times (999,000 synthetic vectors, its 1,000 held-out synthetic queries, all rounds pooled), "
             f"from its run of {peers_when or 'never'}, not this run; lookalike's search at 1M here answers real "
             "photos over 3,781 real + 999,000 synthetic vectors. The default indexes' rows (PCA 128 + DBA) are "
             "lookalike as installed: they search other vectors than the peers (128-d, augmented), so they get no "
             "ratio.", "",
             "| images | clients | system | search p50 / p99 | embedding + search p50 | p99 "
             "| lookalike / peer (p50 / p99) |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for size in ("3781", "1m"):
        if size not in measured:
            continue
        for clients in CLIENTS:
            cell = measured[size]["cells"][f"{clients}/none"]
            ours50, ours99 = with_embedding(cell["decode_embed"], cell["search"])
            http = np.asarray(cell["latencies"])
            label = "3,781" if size == "3781" else "1M"
            lines.append(f"| {label} | {clients} | lookalike (server timings; HTTP p50 {np.percentile(http, 50):.1f} "
                         f"/ p99 {np.percentile(http, 99):.1f} ms) | {np.percentile(cell['search'], 50):.2f} / "
                         f"{np.percentile(cell['search'], 99):.2f} ms | {ours50:.1f} ms | {ours99:.1f} ms | - |")
            if f"{size} default" in measured:
                lines.append(default_row(label, clients, measured[f"{size} default"]["cells"][f"{clients}/none"]))
            for peer, times in peers.get(size, {}).items():
                search = times["warm" if clients == 1 else "busy2"]
                p50, p99 = with_embedding(cell["decode_embed"], search)
                recall = f" (recall@10 {times['recall']:.3f})" if "recall" in times else ""
                lines.append(f"| {label} | {clients} | {peer}{recall} | {np.percentile(search, 50):.2f} / "
                             f"{np.percentile(search, 99):.2f} ms | {p50:.1f} ms | {p99:.1f} ms | "
                             f"{ours50 / p50:.2f} / {ours99 / p99:.2f} |")
    return lines


def default_row(label: str, clients: int, cell: dict) -> str:
    """The default index's row (PCA 128 + DBA): its search runs in another space, so no ratio to the peers."""
    ours50, ours99 = with_embedding(cell["decode_embed"], cell["search"])
    http = np.asarray(cell["latencies"])
    return (f"| {label} | {clients} | lookalike, default index (PCA 128 + DBA; other vectors, recall not comparable; "
            f"HTTP p50 {np.percentile(http, 50):.1f} / p99 {np.percentile(http, 99):.1f} ms) | "
            f"{np.percentile(cell['search'], 50):.2f} / {np.percentile(cell['search'], 99):.2f} ms | {ours50:.1f} ms | "
            f"{ours99:.1f} ms | - |")


if __name__ == "__main__":
    main()
