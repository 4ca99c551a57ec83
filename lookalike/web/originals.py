"""Indexed files opened for serving: through descriptors opened beneath a root without following any link
(see files.open_beneath), and only while they are still the file that was indexed (same size, mtime and
content digest), checked on the descriptor whose bytes are then sent. A video's frame (`clip.mp4#t=12.500`) is read
from its video, checked against the video's digest."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from lookalike.files import UnsafePathError, bytes_hash, open_beneath, root_of, stream_hash
from lookalike.index import ImageRecord
from lookalike.index.folder import IndexFolder
from lookalike.video import file_digest, file_of

CHUNK = 1 << 16


def serving_roots(files: IndexFolder, allowed_roots: Sequence[Path]) -> list[Path]:
    """Where an index's files may be read from, innermost first wins: the allowed roots, the index's own
    uploads, else the file system's root, below which no component of the indexed path may be a link."""
    return [*allowed_roots, files.uploads, Path(os.sep)]


def open_indexed(record: ImageRecord, roots: Sequence[Path]) -> BinaryIO:
    """The indexed file, open for reading at its start; FileNotFoundError (a 404) when it is gone, reached
    through a link, or no longer the one indexed."""
    handle = os.fdopen(_descriptor(record, roots), "rb")
    found = os.fstat(handle.fileno())
    if not _same(record, found.st_size, found.st_mtime, lambda: stream_hash(handle)):
        handle.close()
        raise _changed(record, "its size, time or content differ")
    handle.seek(0)
    return handle


def read_indexed(record: ImageRecord, roots: Sequence[Path]) -> bytes:
    with os.fdopen(_descriptor(record, roots), "rb") as handle:
        found, data = os.fstat(handle.fileno()), handle.read()
    if not _same(record, len(data), found.st_mtime, lambda: bytes_hash(data)):
        raise _changed(record, "its size, time or content differ")
    return data


def chunks_of(handle: BinaryIO, size: int) -> Iterator[bytes]:
    """The first `size` bytes of an open file (what was checked, even if the file grows), then it is closed."""
    with handle:
        left = size
        while left > 0 and (chunk := handle.read(min(CHUNK, left))):
            left -= len(chunk)
            yield chunk


def _descriptor(record: ImageRecord, roots: Sequence[Path]) -> int:
    try:
        return open_beneath(root_of(file_of(record.path), roots), file_of(record.path))
    except FileNotFoundError:
        raise FileNotFoundError(f"image {record.id} is indexed but its file is gone: {record.path}") from None
    except UnsafePathError as error:
        raise _changed(record, f"{error} (if the link is yours, serve with --allowed-roots naming it)") from None
    except PermissionError:
        raise PermissionError(f"image {record.id} is indexed but its file is not readable") from None
    except OSError as error:  # whatever else stands where the file or a folder was
        raise _changed(record, error.strerror or type(error).__name__) from None


def _same(record: ImageRecord, size: int, mtime: float, digest: Callable[[], str]) -> bool:
    """Whether a file is still the one indexed: its size and time, then (only if those agree) its digest."""
    return (size, mtime) == (record.size, record.mtime) and digest() == file_digest(record.content_hash)


def _changed(record: ImageRecord, why: str) -> FileNotFoundError:
    return FileNotFoundError(f"image {record.id} changed on disk since it was indexed: {why}; re-index it")
