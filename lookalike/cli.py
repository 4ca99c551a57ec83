"""The command line: one function per verb, a thin skin over the Python API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lookalike.embedders import DEFAULT_MODEL, available_models
from lookalike.evaluation import evaluate_index
from lookalike.images import ImageError
from lookalike.index import ImageIndex, IndexReport, ModelMismatchError
from lookalike.manifest import IndexFormatError
from lookalike.search import METRICS, SearchResult

USAGE_ERROR = 2


class CommandError(Exception):
    """A mistake in what the user asked for: message, exit code 2, no traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.command(args) or 0)
    except (CommandError, ImageError, ModelMismatchError, IndexFormatError, KeyError, ValueError,
            FileNotFoundError, FileExistsError, NotADirectoryError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"lookalike: error: {message}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("lookalike: interrupted; finished batches are saved, run the command again to resume", file=sys.stderr)
        return 130


# --- verbs ---------------------------------------------------------------------------------
def index_command(args: argparse.Namespace) -> int:
    with ImageIndex.open_or_create(args.index, model=args.model, weights=args.weights, device=args.device) as index:
        with _progress_bar("embedding") as progress:
            report = index.add_folder(args.photos, progress=progress)
        _print_report(report, index, args.json)
    return 0


def add_command(args: argparse.Namespace) -> int:
    with ImageIndex.open_or_create(args.index, model=args.model, weights=args.weights, device=args.device) as index:
        with _progress_bar("embedding") as progress:
            report = index.add_files(args.files, progress=progress)
        _print_report(report, index, args.json)
    return 0


def remove_command(args: argparse.Namespace) -> int:
    with _open(args) as index:
        _print_report(index.remove_files(args.files), index, args.json)
    return 0


def search_command(args: argparse.Namespace) -> int:
    chosen = [args.query is not None, args.id is not None, args.random]
    if sum(chosen) != 1:
        raise CommandError("give exactly one query: an image path, --id N, or --random")
    if args.query is not None and not os.path.exists(args.query):
        raise CommandError(f"query image not found: {args.query}")
    with _open(args) as index:
        query = args.id if args.id is not None else args.query
        result = index.search(query, k=args.k, metric=args.metric, min_score=args.min_score,
                              random_query=args.random, seed=args.seed)
    _print_result(result, args.json)
    return 0


def info_command(args: argparse.Namespace) -> int:
    with _open(args) as index:
        info = index.info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>14}  {_human_bytes(value) if key == 'disk_bytes' else value}")
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    rows = []
    for folder in args.index:
        with ImageIndex.open_or_create(folder, model=args.model, weights=args.weights) as index:
            if len(index) == 0 or args.update:
                with _progress_bar(f"indexing {args.dataset}") as progress:
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


# --- parser --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lookalike", description="Find images that look like this one.")
    verbs = parser.add_subparsers(required=True, metavar="COMMAND")

    index = _verb(verbs, "index", index_command, "index (or re-sync) every image under a folder", model=True)
    index.add_argument("photos", metavar="PHOTOS_DIR")

    add = _verb(verbs, "add", add_command, "add or update single image files", model=True)
    add.add_argument("files", nargs="+", metavar="FILE")

    remove = _verb(verbs, "remove", remove_command, "remove image files from the index")
    remove.add_argument("files", nargs="+", metavar="FILE")

    search = _verb(verbs, "search", search_command, "find the indexed images most like a query")
    search.add_argument("query", nargs="?", metavar="QUERY_IMAGE")
    search.add_argument("--id", type=int, help="query by an indexed image id")
    search.add_argument("--random", action="store_true", help="query by a random indexed image")
    search.add_argument("--seed", type=int, help="seed for --random")
    search.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    search.add_argument("--metric", choices=METRICS, default="cosine")
    search.add_argument("--min-score", type=float, help="drop matches scoring below this")

    _verb(verbs, "info", info_command, "describe an index")

    evaluate = verbs.add_parser("evaluate", help="retrieval mAP and P@10 on a labelled folder")
    evaluate.set_defaults(command=evaluate_command)
    evaluate.add_argument("dataset", metavar="DATASET_DIR", help="folder with labels.csv (path,label[,split])")
    evaluate.add_argument("--index", action="append", required=True, help="index folder (repeat to compare)")
    evaluate.add_argument("--query-split")
    evaluate.add_argument("--gallery-split")
    evaluate.add_argument("--attribute", default="label")
    evaluate.add_argument("--update", action="store_true", help="re-sync the index with the folder first")
    _model_options(evaluate)
    evaluate.add_argument("--json", action="store_true")
    return parser


def _verb(verbs: Any, name: str, command: Callable[[argparse.Namespace], int], help_text: str,
          model: bool = False) -> argparse.ArgumentParser:
    parser = verbs.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(command=command)
    parser.add_argument("--index", required=True, help="index folder")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    if model:
        _model_options(parser)
    return parser


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"one of {', '.join(available_models())}")
    parser.add_argument("--weights", type=Path, help="local weights file (instead of the packaged or cached one)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])


def _open(args: argparse.Namespace) -> ImageIndex:
    return ImageIndex.open(args.index)


# --- output --------------------------------------------------------------------------------
class _progress_bar:  # noqa: N801 - used as a context manager like a function
    def __init__(self, description: str):
        self.bar: tqdm | None = None
        self.description = description

    def __enter__(self) -> Callable[[int, int], None]:
        return self.update

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.description, unit="img", file=sys.stderr, dynamic_ncols=True)
        self.bar.update(done - self.bar.n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def _print_report(report: IndexReport, index: ImageIndex, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_dict() | {"count": len(index)}, indent=2))
        return
    print(f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}, "
          f"removed {report.removed}, reused {report.reused} (renamed/copied), failed {report.failed} "
          f"in {report.seconds:.1f}s; the index holds {len(index)} images")
    for failure in report.failures:
        print(f"  failed: {os.fsdecode(failure.path)}: {failure.reason}")
    if report.failures:
        print(f"  (also logged in {index.folder / 'failures.log'})")


def _print_result(result: SearchResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    timing = ", ".join(f"{name} {ms:.1f} ms" for name, ms in result.timings.items())
    print(f"query: {result.query}  ({result.metric}; {timing})")
    if not result.matches:
        print("no matches")
    print(f"{'rank':>4}  {'score':>7}  {'id':>6}  path")
    for rank, match in enumerate(result.matches, 1):
        print(f"{rank:>4}  {match.score:>7.4f}  {match.id:>6}  {match.path}")


def _human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


if __name__ == "__main__":
    sys.exit(main())
