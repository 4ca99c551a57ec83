"""Ten million image vectors on one machine, never all in RAM: IVF-PQ fast-scan built from a stream.

10M x 1,280 float32 would be 51 GB, so the vectors are never stored as such: each 50k shard is drawn
from the generator of benchmarks/synthetic.py (a Gaussian mixture fitted to real embeddings), folded
into the exact top-10 of 1,000 held-out queries (the truth, computed in the same run) and added to
the backend chosen by `plan_index(..., max_memory="3G")`, whose float16 re-rank rows spill to disk.
Reports build time, peak RSS while building, RAM of the loaded index, disk, tuned parameters,
latency, batched throughput, recall@10 and search by an uploaded photo.

    flock /tmp/lookalike-bench.lock /work/main/.venv/bin/python -m benchmarks.scale_streamed 10000000
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
from tqdm import tqdm

from benchmarks import collect
from benchmarks.scale import HELD_OUT, LOAD_AT_START, SHARD, TUNE_QUERIES, K, end_to_end, latencies, rss, table
from benchmarks.synthetic import OUT, Generator, real_embeddings
from lookalike.backends import load_backend, new_backend
from lookalike.index.autoselect import plan_index
from lookalike.index.tune import UnreachableRecallError, recall_at_k, tune_backend
from lookalike.settings import datasets_dir

BUDGET = "3G"
TARGET_RECALL = 0.90  # the target at 10M (the 1M runs tune to 0.95)


class RunningTopK:
    """Exact top-k of fixed queries over vectors seen one shard at a time."""

    def __init__(self, queries: np.ndarray, k: int):
        self.queries, self.k = queries, k
        self.scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        self.ids = np.full((len(queries), k), -1, dtype=np.int64)

    def update(self, first_id: int, shard: np.ndarray) -> None:
        scores, rows = faiss.knn(self.queries, shard, self.k, faiss.METRIC_INNER_PRODUCT)
        both_scores = np.hstack([self.scores, scores])
        both_ids = np.hstack([self.ids, rows + first_id])
        order = np.argsort(-both_scores, axis=1)[:, :self.k]
        self.scores = np.take_along_axis(both_scores, order, axis=1)
        self.ids = np.take_along_axis(both_ids, order, axis=1)


def build(size: int, generator: Generator, queries: np.ndarray, seed: int):
    plan = plan_index("auto", size, queries.shape[1], max_memory=BUDGET)
    print(plan.explain(), flush=True)
    backend = new_backend(plan.index_type, queries.shape[1], plan.params)
    truth = RunningTopK(queries, K)
    rng = np.random.default_rng(seed)
    spent = {"generate": 0.0, "truth": 0.0, "index": 0.0, "peak_anon": 0.0}
    for start in tqdm(range(0, size, SHARD), desc=f"streaming {size:,} vectors", unit="shard"):
        t0 = time.perf_counter()
        shard = generator.sample(min(SHARD, size - start), rng)
        t1 = time.perf_counter()
        truth.update(start, shard)
        t2 = time.perf_counter()
        backend.add(np.arange(start, start + len(shard), dtype=np.int64), shard)
        spent["generate"], spent["truth"] = spent["generate"] + t1 - t0, spent["truth"] + t2 - t1
        spent["index"] += time.perf_counter() - t2
        spent["peak_anon"] = max(spent["peak_anon"], rss()["RssAnon"])
    if not backend.trained:
        t0 = time.perf_counter()
        backend.train()
        spent["index"] += time.perf_counter() - t0
    return plan, backend, truth.ids, spent


def truth_only(size: int, generator: Generator, queries: np.ndarray, seed: int) -> np.ndarray:
    """The same stream again (same seeds, same vectors), folded into the truth only."""
    truth = RunningTopK(queries, K)
    rng = np.random.default_rng(seed)
    for start in tqdm(range(0, size, SHARD), desc=f"re-streaming {size:,} vectors for the truth", unit="shard"):
        truth.update(start, generator.sample(min(SHARD, size - start), rng))
    return truth.ids


def ram_of_loaded_index(kind: str, dimension: int, folder, params: dict) -> tuple[int, float]:
    """Anonymous memory that loading the saved index adds, and the load time, in a fresh process."""
    code = ("import json, time, sys; from pathlib import Path; from benchmarks.scale import rss; "
            "from lookalike.backends import load_backend; before = rss()['RssAnon']; t0 = time.perf_counter(); "
            f"b = load_backend({kind!r}, {dimension}, Path({str(folder)!r}), 1, {params!r}); "
            "print(json.dumps([rss()['RssAnon'] - before, time.perf_counter() - t0]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parent.parent)
    ram, seconds = json.loads(done.stdout.strip().splitlines()[-1])
    return int(ram), float(seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("size", nargs="?", type=int, default=10_000_000)
    parser.add_argument("--target-recall", type=float, default=TARGET_RECALL)
    args = parser.parse_args(argv)
    real = real_embeddings()
    generator = Generator(real, seed=0)
    queries = generator.sample(HELD_OUT, np.random.default_rng(1_000_003))
    folder = OUT / f"scale-streamed-{args.size}"
    record, truth_path = folder / "build.json", folder / "truth.npy"
    plan = plan_index("auto", args.size, queries.shape[1], max_memory=BUDGET)
    if record.exists():  # built before: reuse the saved index (the build is 20 minutes of streaming)
        spent = json.loads(record.read_text())
        truth = np.load(truth_path) if truth_path.exists() else truth_only(args.size, generator, queries, 1_000_004)
    else:
        plan, backend, truth, spent = build(args.size, generator, queries, seed=1_000_004)
        spent["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        t0 = time.perf_counter()
        backend.save(folder, 1)
        spent["save"] = time.perf_counter() - t0
        del backend
        record.write_text(json.dumps(spent))
    np.save(truth_path, truth)
    gc.collect()
    ram, load_s = ram_of_loaded_index(plan.index_type, queries.shape[1], folder, plan.params)
    backend = load_backend(plan.index_type, queries.shape[1], folder, 1, plan.params)
    disk = sum(f.stat().st_size for f in folder.iterdir() if f.name.startswith(("ivfpq-", "rerank-")))
    row = {"type": plan.index_type, "size": args.size, "params": plan.params, "build_s": spent["index"], "ram": ram,
           "disk": disk}
    try:
        report = tune_backend(backend, queries[:TUNE_QUERIES], truth[:TUNE_QUERIES], args.target_recall, K)
        row["tuned"], row["trials"] = report.params, report.trials
    except UnreachableRecallError as error:
        row["tuned"], row["trials"] = f"unreachable: {error}", error.report.trials
    file_before = rss()["RssFile"]
    row["p50"], row["p99"], row["qps"] = latencies(backend, queries)
    touched = rss()["RssFile"] - file_before
    searching = rss()["RssAnon"]
    row["recall"] = recall_at_k(backend.search(queries[TUNE_QUERIES:], K)[1], truth[TUNE_QUERIES:], None, K)
    photos = sorted((datasets_dir() / "corel1k" / "queries").rglob("*.jpg"))[:33]
    e2e = end_to_end(backend, photos)
    sweep = ", ".join(f"{t.params} -> {t.recall:.3f} ({t.ms_per_query:.2f} ms/q batched)" for t in row["trials"])
    exact_ms = spent["truth"] / len(queries) * 1e3
    lines = ["## Scale: ten million vectors, streamed", "", collect.machine_line(), "",
             f"Written by `benchmarks/scale_streamed.py`; load average when the run started: {LOAD_AT_START:.1f} on "
             f"2 cores. {args.size:,} vectors drawn shard by shard from the same generator as the 1M run (never "
             "stored as float32: that would be "
             f"{args.size * queries.shape[1] * 4 / 1e9:.0f} GB), added to the backend that `plan_index` picks for a "
             f"{BUDGET} budget, and folded into the exact top-10 of {HELD_OUT:,} held-out queries (the truth; the "
             f"first {TUNE_QUERIES} tune, the other {HELD_OUT - TUNE_QUERIES} measure). FAISS {faiss.__version__}.", "",
             "The plan, as `lookalike index --index-type auto --max-memory 3G` explains it:", "",
             *[f"    {line}" for line in plan.explain().splitlines()], "", *table([row]), "",
             f"- Build: {spent['index']:.0f} s in the index (training, encoding, float16 rows spilled to disk), "
             f"plus {spent['generate']:.0f} s generating the vectors and {spent['truth']:.0f} s of exact search for "
             "the truth." + (f" {spent['note']}" if spent.get("note") else ""),
             "- Memory while building (the generator, the truth and the index together): "
             + (f"peak anonymous memory sampled after every shard {spent['peak_anon'] / 2**30:.2f} GiB; "
                if spent.get("peak_anon") else "")
             + f"peak resident set (ru_maxrss, which also counts touched pages of the memory-mapped files) "
             f"{spent['peak_rss'] / 2**30:.2f} GiB. RAM of the loaded index, measured in a fresh process (anonymous "
             f"memory added by loading it): {ram / 2**30:.2f} GiB; this process after the searches: "
             f"{searching / 2**30:.2f} GiB anonymous memory (index, generator, truth and torch, which the re-rank "
             f"uses). Saving took {spent['save']:.0f} s and loading {load_s:.0f} s (both checksum the files).",
             f"- Disk: {disk / 2**30:.1f} GiB, nearly all of it the float16 re-rank rows, memory-mapped; the "
             f"queries touched {touched / 2**20:.0f} MiB of them (page cache, not counted as index RAM).",
             f"- Exact search for reference: the truth computation scanned all {args.size:,} vectors for "
             f"{HELD_OUT:,} queries in batches, {exact_ms:.0f} ms per query batched; a flat index would need "
             f"{args.size * queries.shape[1] * 4 / 2**30:.0f} GiB of RAM, so single-query exact latency was not "
             "measured.",
             f"- Search by an uploaded photo (Corel-1K query JPEGs, decode + embed + search), p50: decode "
             f"{e2e['decode']:.1f} ms, embed {e2e['embed']:.1f} ms, search {e2e['search']:.1f} ms, total "
             f"{e2e['total']:.1f} ms.",
             f"- Tuning (target recall@10 {args.target_recall} on {TUNE_QUERIES} queries): {sweep}"
             + ("" if isinstance(row["tuned"], dict) else f". {row['tuned']}"),
             "- Targets at 10M: index RAM <= 3 GB, recall@10 >= 0.90 after re-ranking, p50 <= 20 ms."]
    print("\n".join(lines))
    collect.write_section("scale-streamed", "\n".join(lines))
    collect.write_results()


if __name__ == "__main__":
    main()
