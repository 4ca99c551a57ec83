"""Faults the machine inflicts on a write: a crash at any moment, a full disk.

Crash points are named moments inside a write (between the SQLite commit and the vector-file save, after
a file is written but before it is renamed, ...). With LOOKALIKE_CRASH_AT=NAME, or NAME@N for its N-th
visit, the process kills itself there with SIGKILL (nothing is flushed or cleaned up, as with `kill -9` or
a power cut), so tests can prove that every such moment leaves an index that opens, searches and resumes.
Unset, a crash point costs one comparison. CRASH_POINTS lists them all (tests check each).

A full disk (no space, a file too large for the file system or the process's limit, a quota) shows up as
an OSError, a SQLite "database or disk is full" or a FAISS write error; `disk_full` turns each into one
DiskFullError with a message a person can act on. A read-only file system or a folder this process may not
write (EROFS, EACCES, EPERM) is an UnwritableError, named as such: neither is a damaged index.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CRASH_AT = "LOOKALIKE_CRASH_AT"

CRASH_POINTS = {
    "store.added": "a batch of new images inserted, not committed (the middle of a run)",
    "store.removed": "images deleted, not committed",
    "store.committing": "the new generation written inside the transaction, COMMIT not run",
    "store.committed": "a transaction committed, nothing derived from it saved",
    "store.reduction-committed": "a new reduction's generation committed, its searchable copy not rebuilt",
    "store.compacted": "deleted vectors dropped in memory, the compacted copy not saved",
    "sync.saving": "a run's last batch committed, the vector file not saved",
    "sync.finishing": "a run's vector file saved, its policy (the default PCA) not applied",
    "manifest.writing": "a new manifest written beside the old one, not renamed over it",
    "manifest.written": "a new manifest in place, what follows it not done",
    "backend.writing": "a vector file written under its temporary name, not renamed",
    "backend.rows-writing": "an HNSW graph saved, its row ids not",
    "backend.sealing": "a generation's vector files in place, their checksums not written",
    "augmentation.writing": "a database-side augmentation pass written inside its transaction, not committed",
    "upgrade.database-upgraded": "an old index's database upgraded to the next format, its manifest not",
}

ARMED = os.environ.get(CRASH_AT)  # read once, at import (a process that forks after importing sets ARMED itself)
_visits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Die here, at once and without clean-up, when LOOKALIKE_CRASH_AT names this point."""
    if ARMED is not None:
        _crash_if_due(name, ARMED)


def _crash_if_due(name: str, wanted: str) -> None:
    target, _, visit = wanted.partition("@")
    if target != name:
        return
    _visits[name] = _visits.get(name, 0) + 1
    if _visits[name] == int(visit or 1):
        os.kill(os.getpid(), signal.SIGKILL)


# --- a full disk ----------------------------------------------------------------------------
FULL = {errno.ENOSPC: "no space left on the device", errno.EFBIG: "a file grew past the size this file system "
        "or this process's limit allows", errno.EDQUOT: "the disk quota is used up"}
SQLITE_FULL = 13  # SQLite's primary result codes: "database or disk is full", "disk I/O error"
SQLITE_IOERR = 10
ROOM_NEEDED = 1 << 20  # less free space than this on the index's file system counts as full


class DiskFullError(OSError):
    """A write that found no room: the index keeps its last committed state; free space and run again."""

    def __str__(self) -> str:
        return str(self.strerror)


def disk_full(error: BaseException, folder: Path) -> DiskFullError | None:
    """`error` as a DiskFullError when a full disk caused it (an OSError, a SQLite or a FAISS error), else None."""
    if isinstance(error, DiskFullError):
        return error
    code = _full_errno(error, folder)
    if code is None:
        return None
    return DiskFullError(code, f"cannot write to {folder}: {FULL[code]} ({os.strerror(code)}). The index keeps "
                               "its last committed state: free some space and run the command again to finish")


@contextmanager
def disk_full_reported(folder: Path, writer: bool = True) -> Iterator[None]:
    """Run a write into `folder`: a full disk comes out as DiskFullError and, for the index's writer (who owns
    them), the half-written temporary files are removed: each failed run must not take more of the missing space.
    A read-only or forbidden folder comes out as UnwritableError."""
    try:
        yield
    except Exception as error:
        full = disk_full(error, folder)
        if full is None:
            problem = unwritable(error, folder)
            if problem is None:
                raise
            raise problem from error
        if writer:
            drop_partial_files(folder)
        raise full from error


def storage_problem(error: BaseException, folder: Path) -> OSError | None:
    """`error` as what is wrong with the disk under `folder` (full, read-only, forbidden), or None when it is not
    the disk: an error to report as such before anyone calls a file damaged."""
    return disk_full(error, folder) or unwritable(error, folder)


# --- a disk that may not be written ---------------------------------------------------------------
UNWRITABLE = {errno.EROFS: "the file system is read-only", errno.EACCES: "this process may not write there "
              "(permission denied)", errno.EPERM: "this process may not write there (operation not permitted)"}
SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN = 3, 8, 14


class UnwritableError(OSError):
    """The index folder cannot be written (a read-only file system, missing permissions): nothing is damaged."""

    def __str__(self) -> str:
        return str(self.strerror)


def unwritable(error: BaseException, folder: Path) -> UnwritableError | None:
    """`error` as an UnwritableError when a read-only file system or missing permissions caused it, else None."""
    if isinstance(error, UnwritableError):
        return error
    code = _unwritable_errno(error, folder)
    if code is None:
        return None
    return UnwritableError(code, f"cannot write to {folder}: {UNWRITABLE[code]} ({errno.errorcode[code]}). "
                                 "The index is intact; lookalike writes beside its database even to search (the "
                                 "write-ahead log): make the folder writable, or copy the index to a writable disk")


def _unwritable_errno(error: BaseException, folder: Path) -> int | None:
    if isinstance(error, OSError) and error.errno in UNWRITABLE:
        return error.errno
    sqlite_code = getattr(error, "sqlite_errorcode", None)
    if sqlite_code is None or sqlite_code & 0xFF not in (SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_IOERR):
        return None
    return _why_unwritable(Path(folder))  # SQLite does not say which errno: look at the folder


def _why_unwritable(folder: Path) -> int | None:
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return errno.EROFS
        files = [folder, *(p for p in folder.iterdir() if p.is_file())]
    except OSError:
        return None
    return None if all(os.access(p, os.W_OK) for p in files) else errno.EACCES


def drop_partial_files(folder: Path) -> None:
    """Remove the half-written temporary files (NAME.partial...) a failed write left in `folder`."""
    for partial in Path(folder).glob("*.partial*"):
        partial.unlink(missing_ok=True)


def _full_errno(error: BaseException, folder: Path) -> int | None:
    if isinstance(error, OSError) and error.errno in FULL:
        return error.errno
    sqlite_code = getattr(error, "sqlite_errorcode", None)
    if sqlite_code is not None and sqlite_code & 0xFF == SQLITE_FULL:
        return errno.ENOSPC
    if sqlite_code is not None and sqlite_code & 0xFF == SQLITE_IOERR:  # SQLite does not say which errno
        return _out_of_room(folder)
    message = str(error)  # FAISS (a RuntimeError) quotes the C library's strerror
    return next((code for code in FULL if os.strerror(code) in message), None)


def _out_of_room(folder: Path) -> int | None:
    """Why a write into `folder` failed when only "I/O error" is known: a file system with (almost) no free
    space, or a limit on the size of the files this process writes (RLIMIT_FSIZE); None when neither."""
    try:
        if shutil.disk_usage(folder).free < ROOM_NEEDED:
            return errno.ENOSPC
    except OSError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return errno.EFBIG if soft != resource.RLIM_INFINITY else None
