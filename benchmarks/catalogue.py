"""The catalogue in SQLite (the index folder's images.sqlite) beside PostgreSQL on loopback (issue 28): what each
costs to ingest and to search, side by side in one run on one machine.

- Ingest: COUNT stored vectors (1,280-d, an efficientnet-lite0 index's full vectors, 5 KB a row, with capture data)
  written through VectorStore.add in batches of 256 (sync.COMMIT_EVERY), one commit per batch, no embedding; then one
  label per image, set 256 images at a time (set_labels, as a labels.csv import does), a commit each. Rows per second;
  the vector backend (FAISS flat) is the same.
- Search: an index of COUNT labelled images (the color-histogram model's 256-d vectors, pca 0, dba 0), searched by
  stored vectors one at a time with `ImageIndex.search(vector=q, k=10)`, defaults and expand="none" (the whole call,
  which reads the catalogue's generation, the 10 matches' records and labels, and for the default expansion their
  vectors), p50 / p99 ms; and the catalogue's part alone: records_of + labels_of of the 10 matches.

PostgreSQL is Debian's 15, started by the tests' fixture code (tests/postgres_server.py) with its default
durability (fsync, synchronous_commit on); SQLite runs as lookalike opens it (WAL, synchronous=NORMAL: a commit is
not fsynced, a power cut may lose the last commits but never half of one).

    flock /tmp/bench.lock .venv/bin/python -m benchmarks.catalogue [COUNT]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import collect
from lookalike.capture import Capture
from lookalike.index import ImageIndex, NewImage
from lookalike.index.store import VectorStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from postgres_server import PostgresServer, postgres_bin  # noqa: E402  (the suite's own server fixture code)

BATCH = 256
QUERIES = 300
ROUNDS = 3  # ingest rounds per catalogue (the median is reported)
K = 10
FULL_DIMENSION = 1280


def unit_rows(count: int, dimension: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def images(folder: Path, start: int, count: int) -> list[NewImage]:
    capture = Capture("2024-05-01T12:00:00", "exif", "Canon", "Canon EOS R5", 48.85, 2.35)
    return [NewImage(str(folder / "photos" / f"{i:07d}.jpg"), f"{i:064x}", 250_000 + i, 1.7e9 + i, 4000, 3000, capture)
            for i in range(start, start + count)]


def ingest(folder: Path, catalog: str | None, count: int) -> tuple[float, float]:
    """Rows per second stored (add + commit per batch), then labelled (one label each, a commit per batch)."""
    folder.mkdir(parents=True)
    store = VectorStore(folder, FULL_DIMENSION, "flat-ip", catalog=catalog)
    vectors = unit_rows(count, FULL_DIMENSION, 0)
    started = time.perf_counter()
    ids: list[int] = []
    for start in range(0, count, BATCH):
        ids += store.add(images(folder, start, min(BATCH, count - start)), vectors[start:start + BATCH])
        store.commit()
    added = count / (time.perf_counter() - started)
    started = time.perf_counter()
    for start in range(0, count, BATCH):  # as ImageIndex.set_labels and a labels.csv import write them
        store.set_labels({image_id: {"label": f"class-{image_id % 50}"} for image_id in ids[start:start + BATCH]})
        store.commit()
    labelled = count / (time.perf_counter() - started)
    assert len(store) == count
    store.close()
    return added, labelled


def search_index(folder: Path, catalog: str | None, count: int) -> ImageIndex:
    index = ImageIndex.create(folder, model="color-histogram", pca=0, dba=0, catalog=catalog)
    store = index._store
    vectors = unit_rows(count, index.embedder.dimension, 1)
    for start in range(0, count, BATCH):
        ids = store.add(images(folder, start, min(BATCH, count - start)), vectors[start:start + BATCH])
        store.set_labels({image_id: {"label": f"class-{image_id % 50}", "source": "benchmark"} for image_id in ids})
        store.commit()
    store.save()
    return index


def percentiles(times: list[float]) -> str:
    return f"{np.percentile(times, 50):.2f} / {np.percentile(times, 99):.2f}"


def searches(index: ImageIndex) -> dict[str, str]:
    """p50 / p99 ms of the whole call (defaults, expand none) and of the catalogue's reads for its matches."""
    ids, vectors = index.vectors()
    picked = np.random.default_rng(2).choice(len(ids), QUERIES, replace=False)
    timed: dict[str, list[float]] = {"default": [], "none": [], "reads": []}
    for _ in range(20):  # warm
        index.search(vector=vectors[picked[0]], k=K)
    for row in picked:
        for name, options in (("default", {}), ("none", {"expand": "none"})):
            started = time.perf_counter()
            result = index.search(vector=vectors[row], k=K, **options)
            timed[name].append((time.perf_counter() - started) * 1e3)
        matched = [m.id for m in result.matches]
        assert len(matched) == K and all(m.labels for m in result.matches)
        started = time.perf_counter()
        index._store.records_of(matched)
        index._store.labels_of(matched)
        timed["reads"].append((time.perf_counter() - started) * 1e3)
    return {name: percentiles(times) for name, times in timed.items()}


def spread(runs: list[tuple[float, float]], column: int) -> str:
    """The median rate of the rounds, and their lowest and highest."""
    rates = [run[column] for run in runs]
    return f"{np.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"


def main(count: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="catalogue-bench-"))
    server = PostgresServer(postgres_bin())
    server.start()
    load_before = os.getloadavg()
    names = {"SQLite (images.sqlite)": False, "PostgreSQL 15, loopback": True}
    ingested: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    timed: dict[str, dict[str, str]] = {}
    try:
        for round_number in range(ROUNDS):  # the two catalogues in turn, so that the machine's moods hit both
            for name, postgres in names.items():
                folder = work / f"ingest-{round_number}-{postgres}"
                ingested[name].append(ingest(folder, server.new_database() if postgres else None, count))
                print(name, ingested[name][-1], flush=True)
        for name, postgres in names.items():
            with search_index(work / f"search-{postgres}", server.new_database() if postgres else None,
                              count) as index:
                timed[name] = searches(index)
            print(name, timed[name], flush=True)
    finally:
        server.remove()
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    rates = {name: [float(np.median([run[column] for run in runs])) for column in (0, 1)]
             for name, runs in ingested.items()}
    (sqlite_added, sqlite_labelled), (pg_added, pg_labelled) = rates.values()
    table = [f"| {name} | {spread(ingested[name], 0)} | {spread(ingested[name], 1)} | {timed[name]['default']} | "
             f"{timed[name]['none']} | {timed[name]['reads']} |" for name in names]
    collect.write_section("catalogue", "\n".join([
        "## The catalogue in SQLite or PostgreSQL (`benchmarks/catalogue.py`)", "",
        collect.machine_line(),
        f"Load average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f} (the machine is shared).", "",
        f"{count:,} images. Ingest: stored vectors ({FULL_DIMENSION}-d full vectors, 5 KB a row, with capture data) "
        f"through VectorStore.add in batches of {BATCH}, a commit per batch, no embedding; labelling: one label per "
        f"image, set {BATCH} images at a time, a commit each. Search: an index of {count:,} labelled images "
        f"(256-d color-histogram vectors, exact search, pca 0, dba 0), {QUERIES} stored vectors searched one at a "
        f"time, k={K}; 'catalogue reads' is records_of + labels_of of the 10 matches alone. PostgreSQL is Debian's "
        "15 on loopback with its default durability (every commit fsynced); SQLite is opened as lookalike opens it "
        "(WAL, synchronous=NORMAL).", "",
        f"| catalogue | ingest rows/s (median of {ROUNDS}, range) | labels rows/s (same) | search ms p50 / p99 "
        "(defaults) | search ms p50 / p99 (expand none) | catalogue reads ms p50 / p99 |",
        "|---|---:|---:|---:|---:|---:|",
        *table, "",
        f"PostgreSQL ingests at {pg_added / sqlite_added:.2f}x SQLite's median rate and labels at "
        f"{pg_labelled / sqlite_labelled:.2f}x. Each statement to PostgreSQL is a round trip over loopback, where "
        "SQLite's is a call into the process; a batch of inserts or labels is sent as one pipeline (executemany, "
        "with RETURNING for the new ids), so a batch costs about one round trip and the server's work. A search "
        "reads the generation (one query), the matches' records and labels (one query each) and, with the default "
        "expansion, their vectors and augmented rows: a few round trips a search, each far dearer than a call into "
        "SQLite. What PostgreSQL buys is not speed on one machine: several machines can search and write one "
        "catalogue (writers take turns through an advisory lock), which SQLite in a folder cannot do. Not measured "
        "here: PostgreSQL on another machine (a real network adds its round-trip time to every statement), and many "
        "concurrent writers.",
    ]))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
