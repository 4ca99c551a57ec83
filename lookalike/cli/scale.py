"""Verbs and options for large collections: choosing the index type, tuning recall, compacting."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lookalike.cli.common import add_verb, open_index
from lookalike.embedders import DEFAULT_MODEL
from lookalike.files import walk_images
from lookalike.index import ImageIndex
from lookalike.index.autoselect import INDEX_TYPES
from lookalike.index.tune import tune_index


def add_index_type_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index-type", default="flat-ip", choices=["auto", *INDEX_TYPES],
                        help="vector index for a new index folder (default flat-ip: exact); auto chooses from the "
                             "number of photos, --max-memory and --latency-ms")
    parser.add_argument("--max-memory", help="RAM budget for the vector index, like 2G or 512M")
    parser.add_argument("--latency-ms", type=float, help="search latency target for --index-type auto (default 10)")


def open_or_create_index(args: argparse.Namespace, expected_count: int) -> ImageIndex:
    """The index folder of `args`, created with the requested index type when it does not exist yet."""
    if (Path(args.index) / "manifest.json").exists():
        index = ImageIndex.open_or_create(args.index, model=args.model, layer=args.layer, pool=args.pool,
                                          weights=args.weights, device=args.device, store=args.store)
        if args.index_type not in ("flat-ip", index.manifest["index_type"]):
            print(f"lookalike: note: {args.index} already holds a {index.manifest['index_type']} index; "
                  "--index-type only applies to new index folders", file=sys.stderr)
        return index
    index = ImageIndex.create(args.index, model=args.model or DEFAULT_MODEL, layer=args.layer, pool=args.pool,
                              weights=args.weights, device=args.device, store=args.store,
                              index_type=args.index_type, expected_count=expected_count,
                              max_memory=args.max_memory, latency_ms=args.latency_ms)
    if not args.json:
        print(f"index type: {index.manifest['index_type']} {index.manifest['index_params'] or ''}".rstrip())
        for reason in index.manifest["index_choice"]:
            print(f"  {reason}")
    return index


def count_photos(folder: str) -> int:
    return sum(1 for _ in walk_images(Path(folder)))


def tune_command(args: argparse.Namespace) -> int:
    with open_index(args) as index:
        report = tune_index(index, target_recall=args.target_recall, sample=args.sample, k=args.k)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    for trial in report.trials:
        print(f"  {trial.params}: recall@{args.k} {trial.recall:.3f}, {trial.ms_per_query:.2f} ms per query")
    if report.note:
        print(report.note)
    else:
        print(f"set {report.params} (recall@{args.k} {report.recall:.3f} >= {args.target_recall}); "
              "saved in the index manifest")
    return 0


def compact_command(args: argparse.Namespace) -> int:
    with open_index(args) as index:
        backend: Any = index.store.backend
        if not hasattr(backend, "compact"):
            print(f"{index.manifest['index_type']} deletes in place: nothing to compact")
            return 0
        backend.compact()
        index.store.save()
        print(f"compacted: {backend.count} live vectors")
    return 0


def register(verbs: Any) -> None:
    tune = add_verb(verbs, "tune", tune_command,
                    "measure recall@k on the index's own vectors and set efSearch / nprobe to reach a target")
    tune.add_argument("--target-recall", type=float, default=0.95, help="recall@k to reach (default 0.95)")
    tune.add_argument("--sample", type=int, default=500, help="query vectors to measure with (default 500)")
    tune.add_argument("-k", type=int, default=10, help="recall@k (default 10)")
    add_verb(verbs, "compact", compact_command, "drop deleted vectors from an HNSW or IVF-PQ index for good")
