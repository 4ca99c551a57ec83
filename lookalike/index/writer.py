"""One writer per index folder: an exclusive lock on a file in the folder, held while an index is written.

Two processes (or two ImageIndex objects in one process) writing one folder would interleave their
plans and commits: the same path inserted twice, a saved searchable copy missing the other's vectors.
The lock makes the second writer stop at once with IndexBusyError instead; searches never take it.
It is an flock on an open file, so the kernel drops it when the holder exits, even by a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lookalike.errors import LookalikeError


class IndexBusyError(LookalikeError, RuntimeError):
    """Another process (or another ImageIndex in this process) is writing the index folder; `pid` is the
    writer's process id when it could be read."""

    def __init__(self, message: str, pid: int | None = None):
        super().__init__(message)
        self.pid = pid


class LockFileError(OSError):
    """The writer lock's file cannot be a lock: something else (a folder) sits at its path."""


class WriterLock:
    """The right to write one index folder. Re-entrant for its owner (an indexing run that fits PCA
    when it finishes holds it once more), refused without waiting to anyone else."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._descriptor: int | None = None
        self._depth = 0
        self._mutex = threading.Lock()

    @property
    def held(self) -> bool:
        return self._depth > 0

    def acquire(self) -> None:
        with self._mutex:
            if self._depth == 0:
                self._take()
            self._depth += 1

    def release(self) -> None:
        """Give up one hold; the lock goes when the last one does (releasing an unheld lock does nothing)."""
        with self._mutex:
            if self._depth == 0:
                return
            self._depth -= 1
            if self._depth == 0:
                self._give_back()

    def release_all(self) -> None:
        with self._mutex:
            if self._depth:
                self._depth = 0
                self._give_back()

    @contextmanager
    def holding(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def _take(self) -> None:
        self._descriptor = _locked(self.path)

    def _give_back(self) -> None:
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is not None:
            os.ftruncate(descriptor, 0)  # no pid left behind to blame on the next refusal
            os.close(descriptor)  # closing the last descriptor of the open file drops the flock


def _locked(path: Path) -> int:
    """An open descriptor of `path` holding its exclusive flock, with this process's pid written in it."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except IsADirectoryError:
        raise LockFileError(f"{path} is a folder, not the lock file lookalike keeps there: nothing in it is "
                            f"lookalike's; move it away (or remove it if empty: rmdir {path}) and run again") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
        os.close(descriptor)
        raise IndexBusyError(_busy_message(path.parent, holder), int(holder) if holder.isdigit() else None) from None
    except BaseException:
        os.close(descriptor)
        raise
    os.ftruncate(descriptor, 0)
    with contextlib.suppress(OSError):  # a full disk: the flock holds all the same, the busy message lacks the pid
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    return descriptor


def _busy_message(folder: Path, holder: str) -> str:
    if holder == str(os.getpid()):
        who = f"another ImageIndex in this process (pid {holder})"
    else:
        who = f"another process (pid {holder})" if holder else "another process"
    return f"the index {folder} is being written by {who}: wait for it to finish, or retry later"
