"""The command line: thin skins over the Python API, one module per group of verbs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lookalike.cli import core, models, organise, scale, serve, similarity
from lookalike.cli.common import USAGE_ERROR, CommandError
from lookalike.faults import DiskFullError, UnwritableError
from lookalike.images import ImageError
from lookalike.index import IndexBusyError, IndexFormatError, LockFileError, ModelMismatchError

VERB_MODULES = [core, models, organise, scale, serve, similarity]  # each has register(verbs): its subcommands

EXPECTED_ERRORS = (CommandError, ImageError, ModelMismatchError, IndexFormatError, IndexBusyError, KeyError,
                   ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, ConnectionError, DiskFullError,
                   UnwritableError, LockFileError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lookalike", description="Find images that look like this one.")
    verbs = parser.add_subparsers(required=True, metavar="COMMAND")
    for module in VERB_MODULES:
        module.register(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.command(args) or 0)
    except EXPECTED_ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"lookalike: error: {message}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("lookalike: interrupted; finished batches are saved, run the command again to resume", file=sys.stderr)
        return 130
