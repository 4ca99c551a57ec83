"""One declaration per option: a field of an API dataclass (SearchOptions, Query) carries how the doors offer it.

`door(...)` is a field's metadata: its help line, the type a door reads it as, its bounds and choices. The CLI's
flags (lookalike.cli.options) and the HTTP fields (lookalike.web.fields) are generated from it, so adding an option
is its dataclass field, its implementation and its test. The API itself checks values (its __post_init__), so the
bounds here only tell the doors what to offer and document.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import MISSING, Field, dataclass, fields
from typing import Any

DOOR = "door"  # the metadata key of a field's Door


@dataclass(frozen=True)
class Door:
    """How the CLI and HTTP offer one field of an API dataclass.

    `kind` is the type a door reads (int, float, str, bool); `repeat` makes it a list (a flag given again, a field
    given twice); `choices` is the closed set of values; `minimum`/`maximum` bound numbers (`above`: exclusive
    minimum); `pattern`, `min_length` and `max_length` check text. `const` lets the CLI flag stand without a value
    (read as that value); such a flag is passed on as text and parsed by the API, which accepts forms like "top2".
    `short` is an extra CLI spelling ("-k"); `metavar` names the value in the CLI's help. `words` are values a door
    accepts besides one of `kind` (k's "auto")."""

    help: str
    kind: type = str
    repeat: bool = False
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    const: Any = None
    short: str | None = None
    metavar: str | None = None
    cli: bool = True
    http: bool = True
    words: tuple[str, ...] = ()


def door(help: str, **shown: Any) -> dict[str, Door]:  # noqa: A002  (the word the doors use)
    """A field's metadata saying how the doors offer it: `field(default=..., metadata=door("...", kind=int))`."""
    return {DOOR: Door(help, **shown)}


@dataclass(frozen=True)
class Offered:
    """One field as the doors see it: its name, its default (None where the API decides) and its Door."""

    name: str
    default: Any
    door: Door

    @property
    def default_shown(self) -> Any:
        """The default a door may print or document (None: none worth showing, the API picks)."""
        return self.default if isinstance(self.default, int | float | str | bool) else None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def offered(cls: type, keep: Callable[[Door], bool] = lambda door: True) -> Iterator[Offered]:
    """The fields of an API dataclass that carry a Door, in declaration order."""
    for item in fields(cls):
        shown = item.metadata.get(DOOR)
        if shown is not None and keep(shown):
            yield Offered(item.name, _default(item), shown)


def _default(item: Field[Any]) -> Any:
    if item.default is not MISSING:
        return item.default
    return None  # a default_factory (an empty where, a list): the door's own empty value
