"""The core verbs: index, add, remove, search, info, evaluate."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lookalike.cli.common import (
    CommandError,
    add_model_options,
    add_verb,
    human_bytes,
    model_options,
    open_index,
    print_report,
    print_result,
    progress_bar,
    setting_text,
)
from lookalike.cli.options import add_options, given
from lookalike.cli.scale import add_index_type_options, count_photos
from lookalike.evaluation import evaluate_index, gallery_paths
from lookalike.index.folder import IndexFolder
from lookalike.index.labels import import_folder_labels
from lookalike.index.plan import REDUCTION_FIELDS, IndexPlan
from lookalike.search import Query, SearchOptions, parse_count

if TYPE_CHECKING:
    from lookalike.index import ImageIndex, IndexReport

SEARCH_DEFAULTS = SearchOptions()  # the API's defaults, shown in the help


def index_command(args: argparse.Namespace) -> int:
    from lookalike.index import ImageIndex

    if args.ray_cpus is not None and args.ray is None:
        raise CommandError("--ray-cpus sets the CPUs of a local Ray instance: give --ray too")
    if "://" not in args.source and not Path(args.source).is_dir():  # before a new index folder is made
        what = "is a file, not a folder" if Path(args.source).exists() else "does not exist"
        raise CommandError(f"{args.source} {what}; give the folder of photos to index (`lookalike add` takes files)")
    new = not IndexFolder(args.index).is_index()
    with ImageIndex.open_or_create(args.index, **given(args, IndexPlan),
                                   expected_count=_expected_count(args, new)) as index:
        _print_index_type(index, args, new)
        with progress_bar("embedding") as progress:
            report = _ingest(index, args, progress)
        print_report(report, index, args.json)
        if len(index) == 0 and not report.failed:
            print(f"lookalike: warning: no images under {args.source} (JPEG, PNG, WebP, HEIC, ...); nothing to search",
                  file=sys.stderr)
            return 1
        if args.ray is not None and not args.json:
            print(f"ray: {report.workers} workers, start-up {report.startup_seconds:.1f}s, "
                  f"{report.resumed} images merged from the shards of an interrupted run")
    return 0


def _expected_count(args: argparse.Namespace, new: bool) -> int:
    """The photos to come, which only --index-type auto needs (to choose an index type for a new index)."""
    if args.index_type != "auto" or not new or "://" in args.source:
        return 0
    return count_photos(args.source)


def _print_index_type(index: ImageIndex, args: argparse.Namespace, new: bool) -> None:
    chosen = index.manifest.index_type
    if not new:
        if args.index_type not in (None, chosen):
            print(f"lookalike: note: {args.index} already holds a {chosen} index; "
                  "--index-type only applies to new index folders", file=sys.stderr)
        return
    if not args.json:
        print(f"index type: {chosen} {index.manifest.index_params or ''}".rstrip())
        for reason in index.manifest.index_choice if args.index_type == "auto" else []:  # why auto chose it
            print(f"  {reason}")


def _ingest(index: ImageIndex, args: argparse.Namespace, progress: Any) -> IndexReport:
    if args.ray is None:
        return index.add_folder(args.source, progress=progress, frames_per_minute=args.frames_per_minute)
    try:
        from lookalike.scale.distributed import ingest_with_ray
    except ImportError as error:
        raise CommandError(f"--ray needs the distributed extra: pip install 'lookalike[distributed]' "
                           f"({error})") from None
    report = ingest_with_ray(index, args.source, ray=args.ray or None, ray_cpus=args.ray_cpus, progress=progress)
    if "://" not in args.source:  # a local folder's labels.csv, as add_folder reads it
        report.labels = import_folder_labels(index, args.source)
    return report


def add_command(args: argparse.Namespace) -> int:
    from lookalike.index import ImageIndex

    with ImageIndex.open_or_create(args.index, **model_options(args), store=args.store, catalog=args.catalog) as index:
        with progress_bar("embedding") as progress:
            report = index.add_files(args.files, progress=progress, frames_per_minute=args.frames_per_minute)
        print_report(report, index, args.json)
    return 0


def remove_command(args: argparse.Namespace) -> int:
    with open_index(args) as index:
        print_report(index.remove_files(args.files), index, args.json)
    return 0


def search_command(args: argparse.Namespace) -> int:
    for query in (*args.query, *(args.negative or ())):
        check_query_file(Path(query))
    with open_index(args) as index:  # several images: examples of what to find (lookalike.index.examples)
        query = args.query[0] if len(args.query) == 1 else args.query or None
        result = index.search(query, **given(args, Query), **given(args, SearchOptions))
    print_result(result, args.json)
    return 0


def check_query_file(query: Path) -> None:
    """A query that is no file is named as such, before the index is opened."""
    if query.is_dir():
        raise CommandError(f"{query} is a folder; give one image file to search from "
                           "(`lookalike index` takes folders)")
    if not query.exists():
        raise CommandError(f"{query}: file not found")


def info_command(args: argparse.Namespace) -> int:
    from lookalike.organise import organisation

    with open_index(args) as index:
        info = index.info() | organisation(index)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key, value in info.items():
        print(f"{key:>14}  {_info_text(key, value, args.index)}")
    return 0


def _info_text(key: str, value: Any, folder: str) -> str:
    if key == "disk_bytes":
        return human_bytes(value)
    if key == "labels":
        found = [f"{name}: {len(counts)} values over {sum(counts.values())} images" for name, counts in value.items()]
        return "; ".join(found) or f"none (lookalike labels import LABELS.csv --index {folder})"
    if key == "classifier":
        return (f"{value['attribute']}: {len(value['classes'])} classes" if value
                else f"none (lookalike train-classifier --index {folder} --labels-csv LABELS.csv)")
    if key == "clusters":
        return f"{value} clusters" if value else f"none (lookalike cluster --index {folder})"
    return str(value)


def evaluate_command(args: argparse.Namespace) -> int:
    from lookalike.index import ImageIndex

    rows = []
    for folder in args.index:
        with ImageIndex.open_or_create(folder, **model_options(args)) as index:
            if len(index) == 0 or args.update:  # the gallery only: queries are searched as new photos
                with progress_bar(f"indexing {args.dataset}'s gallery") as progress:
                    index.add_files(gallery_paths(args.dataset, args.attribute, args.gallery_split), progress=progress)
            if args.by_class:
                _print_by_class(folder, index, args)
                continue
            for expand, matches in itertools.product(args.expand or [None], args.matches or [None]):
                scores = evaluate_index(index, args.dataset, args.query_split, args.gallery_split, args.attribute,
                                        expand=expand, expand_neighbours=args.expand_neighbours,
                                        expand_alpha=args.expand_alpha, matches=matches)
                rows.append({"index": str(folder), "model": index.info()["model"], "setting": setting_text(index),
                             **scores.to_dict()})
    if args.json and rows:
        print(json.dumps(rows, indent=2))
    elif rows:
        _print_scores(rows)
    return 0


def _print_scores(rows: list[dict[str, Any]]) -> None:
    print(f"{'index':<26} {'model':<18} {'setting':<24} {'expand':<10} {'matches':>7} {'mAP':>7} {'P@10':>7} "
          f"{'top-1':>7} {'ms/query':>8} {'queries':>8} {'new':>5} {'gallery':>8}")
    for row in rows:
        matches = "all" if row["matches"] is None else row["matches"]
        print(f"{row['index']:<26} {row['model']:<18} {row['setting']:<24} {row['expand']:<10} {matches:>7} "
              f"{row['mAP']:>7.4f} {row['P@10']:>7.4f} {row['top1'] or 0:>7.4f} {row['ms_per_query'] or 0:>8.2f} "
              f"{row['queries']:>8} {row['new_photos']:>5} {row['gallery']:>8}")
    if any(row["new_photos"] < row["queries"] for row in rows):
        print("note: some queries are indexed images; their own vectors are already blended into their neighbours' "
              "(DBA), which flatters the defaults: index only the gallery for an honest figure", file=sys.stderr)


def _print_by_class(folder: str, index: ImageIndex, args: argparse.Namespace) -> None:
    from lookalike.organise.classifier import evaluate_dataset_by_class

    confidence = SEARCH_DEFAULTS.class_confidence if args.class_confidence is None else args.class_confidence
    compared = evaluate_dataset_by_class(index, args.dataset, args.query_split or "test",
                                         args.gallery_split or "train", by_class=parse_count(args.by_class, "by_class"),
                                         class_confidence=confidence)
    print(json.dumps({"index": str(folder), **compared.to_dict()}) if args.json else
          f"{folder}: classifier accuracy {compared.accuracy:.4f} on {compared.queries} queries; "
          f"mAP plain {compared.plain_map:.4f} -> by class {compared.class_map:.4f}; "
          f"P@10 plain {compared.plain_p10:.4f} -> by class {compared.class_p10:.4f}")


# --- options ---------------------------------------------------------------------------------
def add_pca_options(parser: argparse.ArgumentParser) -> None:
    """IndexPlan's reduction and augmentation: pca, whiten, pca_sample, dba, dba_alpha."""
    add_options(parser, IndexPlan, names=REDUCTION_FIELDS)


def add_search_options(parser: argparse.ArgumentParser) -> None:
    """The query (an image file, or the Query fields: --id, --random, --text, ...) and every SearchOptions field,
    under their API names, generated from their declarations."""
    parser.add_argument("query", nargs="*", metavar="QUERY_IMAGE",
                        help="an image file to search from (several: examples of what to find)")
    add_options(parser, Query)
    add_options(parser, SearchOptions)


def add_video_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames-per-minute", type=int, metavar="N",
                        help="videos (mp4, mov, webm, mkv) are indexed as their scene changes, at most N a minute of "
                             "footage (default $LOOKALIKE_FRAMES_PER_MINUTE or 12; needs the video extra)")


def register(verbs: Any) -> None:
    index = add_verb(verbs, "index", index_command, "index (or re-sync) every image under a folder", model=True)
    index.add_argument("source", metavar="PHOTOS_DIR", help="a folder, or with --ray an fsspec URI (s3://...)")
    add_pca_options(index)
    index.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                       help="embed on Ray: a local instance, or the cluster at ADDRESS (HOST:PORT, ray://..., auto)")
    index.add_argument("--ray-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    add_index_type_options(index)
    add_video_options(index)

    add = add_verb(verbs, "add", add_command, "add or update single image files", model=True)
    add.add_argument("files", nargs="+", metavar="FILE")
    add_video_options(add)
    add_options(add, IndexPlan, names={"store", "catalog"})

    remove = add_verb(verbs, "remove", remove_command, "remove image files from the index")
    remove.add_argument("files", nargs="+", metavar="FILE")

    search = add_verb(verbs, "search", search_command, "find the indexed images most like a query")
    add_search_options(search)

    add_verb(verbs, "info", info_command, "describe an index")

    evaluate = verbs.add_parser("evaluate", help="retrieval mAP and P@10 on a labelled folder")
    evaluate.set_defaults(command=evaluate_command)
    evaluate.add_argument("dataset", metavar="DATASET_DIR", help="folder with labels.csv (path,label[,split])")
    evaluate.add_argument("--index", action="append", required=True, help="index folder (repeat to compare)")
    evaluate.add_argument("--query-split")
    evaluate.add_argument("--gallery-split")
    evaluate.add_argument("--attribute", default="label")
    evaluate.add_argument("--update", action="store_true", help="re-sync the index with the folder first")
    add_options(evaluate, SearchOptions, names={"by_class", "class_confidence"})  # compares plain with by class
    add_options(evaluate, SearchOptions, names={"expand", "expand_neighbours", "expand_alpha"}, many={"expand"})
    evaluate.add_argument("--matches", type=int, action="append", metavar="R",
                          help="few-match mode: cut each query's class to R gallery images (repeat to compare)")
    add_model_options(evaluate)
    evaluate.add_argument("--json", action="store_true")
