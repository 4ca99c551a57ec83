"""lookalike: content-based image retrieval. Index a folder of photos, search by example.

The public names load on first use (PEP 562), so `import lookalike` and the CLI's `--help` stay quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import lookalike.organise  # noqa: F401 - registers the by_class and by_cluster scopes of the one search
import lookalike.similarity  # noqa: F401 - registers the learned similarity methods
from lookalike.version import __version__

if TYPE_CHECKING:
    from lookalike.images import ImageError
    from lookalike.index import ImageIndex, IndexFormatError, IndexReport, ModelMismatchError, delete_index
    from lookalike.search import Match, Query, SearchOptions, SearchResult

PUBLIC = {"ImageError": "lookalike.images", "ImageIndex": "lookalike.index", "Index": "lookalike.index",
          "IndexFormatError": "lookalike.index", "IndexReport": "lookalike.index",
          "ModelMismatchError": "lookalike.index", "delete_index": "lookalike.index", "Match": "lookalike.search",
          "Query": "lookalike.search", "SearchOptions": "lookalike.search", "SearchResult": "lookalike.search"}


def __getattr__(name: str) -> Any:
    if name not in PUBLIC:
        raise AttributeError(f"module 'lookalike' has no attribute {name!r}")
    value = getattr(importlib.import_module(PUBLIC[name]), "ImageIndex" if name == "Index" else name)
    globals()[name] = value
    return value


__all__ = ["ImageError", "ImageIndex", "Index", "IndexFormatError", "IndexReport", "Match", "ModelMismatchError",
           "Query", "SearchOptions", "SearchResult", "__version__", "delete_index"]
