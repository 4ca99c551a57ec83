"""Writing a backend's files: atomically, and without leaving older generations behind."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import faiss

from lookalike.faults import crash_point


def write_index_atomically(index: faiss.Index, path: Path) -> None:
    """A FAISS index on disk: readers see the old file or the complete new one, never half."""
    partial = path.with_name(path.name + ".partial")
    faiss.write_index(index, str(partial))
    crash_point("backend.writing")
    partial.replace(path)


def drop_stale_files(folder: Path, patterns: Iterable[str], keep: Iterable[Path]) -> None:
    """Remove the files of older generations matching `patterns`, except those in `keep`."""
    kept = set(keep)
    for pattern in patterns:
        for old in folder.glob(pattern):
            if old not in kept:
                old.unlink(missing_ok=True)
