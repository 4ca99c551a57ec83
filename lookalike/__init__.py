"""lookalike: content-based image retrieval. Index a folder of photos, search by example."""

__version__ = "0.1.0"

from lookalike.images import ImageError  # noqa: E402
from lookalike.index import ImageIndex, IndexReport, ModelMismatchError, delete_index  # noqa: E402
from lookalike.index.manifest import IndexFormatError  # noqa: E402
from lookalike.search import Match, SearchResult  # noqa: E402

Index = ImageIndex

__all__ = ["ImageError", "ImageIndex", "Index", "IndexFormatError", "IndexReport", "Match", "ModelMismatchError",
           "SearchResult", "__version__", "delete_index"]
