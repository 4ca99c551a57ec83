"""Scale on one machine: exact, HNSW and IVF-PQ (+ float16 re-ranking) at 100k and 1M image vectors.

Vectors come from benchmarks/synthetic.py (a Gaussian mixture fitted to real embeddings of the
shared datasets; never uniform random). Backends are built directly from the memory-mapped vector
file in shards (not through SQLite: that would store 5 GB of float32 blobs first). Queries are
held-out vectors from the same generator; the truth is exact search in the same run.

    flock /tmp/lookalike-bench.lock /work/main/.venv/bin/python -m benchmarks.scale
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import faiss
import numpy as np

from benchmarks import collect
from benchmarks.synthetic import OUT, synthetic_vectors
from lookalike.backends import load_backend, new_backend
from lookalike.embedders import get_embedder
from lookalike.images import load_image
from lookalike.index.autoselect import plan_index
from lookalike.index.tune import UnreachableRecallError, recall_at_k, tune_backend
from lookalike.settings import datasets_dir

POOL = 1_000_000  # generated vectors; the last HELD_OUT are queries, never indexed
HELD_OUT = 1_000  # queries: the first TUNE_QUERIES set the parameters, the others measure them
TUNE_QUERIES = 500
LATENCY_QUERIES = 300
SHARD = 50_000
K = 10


LOAD_AT_START = os.getloadavg()[0]


def rss() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("RssAnon", "RssFile")):
            name, value = line.split(":")
            fields[name] = int(value.split()[0]) * 1024
    return fields


def build(kind: str, params: dict, base: np.ndarray, size: int):
    backend = new_backend(kind, base.shape[1], params)
    started = time.perf_counter()
    for start in range(0, size, SHARD):
        stop = min(size, start + SHARD)
        backend.add(np.arange(start, stop, dtype=np.int64), np.asarray(base[start:stop]))
    if kind in ("ivfpq", "hnsw-reduced") and not backend.trained:
        backend.train()
    return backend, time.perf_counter() - started


def saved_and_reloaded(backend, kind: str, params: dict, size: int, dimension: int):
    """Save, drop, load back (the mapped, searchable form); RAM is what loading added."""
    folder = OUT / f"scale-{kind}-{size}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    backend.save(folder, 1)
    del backend
    before = rss()
    loaded = load_backend(kind, dimension, folder, 1, params)
    after = rss()
    disk = sum(f.stat().st_size for f in folder.iterdir())
    return loaded, after["RssAnon"] - before["RssAnon"], disk, folder


def latencies(backend, queries: np.ndarray) -> tuple[float, float, float]:
    """Single-query p50 and p99 (ms) and batched queries per second."""
    times = []
    for query in queries[TUNE_QUERIES:TUNE_QUERIES + LATENCY_QUERIES]:
        started = time.perf_counter()
        backend.search(query[None], K)
        times.append((time.perf_counter() - started) * 1e3)
    started = time.perf_counter()
    backend.search(queries, K)
    qps = len(queries) / (time.perf_counter() - started)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99)), qps


def measure(kind: str, size: int, base: np.ndarray, queries: np.ndarray, truth: np.ndarray | None,
            overrides: dict | None = None) -> dict:
    params = plan_index(kind, size, base.shape[1]).params | (overrides or {})
    print(f"building {kind} over {size} vectors with {params}", flush=True)
    before = rss()["RssAnon"]
    backend, build_s = build(kind, params, base, size)
    if kind == "flat-ip":  # the reference is not saved (5 GB at 1M): RAM is what building added
        ram, disk, folder = rss()["RssAnon"] - before, 0, OUT / "none"
    else:
        backend, ram, disk, folder = saved_and_reloaded(backend, kind, params, size, base.shape[1])
    row = {"type": kind, "size": size, "params": params, "build_s": build_s, "ram": ram, "disk": disk}
    if truth is None:  # the exact reference: its own results are the truth
        truth = backend.search(queries, K)[1]
        row["truth"] = truth
    else:
        try:
            report = tune_backend(backend, queries[:TUNE_QUERIES], truth[:TUNE_QUERIES], 0.95, K)
            row["tuned"], row["trials"] = report.params, report.trials
        except UnreachableRecallError as error:
            row["tuned"], row["trials"] = f"unreachable: {error}", error.report.trials
    file_before = rss()["RssFile"]
    row["p50"], row["p99"], row["qps"] = latencies(backend, queries)
    row["mapped_touched"] = rss()["RssFile"] - file_before
    row["recall"] = recall_at_k(backend.search(queries[TUNE_QUERIES:], K)[1], truth[TUNE_QUERIES:], None, K)
    row["backend"], row["folder"] = backend, folder
    return row


def end_to_end(backend, photos: list[Path]) -> dict[str, float]:
    """Decode + embed + search one uploaded photo at a time, as ImageIndex.embed_image does."""
    embedder = get_embedder()
    parts: dict[str, list[float]] = {"decode": [], "embed": [], "search": [], "total": []}
    for path in photos:
        data = path.read_bytes()
        t0 = time.perf_counter()
        tensor = embedder.preprocess(load_image(data, target_side=embedder.input_side))
        t1 = time.perf_counter()
        vector = embedder.embed_batch(tensor[None])
        t2 = time.perf_counter()
        backend.search(vector, K)
        t3 = time.perf_counter()
        for name, ms in (("decode", t1 - t0), ("embed", t2 - t1), ("search", t3 - t2), ("total", t3 - t0)):
            parts[name].append(ms * 1e3)
    return {name: float(np.percentile(values[3:], 50)) for name, values in parts.items()}  # first 3 warm up


def table(rows: list[dict]) -> list[str]:
    lines = ["| vectors | index | parameters (after tuning) | build | RAM (index) | disk | p50 | p99 | batched q/s "
             "| recall@10 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        used = row.get("tuned") if isinstance(row.get("tuned"), dict) else (  # unreachable: the best trial's
            max(row["trials"], key=lambda t: t.recall).params if row.get("trials") else {})
        params = {**row["params"], **used}
        shown = ", ".join(f"{k}={v}" for k, v in params.items() if k in ("M", "ef_construction", "ef_search", "nlist",
                                                                           "pq_bytes", "reduced_dimension", "nprobe",
                                                                           "rerank"))
        disk = f"{row['disk'] / 2**20:.0f} MiB" if row["disk"] else "not saved"
        lines.append(f"| {row['size']:,} | {row['type']} | {shown or '-'} | {row['build_s']:.0f} s | "
                     f"{row['ram'] / 2**20:.0f} MiB | {disk} | {row['p50']:.2f} ms | "
                     f"{row['p99']:.2f} ms | {row['qps']:.0f} | {row['recall']:.3f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sizes", nargs="*", type=int, default=[100_000, POOL - HELD_OUT])
    parser.add_argument("--types", default="hnsw,ivfpq", help="approximate types to measure (exact always is)")
    parser.add_argument("--ivfpq-params", default="{}", help="JSON overriding the planned IVF-PQ parameters")
    parser.add_argument("--hnsw-reduced-params", default="{}", help="JSON overriding the planned hnsw-reduced ones")
    parser.add_argument("--append", help="append the results under this title to the existing section")
    args = parser.parse_args(argv)
    overrides = {"ivfpq": json.loads(args.ivfpq_params), "hnsw-reduced": json.loads(args.hnsw_reduced_params)}
    pool = synthetic_vectors(POOL)
    queries = np.ascontiguousarray(pool[POOL - HELD_OUT:POOL])
    sizes = args.sizes
    rows, notes = [], []
    kinds = args.types.split(",")
    searched_by_photo = next((kind for kind in ("ivfpq", "hnsw-reduced") if kind in kinds), None)  # auto's choice first
    last = None  # the row of that index at the largest size: uploaded photos search it
    for size in sizes:
        exact = measure("flat-ip", size, pool, queries, None)
        truth = exact.pop("truth")
        rows.append(exact)
        exact.pop("backend")
        for kind in kinds:
            if kind == "hnsw" and size > 200_000:
                notes.append(f"HNSW at {size:,} was not measured: its flat storage alone needs "
                             f"{size * pool.shape[1] * 4 / 2**30:.1f} GiB (over the 1.5 GB target) and building it "
                             "would take well over 10 minutes on these 2 shared cores.")
                continue
            row = measure(kind, size, pool, queries, truth, overrides.get(kind, {}))
            rows.append(row)
            if kind == searched_by_photo:
                last = row
            sweep = ", ".join(f"{t.params} -> {t.recall:.3f} ({t.ms_per_query:.2f} ms/q batched)"
                              for t in row["trials"])
            notes.append(f"Tuning {kind} at {size:,} (target recall@10 0.95, {TUNE_QUERIES} held-out queries): "
                         f"{sweep}" + ("" if isinstance(row["tuned"], dict) else f". {row['tuned']}"))
            print("\n".join(table([row])), flush=True)
            if row is not last or size != sizes[-1]:
                row.pop("backend")
                shutil.rmtree(row["folder"], ignore_errors=True)
        if not args.append:
            write(rows, notes, None, sizes[:sizes.index(size) + 1])  # partial results survive a later failure
    photos = sorted((datasets_dir() / "corel1k" / "queries").rglob("*.jpg"))[:33]
    e2e = end_to_end(last["backend"], photos) | {"type": last["type"]} if last else None
    if args.append:
        previous = (collect.SECTIONS / "scale.md").read_text().rstrip()
        lines = [previous, "", f"### {args.append}", "", collect.machine_line(), "", *table(rows), "",
                 *summary(rows, notes, e2e, sizes)]
        print("\n".join(lines))
        collect.write_section("scale", "\n".join(lines))
    else:
        write(rows, notes, e2e, sizes)


def write(rows: list[dict], notes: list[str], e2e: dict | None, sizes: list[int]) -> None:
    lines = ["## Scale: approximate indexes on one machine", "", collect.machine_line(), "",
             f"Written by `benchmarks/scale.py`; load average when the run started: {LOAD_AT_START:.1f} on 2 cores. "
             "Vectors: 1,280-d, synthetic "
             "from a Gaussian mixture (32 components on the top 64 principal components, real variances on the "
             "other 1,216) fitted to real EfficientNet-Lite0 embeddings of clothing + Corel-1K (4,781 photos), "
             "normalised; the \"1M\" index holds 999,000 of them and 1,000 further held-out vectors are the queries "
             f"(the first {TUNE_QUERIES} set the parameters, latency and recall are measured on the other "
             f"{HELD_OUT - TUNE_QUERIES}). "
             "Indexes are built straight from the memory-mapped vector file in 50k shards (not through SQLite). "
             "RAM (index) is the anonymous memory that loading the saved index adds; IVF-PQ's float16 re-rank "
             "vectors are memory-mapped (counted in disk, not RAM). Recall@10 is against exact search in the same "
             f"run; parameters were set by `tune_backend` (target 0.95). FAISS {faiss.__version__}.", ""]
    lines += table(rows)
    lines.append("")
    lines += summary(rows, notes, e2e, sizes)
    lines += ["- 10M vectors: see \"Scale: ten million vectors, streamed\" (`benchmarks/scale_streamed.py`; 10M x "
              "1,280 float32 would be 51 GB, so those vectors are streamed, never stored).",
              "- Targets at 1M: p50 <= 2 ms at recall@10 >= 0.95, index RAM <= 1.5 GB, build <= 10 min; "
              "compare with the table above (misses are reported as measured)."]
    print("\n".join(lines))
    collect.write_section("scale", "\n".join(lines))


def summary(rows: list[dict], notes: list[str], e2e: dict | None, sizes: list[int]) -> list[str]:
    exact = {r["size"]: r for r in rows if r["type"] == "flat-ip"}
    lines = []
    for size in sizes:
        for row in rows:
            if row["size"] == size and row["type"] != "flat-ip":
                lines.append(f"- {size:,} vectors, {row['type']}: {exact[size]['p50'] / row['p50']:.0f}x faster than "
                             f"exact search (p50 {exact[size]['p50']:.1f} ms) measured in the same run; re-rank file "
                             f"pages touched by the queries: {row['mapped_touched'] / 2**20:.0f} MiB.")
    if e2e:
        lines.append(f"- Search by an uploaded photo (Corel-1K query JPEGs, decode + embed + search on the "
                     f"{sizes[-1]:,}-vector {e2e['type']} index), p50: decode {e2e['decode']:.1f} ms, embed "
                     f"{e2e['embed']:.1f} ms, search {e2e['search']:.1f} ms, total {e2e['total']:.1f} ms "
                     "(target <= 40 ms).")
    lines += [f"- {note}" for note in notes]
    return lines


if __name__ == "__main__":
    main()
