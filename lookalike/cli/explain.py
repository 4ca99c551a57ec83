"""The explain verb: why two photos are similar, as a picture of heat maps over both (ImageIndex.explain)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lookalike.cli.common import CommandError, add_verb, open_index


def photo_argument(text: str) -> str | int:
    """A photo on the command line: an image file, or the id of an indexed image (a number that is no file)."""
    path = Path(text)
    if path.is_dir():
        raise CommandError(f"{text} is a folder; give an image file or an indexed id")
    if path.exists():
        return text
    if text.isdigit():
        return int(text)
    raise CommandError(f"{text}: file not found (give an image file or an indexed id)")


def explain_command(args: argparse.Namespace) -> int:
    photos = [photo_argument(text) for text in (args.a, args.b)]
    with open_index(args) as index:
        explanation = index.explain(photos[0], photos[1], out=args.out)
    if args.json:
        from lookalike.explain import peak

        print(json.dumps({"out": str(args.out), "similarity": round(explanation.similarity, 6),
                          "peak_a": peak(explanation.heat_a), "peak_b": peak(explanation.heat_b)}))
    else:
        print(f"wrote {args.out}: warm regions give most of the similarity (cosine of the feature maps "
              f"{explanation.similarity:.3f})")
    return 0


def register(verbs: Any) -> None:
    explain = add_verb(verbs, "explain", explain_command,
                       "why two photos are similar: heat maps over both from the index's network, as a PNG")
    explain.add_argument("a", metavar="A", help="an image file or an indexed id")
    explain.add_argument("b", metavar="B", help="an image file or an indexed id")
    explain.add_argument("--out", default="explain.png", help="the picture to write (PNG; default explain.png)")
