"""The search knob of an approximate index, as a user sets it (`index.tune(ef_search=...)`, `lookalike tune
--ef-search N`): declared once here, for the API and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field

from lookalike.options import door


@dataclass(frozen=True)
class Knob:
    """The search knob a user may set instead of letting tune() search for it (its recall is measured)."""

    ef_search: int | None = field(default=None, metadata=door("set HNSW's efSearch yourself", kind=int, minimum=1,
                                                              metavar="N"))
    nprobe: int | None = field(default=None, metadata=door("set IVF-PQ's lists probed yourself", kind=int,
                                                           minimum=1, metavar="N"))
    rerank: int | None = field(default=None, metadata=door("set IVF-PQ's re-rank depth (x k) yourself", kind=int,
                                                           minimum=1, metavar="N"))
