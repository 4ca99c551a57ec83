"""lookalike: content-based image retrieval. Index a folder of photos, search by example."""

from lookalike.version import __version__
from lookalike.images import ImageError  # noqa: I001 - the version first, then the core
from lookalike.index import ImageIndex, IndexFormatError, IndexReport, ModelMismatchError, delete_index
from lookalike.search import Match, Query, SearchOptions, SearchResult

import lookalike.organise  # noqa: E402, F401 - registers the by_class and by_cluster scopes of the one search
import lookalike.similarity  # noqa: E402, F401 - registers the learned similarity methods

Index = ImageIndex

__all__ = ["ImageError", "ImageIndex", "Index", "IndexFormatError", "IndexReport", "Match", "ModelMismatchError",
           "Query", "SearchOptions", "SearchResult", "__version__", "delete_index"]
