"""The core verbs: index, add, remove, search, info, evaluate."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from lookalike.cli.common import (
    CommandError,
    add_model_options,
    add_verb,
    human_bytes,
    open_index,
    print_report,
    print_result,
    progress_bar,
)
from lookalike.cli.scale import add_index_type_options, count_photos, open_or_create_index
from lookalike.evaluation import evaluate_index
from lookalike.index import ImageIndex
from lookalike.search import METRICS


def index_command(args: argparse.Namespace) -> int:
    with open_or_create_index(args, expected_count=count_photos(args.photos)) as index:
        with progress_bar("embedding") as progress:
            report = index.add_folder(args.photos, progress=progress)
        print_report(report, index, args.json)
    return 0


def add_command(args: argparse.Namespace) -> int:
    with ImageIndex.open_or_create(args.index, model=args.model, weights=args.weights, device=args.device) as index:
        with progress_bar("embedding") as progress:
            report = index.add_files(args.files, progress=progress)
        print_report(report, index, args.json)
    return 0


def remove_command(args: argparse.Namespace) -> int:
    with open_index(args) as index:
        print_report(index.remove_files(args.files), index, args.json)
    return 0


def search_command(args: argparse.Namespace) -> int:
    chosen = [args.query is not None, args.id is not None, args.random]
    if sum(chosen) != 1:
        raise CommandError("give exactly one query: an image path, --id N, or --random")
    if args.query is not None and not os.path.exists(args.query):
        raise CommandError(f"query image not found: {args.query}")
    with open_index(args) as index:
        query = args.id if args.id is not None else args.query
        result = index.search(query, k=args.k, metric=args.metric, min_score=args.min_score,
                              random_query=args.random, seed=args.seed)
    print_result(result, args.json)
    return 0


def info_command(args: argparse.Namespace) -> int:
    with open_index(args) as index:
        info = index.info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>14}  {human_bytes(value) if key == 'disk_bytes' else value}")
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    rows = []
    for folder in args.index:
        with ImageIndex.open_or_create(folder, model=args.model, weights=args.weights) as index:
            if len(index) == 0 or args.update:
                with progress_bar(f"indexing {args.dataset}") as progress:
                    index.add_folder(args.dataset, progress=progress)
            scores = evaluate_index(index, args.dataset, args.query_split, args.gallery_split, args.attribute)
            rows.append({"index": str(folder), "model": index.info()["model"], **scores.to_dict()})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'index':<30} {'model':<20} {'mAP':>7} {'P@10':>7} {'queries':>8} {'gallery':>8}")
        for row in rows:
            print(f"{row['index']:<30} {row['model']:<20} {row['mAP']:>7.4f} {row['P@10']:>7.4f} "
                  f"{row['queries']:>8} {row['gallery']:>8}")
    return 0


def register(verbs: Any) -> None:
    index = add_verb(verbs, "index", index_command, "index (or re-sync) every image under a folder", model=True)
    index.add_argument("photos", metavar="PHOTOS_DIR")
    add_index_type_options(index)

    add = add_verb(verbs, "add", add_command, "add or update single image files", model=True)
    add.add_argument("files", nargs="+", metavar="FILE")

    remove = add_verb(verbs, "remove", remove_command, "remove image files from the index")
    remove.add_argument("files", nargs="+", metavar="FILE")

    search = add_verb(verbs, "search", search_command, "find the indexed images most like a query")
    search.add_argument("query", nargs="?", metavar="QUERY_IMAGE")
    search.add_argument("--id", type=int, help="query by an indexed image id")
    search.add_argument("--random", action="store_true", help="query by a random indexed image")
    search.add_argument("--seed", type=int, help="seed for --random")
    search.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    search.add_argument("--metric", choices=METRICS, default="cosine")
    search.add_argument("--min-score", type=float, help="drop matches scoring below this")

    add_verb(verbs, "info", info_command, "describe an index")

    evaluate = verbs.add_parser("evaluate", help="retrieval mAP and P@10 on a labelled folder")
    evaluate.set_defaults(command=evaluate_command)
    evaluate.add_argument("dataset", metavar="DATASET_DIR", help="folder with labels.csv (path,label[,split])")
    evaluate.add_argument("--index", action="append", required=True, help="index folder (repeat to compare)")
    evaluate.add_argument("--query-split")
    evaluate.add_argument("--gallery-split")
    evaluate.add_argument("--attribute", default="label")
    evaluate.add_argument("--update", action="store_true", help="re-sync the index with the folder first")
    add_model_options(evaluate)
    evaluate.add_argument("--json", action="store_true")
