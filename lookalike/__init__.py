"""lookalike: content-based image retrieval. Index a folder of photos, search by example."""

import lookalike.organise  # noqa: F401 - registers the by_class and by_cluster scopes of the one search
import lookalike.similarity  # noqa: F401 - registers the learned similarity methods
from lookalike.images import ImageError
from lookalike.index import ImageIndex, IndexFormatError, IndexReport, ModelMismatchError, delete_index
from lookalike.search import Match, Query, SearchOptions, SearchResult
from lookalike.version import __version__

Index = ImageIndex

__all__ = ["ImageError", "ImageIndex", "Index", "IndexFormatError", "IndexReport", "Match", "ModelMismatchError",
           "Query", "SearchOptions", "SearchResult", "__version__", "delete_index"]
