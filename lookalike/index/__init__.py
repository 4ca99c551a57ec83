"""The index: the one door to an index folder. Everything outside this package goes through ImageIndex."""

from lookalike.index.image_index import ImageIndex, IndexReport, ModelMismatchError, delete_index
from lookalike.index.manifest import IndexFormatError

__all__ = ["ImageIndex", "IndexFormatError", "IndexReport", "ModelMismatchError", "delete_index"]
