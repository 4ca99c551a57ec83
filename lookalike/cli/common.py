"""Pieces every command module shares: errors, common options, progress bars, output.

Nothing heavy is imported at the top of a command module: a verb imports what it needs when it runs, so
`lookalike --help` and a search by id start quickly (tests/test_startup.py holds them to it).

Every option's dest is the keyword of the API call it sets (tests/test_cli_names.py checks it),
so `--pca-sample 500` is `ImageIndex.create(pca_sample=500)` and `--k 5` is `index.search(k=5)`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lookalike.cli.options import add_options
from lookalike.index.plan import MODEL_FIELDS, IndexPlan

if TYPE_CHECKING:
    from tqdm import tqdm

    from lookalike.index import ImageIndex, IndexReport
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
    """The embedder of a new index (IndexPlan's model, layer, pool, weights, device, precision)."""
    add_options(parser, IndexPlan, names=MODEL_FIELDS)


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in MODEL_FIELDS}


def open_index(args: argparse.Namespace) -> ImageIndex:
    from lookalike.index import ImageIndex

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
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.description, unit="img", file=sys.stderr, dynamic_ncols=True)
        self.bar.update(done - self.bar.n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def print_report(report: IndexReport, index: ImageIndex, as_json: bool) -> None:
    if report.reduction:
        print(f"lookalike: note: fitted {'the default ' if _default_plan(index) else ''}PCA ({report.reduction}); "
              f"`lookalike pca --index {index.folder} --off` undoes it", file=sys.stderr)
    if as_json:
        print(json.dumps(report.to_dict() | {"count": len(index)}, indent=2))
        return
    print(f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}, "
          f"removed {report.removed}, reused {report.reused} (renamed/copied), failed {report.failed} "
          f"in {report.seconds:.1f}s; the index holds {plural(len(index), 'image')}")
    if report.labels is not None:
        print(report.labels.found_summary())
    for failure in report.failures:
        print(f"  failed: {os.fsdecode(failure.path)}: {failure.reason}")
    if report.failures:
        print(f"  (also logged in {index.files.failure_log})")


def _default_plan(index: ImageIndex) -> bool:
    """Whether the index's reduction is the API's default one rather than one asked for (--pca N)."""
    from lookalike import reduction

    plan = index.manifest.reduction_plan or {}
    return all(plan.get(key) == reduction.DEFAULT_PLAN[key] for key in ("components", "whiten", "min_images"))


def print_result(result: SearchResult, as_json: bool) -> None:
    from lookalike.video import shown_frame  # a video's frame as `clip.mp4 @ 0:12.5`

    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    timing = ", ".join(f"{name} {ms:.1f} ms" for name, ms in result.timings.items())
    print(f"query: {result.query}  ({result.method}; {timing})")
    if result.predicted_class:
        print("predicted class: " + ", ".join(f"{name} ({p:.2f})" for name, p in result.predicted_class.items()))
    if result.note:
        print(("low confidence: " if result.low_confidence else "note: ") + result.note)
    if not result.matches:
        print("no matches")
    print(f"{'rank':>4}  {'similarity':>10}  {'id':>6}  {'taken (exif or file time)':<25}  path")  # score: --json
    for rank, match in enumerate(result.matches, 1):
        similarity = f"{match.score:.4f}" if match.similarity is None else f"{match.similarity:.4f}"
        same = "  (same photo)" if match.same_photo else ""
        taken = f"{match.taken.replace('T', ' ')[:16]} {match.taken_source}" if match.taken else "-"
        print(f"{rank:>4}  {similarity:>10}  {match.id:>6}  {taken:<25}  {shown_frame(match.path)}{same}")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def setting_text(index: ImageIndex) -> str:
    """Layer, pooling and reduction of an index in a few words, for comparison tables."""
    info = index.info()
    reduction = index.manifest.reduction
    pca = f" pca{reduction['components']}{'w' if reduction['whiten'] else ''}" if reduction else ""
    return f"{info['layer']}/{info['pool']}{pca}"
