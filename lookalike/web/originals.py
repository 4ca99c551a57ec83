"""Indexed files opened for serving: never through a link in the last component of their path, and only while
they are still the file that was indexed (same size and mtime), checked on the descriptor that is then read."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

from lookalike.index import ImageRecord

# O_NOFOLLOW: a link put in place of the file fails to open; O_NONBLOCK: a FIFO put there cannot hang the open
FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) \
    | getattr(os, "O_BINARY", 0)
CHUNK = 1 << 16


def open_indexed(record: ImageRecord) -> BinaryIO:
    """The indexed file, open for reading; FileNotFoundError (a 404) when it is gone or no longer the one indexed."""
    try:
        descriptor = os.open(record.path, FLAGS)
    except FileNotFoundError:
        raise FileNotFoundError(f"image {record.id} is indexed but its file is gone: {record.path}") from None
    except PermissionError:
        raise PermissionError(f"image {record.id} is indexed but its file is not readable") from None
    except OSError:  # ELOOP (a link) and whatever else stands where the file was
        raise _changed(record) from None
    handle = os.fdopen(descriptor, "rb")
    found = os.fstat(descriptor)
    if not stat.S_ISREG(found.st_mode) or (found.st_size, found.st_mtime) != (record.size, record.mtime):
        handle.close()
        raise _changed(record)
    if getattr(os, "O_NONBLOCK", 0):
        os.set_blocking(descriptor, True)
    return handle


def read_indexed(record: ImageRecord) -> bytes:
    with open_indexed(record) as handle:
        return handle.read(record.size)


def chunks_of(handle: BinaryIO, size: int) -> Iterator[bytes]:
    """The first `size` bytes of an open file (what was checked, even if the file grows), then it is closed."""
    with handle:
        left = size
        while left > 0 and (chunk := handle.read(min(CHUNK, left))):
            left -= len(chunk)
            yield chunk


def _changed(record: ImageRecord) -> FileNotFoundError:
    return FileNotFoundError(f"image {record.id} changed on disk since it was indexed; re-index it")
