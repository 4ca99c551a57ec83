"""Pieces every command module shares: errors, common options, progress bars, output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lookalike.embedders import DEFAULT_MODEL, available_models
from lookalike.embedders.pooling import POOLS
from lookalike.index import ImageIndex, IndexReport
from lookalike.reduction import DEFAULT_COMPONENTS, DEFAULT_MAX_SAMPLE, DEFAULT_MIN_IMAGES
from lookalike.search import SearchResult

USAGE_ERROR = 2


class CommandError(Exception):
    """A mistake in what the user asked for: message, exit code 2, no traceback."""


def add_verb(verbs: Any, name: str, command: Callable[[argparse.Namespace], int], help_text: str,
             model: bool = False) -> argparse.ArgumentParser:
    """A subcommand with the options every index verb takes (--index, --json)."""
    parser = verbs.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(command=command)
    parser.add_argument("--index", required=True, help="index folder")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    if model:
        add_model_options(parser)
    return parser


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help=f"one of {', '.join(available_models())} (default {DEFAULT_MODEL}; "
                        "an existing index keeps its own)")
    parser.add_argument("--layer", help="where features are tapped (`lookalike models` lists them)")
    parser.add_argument("--pool", choices=POOLS, help="pooling of convolutional maps (default avg)")
    parser.add_argument("--weights", type=Path, help="local weights file (instead of the packaged or cached one)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])


def open_index(args: argparse.Namespace) -> ImageIndex:
    return ImageIndex.open(args.index)


# --- output --------------------------------------------------------------------------------
class progress_bar:  # noqa: N801 - used as a context manager like a function
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


def print_report(report: IndexReport, index: ImageIndex, as_json: bool) -> None:
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


def print_result(result: SearchResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    timing = ", ".join(f"{name} {ms:.1f} ms" for name, ms in result.timings.items())
    print(f"query: {result.query}  ({result.metric}; {timing})")
    if result.predicted_class:
        print("predicted class: " + ", ".join(f"{name} ({p:.2f})" for name, p in result.predicted_class.items()))
    if not result.matches:
        print("no matches")
    print(f"{'rank':>4}  {'score':>7}  {'id':>6}  path")
    for rank, match in enumerate(result.matches, 1):
        print(f"{rank:>4}  {match.score:>7.4f}  {match.id:>6}  {match.path}")


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"




# --- model settings shown and applied by several verbs -------------------------------------------
def add_pca_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pca", type=int, metavar="N", help="reduce vectors to N dimensions with PCA fitted on the "
                        "indexed vectors (once; refit with `lookalike pca`). Default: a new index of at least "
                        f"{DEFAULT_MIN_IMAGES} images gets PCA {DEFAULT_COMPONENTS}; 0: keep the full vectors")
    parser.add_argument("--whiten", action="store_true", help="with --pca: whiten (hurts when fitted on few images)")
    parser.add_argument("--pca-sample", type=int, metavar="M", help="with --pca: fit on a random sample of M vectors")


def apply_pca_options(index: ImageIndex, args: argparse.Namespace, created: bool = False) -> None:
    """Fit the PCA asked for (or the default one on a big new index) when the index has none;
    a different one must be refitted explicitly."""
    if args.pca is None and args.whiten:
        raise CommandError("--whiten needs --pca N")
    if args.pca is None and created and len(index) >= DEFAULT_MIN_IMAGES:
        index.fit_pca(DEFAULT_COMPONENTS, sample=args.pca_sample or DEFAULT_MAX_SAMPLE)
        print(f"fitted the default PCA ({index.info()['reduction']}); `lookalike pca --index {index.folder} --off` "
              "undoes it, --pca 0 skips it", file=sys.stderr)
    if not args.pca:
        return
    current = index.manifest.get("reduction")
    if current is None:
        index.fit_pca(args.pca, whiten=args.whiten, sample=args.pca_sample)
    elif (current["components"], current["whiten"]) != (args.pca, args.whiten):
        raise CommandError(f"{index.folder} already has PCA to {current['components']} "
                           f"(whiten {current['whiten']}); refit explicitly with `lookalike pca`")


def setting_text(index: ImageIndex) -> str:
    """Layer, pooling and reduction of an index in a few words, for comparison tables."""
    info = index.info()
    reduction = index.manifest.get("reduction")
    pca = f" pca{reduction['components']}{'w' if reduction['whiten'] else ''}" if reduction else ""
    return f"{info['layer']}/{info['pool']}{pca}"
