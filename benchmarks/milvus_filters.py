"""Filters where the vectors are: a Milvus search narrowed by labels or a path prefix as a scalar expression on the
fields the collection keeps beside each vector (lookalike/backends/milvus_filter.py), against the same search
unfiltered and against the ids the store passed before (an `id in [...]` expression), in Milvus Lite and in a real
Milvus server (the PyPI `milvus` 2.3.5 standalone server, started by the tests' fixture code on loopback).

Run: flock /tmp/lookalike-bench.lock python -m benchmarks.milvus_filters [100000 1000000]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks import collect
from benchmarks.milvus_server import DIMENSION, K, recall, unit_vectors, wait_for_the_index
from lookalike.backends import milvus
from lookalike.backends.faiss_flat import FlatBackend
from lookalike.backends.filters import Described, Filter
from lookalike.backends.milvus import MilvusBackend

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from clusters import MilvusServer  # noqa: E402  (the suite's own server fixture code)

QUERIES = 20
GROUPS = 100  # label `group` g00..g99: one value allows 1% of the images, ten values 10%
FOLDERS = 10  # /photos/d0../d9: one folder is 10%


def described(ids: Sequence[int]) -> list[Described]:
    return [Described(f"/photos/d{i % FOLDERS}/{i}.jpg", {"group": f"g{i % GROUPS:02d}"}) for i in ids]


FILTERS = {  # name -> (the Filter, the ids it allows out of 1..count)
    "label, 1%": (Filter({"group": ("g07",)}), lambda ids: ids[ids % GROUPS == 7]),
    "label, 10%": (Filter({"group": tuple(f"g{g:02d}" for g in range(0, GROUPS, 10))}),
                   lambda ids: ids[ids % 10 == 0]),
    "path prefix, 10%": (Filter(path_prefix="/photos/d3/"), lambda ids: ids[ids % FOLDERS == 3]),
}


def timed(backend, queries: np.ndarray, allowed) -> tuple[np.ndarray, float, float]:
    found, seconds = [], []
    for query in queries:
        started = time.perf_counter()
        found.append(backend.search(query[None], K, allowed)[1][0])
        seconds.append(time.perf_counter() - started)
    return np.asarray(found), float(np.percentile(seconds, 50) * 1e3), float(np.percentile(seconds, 99) * 1e3)


def build(store: str, ids: np.ndarray, vectors: np.ndarray) -> tuple[MilvusBackend, float]:
    started = time.perf_counter()
    backend = MilvusBackend(DIMENSION, store, owner="bench")
    backend.describe = described
    backend.add(ids, vectors)
    backend._call("flush", backend.collection)
    if not backend.location.lite:
        wait_for_the_index(backend, len(ids))
    backend._call("load_collection", backend.collection)
    assert backend._count_rows(milvus.WRITE_SECONDS) == len(ids)
    return backend, time.perf_counter() - started


def measure(count: int, folder: Path, server: MilvusServer) -> list[str]:
    vectors, ids = unit_vectors(count, seed=count), np.arange(1, count + 1, dtype=np.int64)
    queries = unit_vectors(QUERIES, seed=7)
    exact = FlatBackend(DIMENSION)
    exact.add(ids, vectors)
    rows = []
    for name, store in (("Milvus Lite FLAT", f"{folder}/lite.db/f{count}"),
                        ("Milvus server FLAT", server.store(f"f{count}"))):
        backend, built = build(store, ids, vectors)
        asks = [("none", None, None)]
        for filter_name, (narrowed, allows) in FILTERS.items():  # as the store chooses: inside, else the ids
            inside = backend.can_filter(narrowed)
            how = "inside (expression)" if inside else "ids (`id in [...]`)"
            asks.append((f"{filter_name}: {how}", narrowed if inside else allows(ids), allows(ids)))
        if not backend.location.lite:  # the way every filter went before
            tenth = FILTERS["label, 10%"][1](ids)
            asks.append(("label, 10%: ids (`id in [...]`)", tenth, tenth))
        for filter_name, allowed, allowed_ids in asks:
            found, p50, p99 = timed(backend, queries, allowed)
            truth = exact.search(queries, K, allowed_ids)[1]
            rows.append(f"| {count:,} | {name} | {built:.0f} | {filter_name} | {recall(found, truth):.3f} | "
                        f"{p50:.0f} / {p99:.0f} |")
            print(rows[-1], flush=True)
        if backend.location.lite:
            milvus._clients.pop(backend.location.uri, None)  # one Lite file open at a time
            backend.client.close()
        else:
            backend._call("drop_collection", backend.collection)
    return rows


def main(counts: list[int]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="milvus-filters-"))
    server = MilvusServer(shutil.which("milvus-server", path=str(Path(sys.executable).parent)), folder / "server")
    server.start()
    rows: list[str] = []
    try:
        for count in counts:  # the section is written after each size: a smaller one stands if a larger one fails
            rows += measure(count, folder, server)
            write(rows)
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def write(rows: list[str]) -> None:
    collect.write_section("milvus-filters", "\n".join([
        "## Filters where the vectors are: Milvus (`benchmarks/milvus_filters.py`)", "",
        collect.machine_line(), "",
        f"{DIMENSION}-d unit vectors in 1,000 clusters, {QUERIES} queries one at a time, k={K}, FLAT (exact) "
        "collections whose rows keep the image's path (hex) and labels (JSON) beside the vector, as every lookalike "
        "Milvus collection now does. Each filter goes the way the store sends it: inside Milvus as a scalar "
        "expression (`labels[\"group\"] == \"g07\"`, `path_hex like \"...%\"`) where the backend's can_filter "
        "says so, else as the allowed ids (`id in [...]`, how every filter went before; Milvus Lite keeps labels "
        "on this path: its JSON filter took 3.5 s at 100k rows against 0.24 s for the ids). "
        "Recall@10 against FAISS's exact answer under the same filter. Build: insert, flush, index, load.", "",
        "| vectors | store | build s | filter | recall@10 | p50 / p99 ms |", "|---|---|---|---|---|---|",
        *rows, "",
        "Milvus Lite and the server share the machine's 2 cores with everything else; the server's Strong "
        "consistency puts a floor of about 200 ms under every search (its time tick), filtered or not. What the rows "
        "say (2026-12-06): on the server a path prefix inside costs what an unfiltered search does at 1M; a label "
        "inside costs more, 1.9x for one value and 5.8x for ten values joined by `or` (each clause reads the JSON "
        "field of every row): slower than sending the 100k ids of that 10% (672 ms, though the store's SQLite "
        "lookup of those ids, not timed here, comes on top). One `array_contains_any` over an ARRAY field of "
        "name=value strings was 20% faster than one JSON comparison in a probe at 100k, and takes every value in "
        "one clause: the next step. On Milvus Lite the labels go as ids (its JSON filter: 3.5 s at 100k), the "
        "path prefix inside (2.3x faster than unfiltered at 1M).",
    ]))


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100_000, 1_000_000])
