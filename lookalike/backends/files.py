"""Writing a backend's files: atomically, and without leaving older generations behind."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import faiss

from lookalike.faults import crash_point


def write_index_atomically(index: faiss.Index, path: Path) -> None:
    """A FAISS index on disk: readers see the old file or the complete new one, never half."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as out:  # through Python's file: FAISS takes only UTF-8 names, a folder may not be one
        faiss.write_index(index, faiss.PyCallbackIOWriter(out.write))
    crash_point("backend.writing")
    partial.replace(path)


def read_index(path: Path) -> faiss.Index:
    """A FAISS index saved by write_index_atomically (any file name the system allows, UTF-8 or not)."""
    with open(path, "rb") as source:
        return faiss.read_index(faiss.PyCallbackIOReader(source.read))


def drop_stale_files(folder: Path, patterns: Iterable[str], keep: Iterable[Path]) -> None:
    """Remove the files of older generations matching `patterns`, except those in `keep`."""
    kept = set(keep)
    for pattern in patterns:
        for old in folder.glob(pattern):
            if old not in kept:
                old.unlink(missing_ok=True)
