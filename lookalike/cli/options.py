"""The CLI flags of an API dataclass's options, generated from their declaration (lookalike.options): the flag is
the field's name (`--min-score` for min_score), its default is left to the API (None: not given), its help, type,
choices and repetition come from the field's Door."""

from __future__ import annotations

import argparse
from collections.abc import Collection
from typing import Any

from lookalike.options import Offered, offered


def add_options(parser: argparse.ArgumentParser, cls: type, names: Collection[str] | None = None,
                many: Collection[str] = ()) -> None:
    """A flag for each option of `cls` the CLI offers (only `names` when given); an option in `many` may be given
    more than once, to compare its values."""
    for item in offered(cls, lambda door: door.cli):
        if names is None or item.name in names:
            flags = [item.door.short, item.flag] if item.door.short else [item.flag]
            parser.add_argument(*flags, **argument(item, many=item.name in many))


def argument(item: Offered, many: bool = False) -> dict[str, Any]:
    """argparse's keywords for one option."""
    door = item.door
    shown = item.default_shown
    said = {"help": door.help + (f" (default {shown})" if shown not in (None, False) else "")
                    + (" (repeat to compare)" if many else ""),
            "default": None, "metavar": door.metavar, "dest": item.name}
    if door.kind is bool:
        return {"action": "store_true", "help": said["help"], "default": None}
    if door.const is not None:  # the flag may stand alone; the API parses the text ("top2" is 2)
        return said | {"nargs": "?", "const": door.const}
    typed = {} if door.kind is str else {"type": read_as(door.kind, door.words)}
    chosen = {"choices": door.choices} if door.choices else {}
    return said | typed | chosen | ({"action": "append"} if door.repeat or many else {})


def read_as(kind: type, words: tuple[str, ...]) -> Any:
    """The flag's type: `kind`, or one of `words` besides (argparse names it in an error: "invalid int or auto")."""
    if not words:
        return kind

    def read(text: str) -> Any:
        return text.strip().lower() if text.strip().lower() in words else kind(text)

    read.__name__ = " or ".join([kind.__name__, *words])
    return read


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The values of `cls`'s options as parsed (None where not given)."""
    return {item.name: getattr(args, item.name) for item in offered(cls, lambda door: door.cli)
            if hasattr(args, item.name)}
