"""The 100M-image capacity plan, redone from what ran here on real servers and nodes (issue 28): the Ray node runs
(benchmarks/ray_nodes.py), the Milvus server figures (benchmarks/milvus_server.py, milvus_filters.py) and the
serving processes (benchmarks/multiserve.py). Arithmetic only: the inputs are the measured figures below, each
named with its RESULTS.md section; update them when those sections are measured again, then run

    python -m benchmarks.capacity_plan
"""

from __future__ import annotations

import math

from benchmarks import collect

IMAGES = 100_000_000
SECONDS_PER_DAY = 86_400
HEADROOM = 1.25  # start-up, stragglers, retries, peaks
GIB = 1024**3

# 'Ray on separate nodes': images/s of the 2-node run (1 CPU per node) on the 2 shared cores.
RAY_TWO_NODE_RATE = 120.3
RAY_CORES = 2
# 'Stores: FAISS, Milvus Lite and a Milvus server': 1M 128-d, single query, on the 2 shared cores.
FAISS_FLAT_1M_MS = 133.0
MILVUS_IVF_1M_MS, MILVUS_IVF_RECALL = 355.0, 0.942
ID_FILTER_10PCT_1M_MS = (1100.0, 1800.0)  # the allowed ids of 10% sent as id-in
# 'Filters where the vectors are': the Milvus server at 1M, p50 ms.
UNFILTERED_1M_MS, PREFIX_INSIDE_1M_MS, LABEL_INSIDE_1M_MS = 202.0, 199.0, (374.0, 1169.0)
# The same section after labels went as one array_contains_any over label_pairs: unfiltered, 1% and 10% labels, p50 ms
# with Strong and with Eventually consistency (the filter's own cost without the time tick).
PAIRS_1M_STRONG_MS, PAIRS_1M_EVENTUALLY_MS = (299.0, 285.0, 288.0), (25.0, 14.0, 27.0)
# 'The catalogue in SQLite or PostgreSQL': images ingested a second into each, on loopback.
SQLITE_ROWS_PER_SECOND, POSTGRES_ROWS_PER_SECOND = 14_297, 9_097
# 'Several serving processes over one index': search by upload, 2 processes, 16 clients, on 2 shared cores.
UPLOADS_PER_SECOND_2_CORES = 17.2
# 'Distributed ingestion (Ray) and the Milvus store': bytes per image in the SQLite catalogue (1280-d vector kept).
SQLITE_BYTES_PER_IMAGE = 5_646
DIMENSION_SEARCHED = 128  # PCA-128, what 'auto' searches at this size (README)


def machines(cores: float, per_machine: int) -> int:
    return max(1, math.ceil(cores / per_machine))


def nodes(count: int) -> str:
    return f"{count} Ray node{'s' if count > 1 else ''}"


def plan(queries_per_second: float = 100.0) -> list[str]:
    ingest_rate = IMAGES / SECONDS_PER_DAY
    ingest_cores = ingest_rate * RAY_CORES / RAY_TWO_NODE_RATE * HEADROOM
    serve_cores = queries_per_second * 2 / UPLOADS_PER_SECOND_2_CORES * HEADROOM
    raw = IMAGES * DIMENSION_SEARCHED * 4
    flat_scan_s = FAISS_FLAT_1M_MS * IMAGES / 1_000_000 / 1e3
    return [
        f"- **Ingestion in a day** ({ingest_rate:,.0f} images/s): the 2-node Ray run embedded "
        f"{RAY_TWO_NODE_RATE:.1f} images/s on {RAY_CORES} cores ({RAY_CORES / RAY_TWO_NODE_RATE * 1e3:.0f} ms of core "
        f"per image, the cores shared with the driver and other work), so {ingest_cores:,.0f} cores with "
        f"{HEADROOM - 1:.0%} headroom: **{nodes(machines(ingest_cores, 32))} of 32 cores** (or "
        f"{machines(ingest_cores, 2):,} like this one). A node is one `ray start --address`; each reads the photos it "
        "embeds, so the photos must be where every node can read them (a shared file system or object storage).",
        f"- **Vectors** ({DIMENSION_SEARCHED}-d after PCA): {raw / GIB:,.0f} GiB raw. Exact search cannot serve "
        f"100M: FAISS flat took {FAISS_FLAT_1M_MS:.0f} ms at 1M here, ~{flat_scan_s:.0f} s of scan at 100M. A Milvus "
        f"server with IVF_FLAT answered 1M in {MILVUS_IVF_1M_MS:.0f} ms at recall {MILVUS_IVF_RECALL:.3f} (its Strong "
        "consistency floor included); at 100M that is a Milvus cluster whose query nodes hold the "
        f"{raw / GIB:,.0f} GiB (IVF_FLAT; ~{raw / 4 / GIB:,.0f} GiB as IVF_SQ8): **2 query nodes of 64 GiB** "
        "(IVF_FLAT at 75% use), more for replicas or query rate; measure recall at that size before choosing.",
        f"- **Filters**: sent as ids, 10% of 1M cost {ID_FILTER_10PCT_1M_MS[0] / 1e3:.1f}-"
        f"{ID_FILTER_10PCT_1M_MS[1] / 1e3:.1f} s a search in the first measurement and 0.67 s in the second (10M "
        "ids a query at 100M: not workable). Inside the Milvus server a path prefix cost what an unfiltered search "
        f"does at 1M ({PREFIX_INSIDE_1M_MS:.0f} against {UNFILTERED_1M_MS:.0f} ms), a label "
        f"{LABEL_INSIDE_1M_MS[0] / UNFILTERED_1M_MS:.1f}x (one value) to "
        f"{LABEL_INSIDE_1M_MS[1] / UNFILTERED_1M_MS:.1f}x (ten values) as JSON comparisons; as one "
        f"`array_contains_any` over each row's label_pairs, 1% and 10% labels cost {PAIRS_1M_STRONG_MS[1]:.0f} and "
        f"{PAIRS_1M_STRONG_MS[2]:.0f} ms against {PAIRS_1M_STRONG_MS[0]:.0f} unfiltered (Strong; with Eventually "
        f"consistency {PAIRS_1M_EVENTUALLY_MS[1]:.0f} and {PAIRS_1M_EVENTUALLY_MS[2]:.0f} against "
        f"{PAIRS_1M_EVENTUALLY_MS[0]:.0f} ms) ('Filters where the vectors are'): at 100M every filter runs inside.",
        f"- **Serving** ({queries_per_second:.0f} searches by upload a second): 2 processes on 2 cores answered "
        f"{UPLOADS_PER_SECOND_2_CORES:.1f} a second (embedding dominates), so {serve_cores:,.0f} cores: "
        f"**{machines(serve_cores, 16)} machine of 16 cores** running one `lookalike serve` per core or two behind "
        "the proxy (the vector search itself is on the Milvus cluster). A second process on the same 2 cores "
        "added 5-60% for uploads and lost 16-44% for searches by id: processes scale with cores, not beyond them.",
        f"- **Catalogue**: SQLite keeps {SQLITE_BYTES_PER_IMAGE:,} bytes an image (the full vector included), "
        f"~{IMAGES * SQLITE_BYTES_PER_IMAGE / GIB:,.0f} GiB in the index folder. Serving processes share it as one "
        "folder, which is one machine (or a network file system, where SQLite's locking is not to be trusted): "
        "serving from several machines puts the catalogue in PostgreSQL (`--catalog postgresql://`), which took "
        f"{POSTGRES_ROWS_PER_SECOND:,} images a second on loopback against SQLite's {SQLITE_ROWS_PER_SECOND:,} "
        f"('The catalogue in SQLite or PostgreSQL'): the catalogue of 100M in "
        f"{IMAGES / POSTGRES_ROWS_PER_SECOND / 3600:.1f} h of one writer, far under the day the embedding takes; "
        "each machine still keeps a copy of the index folder (manifest, PCA) or shares it.",
    ]


def main() -> None:
    collect.write_section("capacity-100m", "\n".join([
        "## Capacity plan for 100M images, from the cluster runs (`benchmarks/capacity_plan.py`)", "",
        "Arithmetic on figures measured on this 2-core machine (named with their sections); what one machine cannot "
        "show (more than 2 cores' worth of nodes, a Milvus cluster, network between machines) is extrapolated, "
        "not measured.", "",
        *plan(),
    ]))


if __name__ == "__main__":
    main()
