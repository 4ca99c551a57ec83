"""The command line: thin skins over the Python API, one module per group of verbs.

Building the parser imports no network, vector or plotting library; a verb imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Sequence

from lookalike.cli import capture, core, explain, models, organise, scale, serve, similarity
from lookalike.cli.common import USAGE_ERROR, CommandError
from lookalike.version import __version__

# each has register(verbs): its subcommands
VERB_MODULES = [core, capture, explain, models, organise, scale, serve, similarity]


def expected_errors() -> tuple[type[BaseException], ...]:
    """The user's errors (exit 2, one line, no traceback); imported when one is raised, so start-up stays light."""
    from lookalike.errors import LookalikeError
    from lookalike.faults import DiskFullError, UnwritableError
    from lookalike.images import ImageError
    from lookalike.index import IndexBusyError, IndexFormatError, LockFileError, ModelMismatchError

    return (LookalikeError, CommandError, ImageError, ModelMismatchError, IndexFormatError, IndexBusyError,
            FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, ConnectionError,
            DiskFullError, UnwritableError, LockFileError)  # a plain KeyError or ValueError is a bug: a traceback


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lookalike", description="Find images that look like this one.")
    parser.add_argument("--version", action="version", version=f"lookalike {__version__}")
    verbs = parser.add_subparsers(required=True, metavar="COMMAND")
    for module in VERB_MODULES:
        module.register(verbs)
    return parser


def verb_names(parser: argparse.ArgumentParser) -> list[str]:
    return [name for action in parser._subparsers._group_actions for name in action.choices]  # type: ignore[union-attr]


def check_verb(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """A mistyped verb is named with the closest ones (argparse would list all of them)."""
    verb = next((word for word in argv if not word.startswith("-")), None)
    names = verb_names(parser)
    if verb is None or verb in names:
        return
    close = difflib.get_close_matches(verb, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else f"; the commands are {', '.join(names)}"
    parser.error(f"unknown command {verb!r}{hint}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    check_verb(parser, argv)
    args = parser.parse_args(argv)
    try:
        return int(args.command(args) or 0)
    except BrokenPipeError:  # `lookalike info | head`: the reader has gone, which is no error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("lookalike: interrupted; finished batches are saved, run the command again to resume", file=sys.stderr)
        return 130
    except Exception as error:
        if not isinstance(error, expected_errors()):
            raise
        print(f"lookalike: error: {error}", file=sys.stderr)
        return USAGE_ERROR
