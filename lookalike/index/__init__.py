"""The index: the one door to an index folder. Everything outside this package goes through ImageIndex."""

from lookalike.index.image_index import ImageIndex, ModelMismatchError, delete_index
from lookalike.index.labels import LabelImport, UnknownLabelError
from lookalike.index.manifest import IndexFormatError
from lookalike.index.store import ImageRecord, NewImage
from lookalike.index.sync import IndexReport, Sync
from lookalike.index.writer import IndexBusyError, LockFileError

__all__ = ["ImageIndex", "ImageRecord", "IndexBusyError", "IndexFormatError", "IndexReport", "LabelImport",
           "LockFileError", "ModelMismatchError", "NewImage", "Sync", "UnknownLabelError", "delete_index"]
