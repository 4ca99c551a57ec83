"""The core verbs: index, add, remove, search, info, evaluate."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from lookalike.cli.common import (
    CommandError,
    add_model_options,
    add_pca_options,
    add_verb,
    apply_pca_options,
    human_bytes,
    open_index,
    print_report,
    print_result,
    progress_bar,
    setting_text,
)
from lookalike.cli.scale import add_index_type_options, count_photos, open_or_create_index
from lookalike.evaluation import evaluate_index
from lookalike.index import ImageIndex
from lookalike.organise.classifier import DEFAULT_CONFIDENCE, evaluate_dataset_by_class, parse_by_class, search_by_class
from lookalike.organise.labels import parse_where
from lookalike.search import METRICS


def index_command(args: argparse.Namespace) -> int:
    created = not os.path.exists(os.path.join(args.index, "manifest.json"))
    expected = 0 if args.ray is not None and "://" in args.photos else count_photos(args.photos)
    with open_or_create_index(args, expected_count=expected) as index:
        with progress_bar("embedding") as progress:
            if args.ray is not None:
                try:
                    from lookalike.scale.distributed import ingest_with_ray
                except ImportError as error:
                    raise CommandError(f"--ray needs the distributed extra: pip install 'lookalike[distributed]' "
                                       f"({error})") from None
                report = ingest_with_ray(index, args.photos, address=args.ray or None, num_cpus=args.ray_cpus,
                                         progress=progress)
            else:
                report = index.add_folder(args.photos, progress=progress)
        apply_pca_options(index, args, created)
        print_report(report, index, args.json)
        if args.ray is not None and not args.json:
            print(f"ray: {report.workers} workers, start-up {report.startup_seconds:.1f}s, "
                  f"{report.resumed} images merged from the shards of an interrupted run")
    return 0


def add_command(args: argparse.Namespace) -> int:
    with ImageIndex.open_or_create(args.index, model=args.model, layer=args.layer, pool=args.pool,
                                   weights=args.weights, device=args.device, store=args.store) as index:
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
    filters = {"where": parse_where(args.where) or None, "path_prefix": args.path_prefix}
    with open_index(args) as index:
        query = args.id if args.id is not None else args.query
        if args.by_cluster:
            from lookalike.organise.clustering import search_by_cluster

            query = index.random_id(args.seed) if args.random else query
            result = search_by_cluster(index, query, k=args.k, clusters=args.by_cluster, metric=args.metric,
                                       min_score=args.min_score, **filters)
        elif args.by_class:
            query = index.random_id(args.seed) if args.random else query
            result = search_by_class(index, query, k=args.k, at_most=parse_by_class(args.by_class),
                                     confidence=args.class_confidence, metric=args.metric,
                                     min_score=args.min_score, **filters)
        else:
            result = index.search(query, k=args.k, metric=args.metric, min_score=args.min_score,
                                  random_query=args.random, seed=args.seed, method=args.method, **filters)
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
        with ImageIndex.open_or_create(folder, model=args.model, layer=args.layer, pool=args.pool,
                                       weights=args.weights) as index:
            if len(index) == 0 or args.update:
                with progress_bar(f"indexing {args.dataset}") as progress:
                    index.add_folder(args.dataset, progress=progress)
            if args.by_class:
                compared = evaluate_dataset_by_class(index, args.dataset, args.query_split or "test",
                                                     args.gallery_split or "train", parse_by_class(args.by_class))
                print(json.dumps({"index": str(folder), **compared.to_dict()}) if args.json else
                      f"{folder}: classifier accuracy {compared.accuracy:.4f} on {compared.queries} queries; "
                      f"mAP plain {compared.plain_map:.4f} -> by class {compared.class_map:.4f}; "
                      f"P@10 plain {compared.plain_p10:.4f} -> by class {compared.class_p10:.4f}")
                continue
            scores = evaluate_index(index, args.dataset, args.query_split, args.gallery_split, args.attribute)
            rows.append({"index": str(folder), "model": index.info()["model"], "setting": setting_text(index),
                         **scores.to_dict()})
    if args.json and rows:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(f"{'index':<30} {'model':<20} {'setting':<22} {'mAP':>7} {'P@10':>7} {'queries':>8} {'gallery':>8}")
        for row in rows:
            print(f"{row['index']:<30} {row['model']:<20} {row['setting']:<22} {row['mAP']:>7.4f} "
                  f"{row['P@10']:>7.4f} {row['queries']:>8} {row['gallery']:>8}")
    return 0


def add_store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", help="where a new index keeps its vectors: faiss (default), "
                        "milvus://HOST:PORT/COLLECTION, or a Milvus Lite file (path/file.db[/COLLECTION])")


def register(verbs: Any) -> None:
    index = add_verb(verbs, "index", index_command, "index (or re-sync) every image under a folder", model=True)
    index.add_argument("photos", metavar="PHOTOS_DIR", help="a folder, or with --ray an fsspec URI (s3://...)")
    add_pca_options(index)
    index.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                       help="embed on Ray: a local instance, or the cluster at ADDRESS (HOST:PORT, ray://..., auto)")
    index.add_argument("--ray-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    add_store_option(index)
    add_index_type_options(index)

    add = add_verb(verbs, "add", add_command, "add or update single image files", model=True)
    add.add_argument("files", nargs="+", metavar="FILE")
    add_store_option(add)

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
    search.add_argument("--where", action="append", metavar="NAME=VALUE",
                        help="only images with this label (repeat: same name = either value, names = all)")
    search.add_argument("--path-prefix", help="only images whose path starts with this")
    search.add_argument("--by-class", nargs="?", const="top1", metavar="topN",
                        help="classify the query (train-classifier first) and search within its class; "
                             "topN widens to up to N classes until --class-confidence is reached")
    search.add_argument("--class-confidence", type=float, default=DEFAULT_CONFIDENCE)
    search.add_argument("--by-cluster", type=int, nargs="?", const=1, metavar="N",
                        help="search only the N clusters nearest the query (after `lookalike cluster`)")
    search.add_argument("--method", default="cosine",
                        help="cosine, euclidean, or a similarity model trained with train-similarity")

    add_verb(verbs, "info", info_command, "describe an index")

    evaluate = verbs.add_parser("evaluate", help="retrieval mAP and P@10 on a labelled folder")
    evaluate.set_defaults(command=evaluate_command)
    evaluate.add_argument("dataset", metavar="DATASET_DIR", help="folder with labels.csv (path,label[,split])")
    evaluate.add_argument("--index", action="append", required=True, help="index folder (repeat to compare)")
    evaluate.add_argument("--query-split")
    evaluate.add_argument("--gallery-split")
    evaluate.add_argument("--attribute", default="label")
    evaluate.add_argument("--update", action="store_true", help="re-sync the index with the folder first")
    evaluate.add_argument("--by-class", nargs="?", const="top1", metavar="topN",
                          help="compare plain search with classify-then-search (needs train-classifier)")
    add_model_options(evaluate)
    evaluate.add_argument("--json", action="store_true")
