"""A search's filter as a description, for a backend that can apply it where its vectors are.

Most backends (FAISS) search by allowed ids: the store turns a Filter into the ids it allows (ImageRows.ids_matching).
A backend that keeps a few scalar fields beside each vector (Milvus: the path and the labels) declares
`can_filter(narrowed)` and receives the Filter itself in `search(..., allowed_ids=narrowed)`, so a filtered search
there costs about what an unfiltered one does instead of shipping every allowed id with the query.

A new kind of condition is a field of Filter (named in `asks`), its SQL in the rows' filtering, and, where a backend
should apply it too, its clause there (milvus_filter.py) and the scalar it needs in Described. A backend answers
`can_filter` False for a condition it does not know, so the ids path keeps every filter correct meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Filter:
    """What a search is narrowed to: label values (`where`: each name one of its values), an absolute path prefix
    (a plain string prefix, as ids_matching compares it), and `capture` (the photos' dates, cameras and places:
    lookalike.capture_filter; no backend applies it yet)."""

    where: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    path_prefix: str | None = None
    capture: Any = None

    def asks(self) -> set[str]:
        """The names of the conditions this filter sets."""
        return {f.name for f in fields(self) if getattr(self, f.name) not in (None, {}, ())}

    def __bool__(self) -> bool:
        return bool(self.asks())


@dataclass(frozen=True)
class Described:
    """What a filtering backend keeps beside one image's vector: its absolute path and its labels."""

    path: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
