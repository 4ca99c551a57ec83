"""The index: the one door to an index folder. Everything outside this package goes through ImageIndex.

The names load on first use (PEP 562): importing a light part (lookalike.index.folder, labels) does not
load the vector store, FAISS and the embedders.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lookalike.embedders.spec import ModelMismatchError
    from lookalike.index.image_index import ImageIndex, delete_index
    from lookalike.index.labels import LabelImport, UnknownLabelError
    from lookalike.index.manifest import IndexFormatError
    from lookalike.index.store import ImageRecord, NewImage
    from lookalike.index.sync import IndexReport, Sync
    from lookalike.index.writer import IndexBusyError, LockFileError

HOMES = {"ImageIndex": "lookalike.index.image_index", "delete_index": "lookalike.index.image_index",
         "ModelMismatchError": "lookalike.embedders.spec", "LabelImport": "lookalike.index.labels",
         "UnknownLabelError": "lookalike.index.labels", "IndexFormatError": "lookalike.index.manifest",
         "ImageRecord": "lookalike.index.store", "NewImage": "lookalike.index.store",
         "IndexReport": "lookalike.index.sync", "Sync": "lookalike.index.sync",
         "IndexBusyError": "lookalike.index.writer", "LockFileError": "lookalike.index.writer"}


def __getattr__(name: str) -> Any:
    if name not in HOMES:
        raise AttributeError(f"module 'lookalike.index' has no attribute {name!r}")
    value = getattr(importlib.import_module(HOMES[name]), name)
    globals()[name] = value
    return value


__all__ = ["ImageIndex", "ImageRecord", "IndexBusyError", "IndexFormatError", "IndexReport", "LabelImport",
           "LockFileError", "ModelMismatchError", "NewImage", "Sync", "UnknownLabelError", "delete_index"]
