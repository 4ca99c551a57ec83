"""Verbs and options for large collections: choosing the index type, tuning recall, compacting."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lookalike.cli.common import add_verb, open_index
from lookalike.cli.options import add_options
from lookalike.files import walk_images
from lookalike.index.knob import Knob
from lookalike.index.plan import SCALE_FIELDS, IndexPlan


def add_index_type_options(parser: argparse.ArgumentParser) -> None:
    """IndexPlan's store, index_type, max_memory and latency_ms."""
    add_options(parser, IndexPlan, names=SCALE_FIELDS)


def count_photos(folder: str) -> int:
    return sum(1 for _ in walk_images(Path(folder)))


def tune_command(args: argparse.Namespace) -> int:
    with open_index(args) as index:
        report = index.tune(target_recall=args.target_recall, sample=args.sample, k=args.k, seed=args.seed,
                            ef_search=args.ef_search, nprobe=args.nprobe, rerank=args.rerank)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    if report.measured:
        print(f"recall measured {report.measured}")
    for trial in report.trials:
        print(f"  {trial.params}: recall@{args.k} {trial.recall:.3f}, {trial.ms_per_query:.2f} ms per query")
    if report.note:
        print(report.note)
    elif args.ef_search or args.nprobe or args.rerank:
        print(f"set {report.params} as asked (recall@{args.k} {report.recall:.3f}); saved in the index manifest")
    else:
        print(f"set {report.params} (recall@{args.k} {report.recall:.3f} >= {args.target_recall}); "
              "saved in the index manifest")
    return 0


def compact_command(args: argparse.Namespace) -> int:
    with open_index(args) as index:
        live = index.compact()
        if live is None:
            print(f"{index.manifest.index_type} deletes in place: nothing to compact")
            return 0
        print(f"compacted: {live} live vectors")
    return 0


def register(verbs: Any) -> None:
    tune = add_verb(verbs, "tune", tune_command,
                    "measure recall@k on the index's own vectors and set efSearch / nprobe to reach a target")
    tune.add_argument("--target-recall", type=float, default=0.95, help="recall@k to reach (default 0.95)")
    tune.add_argument("--sample", type=int, default=500, help="query vectors to measure with (default 500)")
    tune.add_argument("-k", "--k", type=int, default=10, help="recall@k (default 10)")
    tune.add_argument("--seed", type=int, default=0, help="which sample of query vectors")
    add_options(tune, Knob)  # set it yourself instead of searching for it (its recall is measured)
    add_verb(verbs, "compact", compact_command, "drop deleted vectors from an HNSW or IVF-PQ index for good; "
             "remake an older Milvus collection with today's fields")
