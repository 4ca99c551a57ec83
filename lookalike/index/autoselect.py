"""Choosing an index type and its parameters from collection size, memory budget and latency target.

Like autofaiss: estimate what each index type would cost in RAM and in query time on this
collection, take the most exact type that fits, and say why. The estimates are rough models
calibrated on 2 CPU cores (benchmarks/scale.py measures the real numbers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lookalike.errors import RequestError

INDEX_TYPES = ("flat-ip", "hnsw", "ivfpq", "hnsw-reduced")
# A search call's target with the defaults: about what a graph index answers a call in (issue 29). Exact search is
# chosen while a whole call (every vector search it makes) stays within it.
DEFAULT_LATENCY_MS = 2.0
# Exact search of one query scans n vectors of d floats, on one thread (backends/threads.py): a cost per value and
# one per vector (FAISS keeps its top-k heap per vector). Measured 26 ms at 100k 1,280-d (benchmarks/scale.py) and
# 5.4 ms at 100k 128-d (issue 29): 0.179 ns a value and 31 ns a vector.
FLAT_MS_PER_VALUE = 1.79e-7
FLAT_MS_PER_VECTOR = 3.1e-5
HNSW_M = 32
# The graph's breadth while it is built. 40 left clustered photo vectors (benchmarks/synthetic.py, 100k PCA-128 after
# DBA, added 4,096 at a time as the store rebuilds) in a graph whose recall@10 stopped at 0.92 whatever ef_search
# (0.924 at 128); 100 reached 0.991 at ef_search 64 and 0.999 at 128, for 1.3x the build time (issue 29).
HNSW_EF_CONSTRUCTION = 100
PQ_BYTES = (64, 32, 16, 8)  # 8-bit codes of PCA-256 vectors, for budgets too small for fast-scan
FAST_SCAN_MAX_LISTS = 4096  # k-means over more lists takes too long to train on 2 cores
FAST_SCAN_NPROBE, FAST_SCAN_RERANK = 64, 40  # recall@10 ~0.96 at 1M (benchmarks/scale.py); `tune` refines them
MIN_IVF_TRAIN = 20_000

_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass
class IndexPlan:
    """What to build: an index type, its parameters and the reasons, one line each."""

    index_type: str
    params: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    memory_bytes: int = 0

    def explain(self) -> str:
        return "\n".join([f"index type: {self.index_type} {self.params or ''}".rstrip(), *self.reasons])


def parse_memory(text: str | int | None) -> int | None:
    """'2G', '1.5GB', '512M', '2GiB' or a number of bytes -> bytes."""
    if text is None or isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*", text.upper())
    if not match:
        raise RequestError(f"cannot read memory size {text!r}; write it like 2G, 1.5GB or 512M")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def memory_needed(index_type: str, count: int, dimension: int, params: dict[str, Any] | None = None) -> int:
    """Estimated RAM (bytes) the searchable index takes for `count` vectors."""
    from lookalike.backends.ivfpq import lists_for  # here, not above: the CLI's options read this module

    params = params or {}
    if index_type == "flat-ip":
        return count * (4 * dimension + 16)
    if index_type == "hnsw":
        return count * (4 * dimension + 10 * int(params.get("M", HNSW_M)) + 24)
    if index_type == "ivfpq":
        reduced = int(params.get("reduced_dimension") or dimension) if params.get("transform", "pca") else dimension
        nlist = int(params.get("nlist") or lists_for(count))
        codes = count * (int(params.get("pq_bytes", 64)) + 8 + 24)  # code + id in the lists, id -> row map
        return codes + nlist * reduced * 4 + (dimension * reduced * 4 if reduced != dimension else 0)
    if index_type == "hnsw-reduced":  # reduced float32 vectors + graph in RAM; full float16 vectors mapped
        reduced = min(int(params.get("reduced_dimension", 256)), dimension)
        return count * (4 * reduced + 10 * int(params.get("M", 16)) + 16) + dimension * reduced * 4
    raise RequestError(f"unknown index type {index_type!r}; choose from {', '.join(INDEX_TYPES)} or auto")


def searches_per_call() -> int:
    """Vector searches a search call with the default options makes: two when its expansion blends the query with
    its first matches and searches again."""
    from lookalike.expansion import Expansion

    return 2 if Expansion.of(None).blends else 1


def flat_latency_ms(count: int, dimension: int) -> float:
    """Estimated time (ms) of one exact search of `count` vectors of `dimension` floats."""
    return count * (dimension * FLAT_MS_PER_VALUE + FLAT_MS_PER_VECTOR)


def plan_index(index_type: str = "auto", count: int = 0, dimension: int = 1280, max_memory: str | int | None = None,
               latency_ms: float | None = None, searches: int = 1) -> IndexPlan:
    """The index to build for about `count` images of `dimension` (as searched: after a PCA); 'auto' chooses, a
    named type is checked against the budget. `searches`: vector searches one search call makes (2 with the default
    query expansion: the first answer and the expanded query's), all of them within `latency_ms`."""
    budget = parse_memory(max_memory)
    latency_ms = DEFAULT_LATENCY_MS if latency_ms is None else latency_ms
    if index_type != "auto":
        plan = _named_plan(index_type, count, dimension)
        if budget is not None and plan.memory_bytes > budget:
            raise RequestError(f"{index_type} needs about {_gib(plan.memory_bytes)} for {count} images, more than "
                             f"--max-memory {_gib(budget)}; raise the budget or use --index-type auto")
        return plan

    def fits(kind: str, params: dict[str, Any] | None = None) -> bool:
        return budget is None or memory_needed(kind, count, dimension, params) <= budget

    exact_ms = flat_latency_ms(count, dimension)
    call_ms = exact_ms * searches
    per_call = f" a search, {call_ms:.1f} ms for the {searches} searches of a call" if searches > 1 else ""
    size = f"{count} images of {dimension} dimensions"
    if fits("flat-ip") and call_ms <= latency_ms:
        return _named_plan("flat-ip", count, dimension, [
            f"exact search over {size} takes about {exact_ms:.1f} ms{per_call} (target {latency_ms:g} ms) and "
            f"needs {_gib(memory_needed('flat-ip', count, dimension))}{_within(budget)}: no recall is lost"])
    exact_text = f"{exact_ms:.{0 if exact_ms >= 10 else 1}f}"
    why_not_flat = (f"exact search would take about {exact_text} ms{per_call} (target {latency_ms:g} ms)"
                    if call_ms > latency_ms else
                    f"exact search needs {_gib(memory_needed('flat-ip', count, dimension))}, over the budget")
    if fits("hnsw"):
        return _named_plan("hnsw", count, dimension, [
            why_not_flat,
            f"HNSW (M={HNSW_M}) answers in about 1 ms at recall@10 ~0.95-0.99 and needs "
            f"{_gib(memory_needed('hnsw', count, dimension))}{_within(budget)}",
            "run `lookalike tune` after indexing to set efSearch for your target recall"])
    hnsw_needs = memory_needed("hnsw", count, dimension)
    if dimension % 8 == 0:
        plan = _named_plan("ivfpq", count, dimension)
        if fits("ivfpq", plan.params):
            plan.reasons = [
                why_not_flat, f"HNSW would need {_gib(hnsw_needs)}{_over(budget)}",
                f"IVF with 4-bit fast-scan PQ ({plan.params['nlist']} lists found through an HNSW graph, "
                f"{plan.params['pq_bytes']} bytes per image, one 4-bit code per 4 dimensions, no PCA) needs "
                f"{_gib(plan.memory_bytes)}{_within(budget)}; the full vectors stay on disk as float16 "
                f"({_gib(count * dimension * 2)}, memory-mapped) and re-rank the top {FAST_SCAN_RERANK} x k exactly",
                f"it trains once {plan.params['min_train']} images are indexed (exact search until then); "
                "run `lookalike tune` afterwards to set nprobe and the re-rank depth for your target recall"]
            return plan
    for pq_bytes in PQ_BYTES:
        plan = _named_plan("ivfpq", count, dimension, pq_bytes=pq_bytes)
        if fits("ivfpq", plan.params):
            plan.reasons = [
                why_not_flat, f"HNSW would need {_gib(hnsw_needs)}{_over(budget)}",
                f"IVF-PQ ({plan.params['nlist']} lists, PCA to {plan.params['reduced_dimension']} dimensions, "
                f"{pq_bytes} bytes per image) needs {_gib(plan.memory_bytes)}{_within(budget)}; the full vectors "
                f"stay on disk as float16 ({_gib(count * dimension * 2)}, memory-mapped) for exact re-ranking",
                f"it trains once {plan.params['min_train']} images are indexed (exact search until then); "
                "run `lookalike tune` afterwards to set nprobe for your target recall"]
            return plan
    smallest = memory_needed("ivfpq", count, dimension, _named_plan("ivfpq", count, dimension, pq_bytes=8).params)
    raise RequestError(f"--max-memory {_gib(budget or 0)} is too small for any index type over {size}: the smallest "
                     f"(IVF-PQ with 8 bytes per image) needs about {_gib(smallest)}")


def _named_plan(index_type: str, count: int, dimension: int, reasons: list[str] | None = None,
                pq_bytes: int | None = None) -> IndexPlan:
    from lookalike.backends.ivfpq import MAX_TRAIN, TRAIN_PER_LIST, lists_for

    if index_type == "flat-ip":
        params: dict[str, Any] = {}
    elif index_type == "hnsw":
        params = {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": 64}
    elif index_type == "ivfpq" and pq_bytes is None and dimension % 8 == 0:  # fast-scan over the full vectors
        nlist = min(FAST_SCAN_MAX_LISTS, 2 * lists_for(count)) if count else None  # unknown size: set when training
        params = {"nlist": nlist, "pq_bytes": dimension // 8, "pq_bits": 4, "transform": None, "coarse": "hnsw",
                  "nprobe": FAST_SCAN_NPROBE, "rerank": FAST_SCAN_RERANK,
                  "min_train": max(MIN_IVF_TRAIN, min(MAX_TRAIN, TRAIN_PER_LIST * (nlist or 0)))}
    elif index_type == "ivfpq":
        nlist = lists_for(count) if count else None  # unknown size: chosen when training
        params = {"nlist": nlist, "pq_bytes": pq_bytes or 64, "transform": "pca",
                  "reduced_dimension": min(256, dimension), "nprobe": 16, "rerank": 10,
                  "min_train": max(MIN_IVF_TRAIN, min(MAX_TRAIN, TRAIN_PER_LIST * (nlist or 0)))}
    elif index_type == "hnsw-reduced":
        params = {"reduced_dimension": min(256, dimension), "M": 16, "ef_construction": 40, "ef_search": 64,
                  "min_train": MIN_IVF_TRAIN}
    else:
        raise RequestError(f"unknown index type {index_type!r}; choose from {', '.join(INDEX_TYPES)} or auto")
    memory = memory_needed(index_type, count, dimension, params)
    return IndexPlan(index_type, params, reasons or [f"{index_type} chosen by you"], memory)


def _gib(count: int) -> str:
    return f"{count / 2**30:.2f} GiB"


def _within(budget: int | None) -> str:
    return "" if budget is None else f" (budget {_gib(budget)})"


def _over(budget: int | None) -> str:
    return "" if budget is None else f", over the budget of {_gib(budget)}"
