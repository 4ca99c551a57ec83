"""Capture data for images indexed before the index kept it: read from their files, no image embedded again.

An index upgraded to format 3 has the capture columns but nothing in them. Reading the EXIF of a million photos
takes minutes, so the upgrade (which runs when the index is opened, searches included) does not do it;
`ImageIndex.read_capture()` / `lookalike capture --index X` does, committing every COMMIT_EVERY images, and a
second run picks up where an interrupted one stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lookalike.capture import Capture
from lookalike.files import stat_file
from lookalike.images import read_capture
from lookalike.index.store import VectorStore

COMMIT_EVERY = 256


@dataclass
class CaptureReport:
    """What reading the capture of indexed images found."""

    images: int = 0  # images given capture data
    from_exif: int = 0  # dated by their EXIF
    from_file: int = 0  # dated by their file's modification time (as it was indexed)
    unreadable: int = 0  # files gone, unreadable or changed since indexed: dated by the indexed file time only

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "from_exif": self.from_exif, "from_file": self.from_file,
                "unreadable": self.unreadable}


def read_missing_capture(store: VectorStore) -> CaptureReport:
    """Give every image without capture data what its file says (dated by its indexed file time without EXIF)."""
    report, pending = CaptureReport(), {}
    for record in store.records_without_capture():
        found = stat_file(Path(record.path)) if "://" not in record.path else None
        readable = found is not None and (found.size, found.mtime) == (record.size, record.mtime)
        capture = (read_capture(record.path) if readable else Capture()).dated(record.mtime)
        report.unreadable += not readable
        report.from_exif += capture.taken_source == "exif"
        report.from_file += capture.taken_source == "file"
        pending[record.id] = capture
        if len(pending) >= COMMIT_EVERY:
            _write(store, pending)
            report.images += len(pending)
            pending = {}
    _write(store, pending)
    report.images += len(pending)
    return report


def _write(store: VectorStore, captures: dict[int, Capture]) -> None:
    if captures:
        store.set_capture(captures)
        store.commit()
