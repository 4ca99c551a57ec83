"""The server's journal of the writes it accepted, kept in the index folder, so a crash (kill -9, a power cut)
loses no upload it acknowledged and leaves none orphaned.

Each upload batch is written down before its files are saved, and crossed out once it is answered; each
background job is written down before its 202 answer and rewritten when it ends. Every entry names the server
process that owns it by a lock file that process holds (an flock: the kernel drops it when the process dies).
On start, a server takes over what dead owners left: the jobs they had acknowledged are queued again under the
same id (adding is idempotent: what was indexed stays, the rest is added), the uploads of batches they had not
answered are removed unless indexed, and any upload that is neither indexed nor named by a live entry goes.
Finished jobs stay in the journal (the last KEPT_JOBS), so their status survives a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from lookalike.faults import disk_full_reported
from lookalike.index import ImageIndex
from lookalike.index.folder import IndexFolder

KEPT_JOBS = 100  # finished jobs whose status a restarted server still answers, per index
OWNER_SUFFIX = ".owner"
log = logging.getLogger("lookalike.web")


@dataclass
class Entry:
    """One accepted write. A `batch` is an upload not yet answered; a `job` was answered with its id (202)."""

    id: str
    kind: Literal["batch", "job"]
    owner: str
    paths: list[str]  # absolute
    uploads: bool  # the paths are the server's own copies in INDEX/uploads (removed when not indexed)
    roots: list[str] | None = None  # a job's allowed roots, checked again when its files are read
    status: str = "queued"  # a job's: queued, running, done, failed
    outcome: dict[str, Any] = field(default_factory=dict)  # a finished job's done, total, report, error, times

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")


@dataclass(frozen=True)
class Recovered:
    """What a start found: jobs to run again (acknowledged, unfinished), finished jobs, and what was cleaned up."""

    unfinished: list[Entry]
    finished: list[Entry]
    removed_uploads: int
    adopted_uploads: int


class Journal:
    """The journal of one index folder as this server process keeps it (INDEX/journal/)."""

    def __init__(self, files: IndexFolder):
        self.files = files
        self.folder = files.journal
        self.owner = uuid.uuid4().hex
        self._lock = threading.Lock()
        self.folder.mkdir(exist_ok=True)
        self._owner_descriptor = _hold(self.folder / (self.owner + OWNER_SUFFIX))

    # --- entries this process writes ------------------------------------------------------------
    @contextlib.contextmanager
    def batch(self, paths: Iterable[Path]) -> Iterator[Entry]:
        """Upload files named by `paths`: write the entry first (a crash while saving them leaves them named
        here), cross it out when the caller is done, whatever happened. `accept` turns it into a job instead."""
        entry = Entry(uuid.uuid4().hex, "batch", self.owner, [os.path.abspath(p) for p in paths], uploads=True)
        self._write(entry)
        try:
            yield entry
        finally:
            if entry.kind == "batch":
                self._remove(entry.id)

    def accept(self, entry: Entry, job_id: str) -> None:
        """The batch's files are saved and it becomes a background job: from now on it is acknowledged."""
        self._remove(entry.id)
        entry.id, entry.kind = job_id, "job"
        self._write(entry)

    def record_job(self, job_id: str, paths: Iterable[Path], roots: Iterable[Path] | None, uploads: bool) -> Entry:
        entry = Entry(job_id, "job", self.owner, [os.path.abspath(p) for p in paths], uploads,
                      None if roots is None else [os.path.abspath(r) for r in roots])
        self._write(entry)
        return entry

    def finish_job(self, job_id: str, status: str, outcome: dict[str, Any]) -> None:
        """A job ended: keep its status and report (not its paths) for a restarted server, the last KEPT_JOBS."""
        entry = self._read(self._path(job_id))
        if entry is None:
            return
        entry.status, entry.outcome, entry.paths = status, outcome, []
        self._write(entry)
        self._prune()

    def close(self) -> None:
        with self._lock:
            if self._owner_descriptor is not None:
                os.close(self._owner_descriptor)
                self._owner_descriptor = None
                (self.folder / (self.owner + OWNER_SUFFIX)).unlink(missing_ok=True)

    # --- what dead servers left -----------------------------------------------------------------
    def recover(self, index: ImageIndex) -> Recovered:
        """Take over the entries of dead owners; remove uploads no one will index. Call before serving writes."""
        dead = {owner for owner in self._owners() if owner != self.owner and not _held(self._owner_file(owner))}
        unfinished, finished, removed, adopted = [], [], 0, 0
        for entry in self._entries():
            if entry.finished:
                finished.append(entry)
            elif entry.owner in dead and entry.kind == "job":
                entry.owner = self.owner  # acknowledged: this server finishes it
                self._write(entry)
                unfinished.append(entry)
            elif entry.owner in dead:  # a batch never answered: what it indexed stays, the rest goes
                kept = [p for p in entry.paths if index.record_by_path(p) is not None]
                adopted += len(kept)
                removed += _remove_unindexed(entry.paths, kept, self.files)
                self._remove(entry.id)
        for owner in dead:
            self._owner_file(owner).unlink(missing_ok=True)
        removed += self._remove_orphans(index)
        return Recovered(unfinished, sorted(finished, key=lambda e: e.outcome.get("created", 0)), removed, adopted)

    def _remove_orphans(self, index: ImageIndex) -> int:
        """Uploads that are neither indexed nor named by a live entry (a crash before journalling, a partial file)."""
        uploads = self.files.uploads
        if not uploads.is_dir():
            return 0
        named = {p for entry in self._entries() if not entry.finished for p in entry.paths}
        removed = 0
        for file in os.scandir(uploads):
            path = os.path.join(os.path.abspath(uploads), file.name)
            target = path.split(".partial")[0]
            if file.is_file(follow_symlinks=False) and target not in named and index.record_by_path(path) is None:
                Path(path).unlink(missing_ok=True)
                removed += 1
        return removed

    # --- files ----------------------------------------------------------------------------------
    def _path(self, entry_id: str) -> Path:
        return self.folder / f"{entry_id}.json"

    def _owner_file(self, owner: str) -> Path:
        return self.folder / (owner + OWNER_SUFFIX)

    def _owners(self) -> set[str]:
        return {name[:-len(OWNER_SUFFIX)] for name in os.listdir(self.folder) if name.endswith(OWNER_SUFFIX)} | {
            entry.owner for entry in self._entries()}

    def _entries(self) -> list[Entry]:
        found = (self._read(path) for path in sorted(self.folder.glob("*.json")))
        return [entry for entry in found if entry is not None]

    def _write(self, entry: Entry) -> None:
        """Atomically, and on the disk before the caller goes on (a power cut keeps it too: the point of a journal)."""
        path = self._path(entry.id)
        partial = path.with_name(path.name + ".partial")
        with self._lock, disk_full_reported(self.folder, writer=False):
            with open(partial, "w", encoding="utf-8") as out:
                json.dump(asdict(entry), out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, path)
            folder = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(folder)  # the rename itself
            finally:
                os.close(folder)

    def _read(self, path: Path) -> Entry | None:
        try:
            return Entry(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as error:  # a torn write of a crash, or not ours
            log.warning("journal entry %s is unreadable (%s); it is ignored", path, error)
            return None

    def _remove(self, entry_id: str) -> None:
        self._path(entry_id).unlink(missing_ok=True)

    def _prune(self) -> None:
        finished = [e for e in self._entries() if e.finished]
        finished.sort(key=lambda e: e.outcome.get("finished") or 0)
        for entry in finished[:-KEPT_JOBS]:
            self._remove(entry.id)


def _remove_unindexed(paths: Iterable[str], kept: list[str], files: IndexFolder) -> int:
    uploads = os.path.realpath(files.uploads)
    removed = 0
    for path in set(paths) - set(kept):
        for leftover in (path, path + ".partial"):
            if os.path.dirname(os.path.realpath(leftover)) == uploads and os.path.exists(leftover):
                os.unlink(leftover)
                removed += 1
    return removed


def _hold(path: Path) -> int:
    """An open descriptor holding the exclusive flock of `path`: this process is alive as long as it is held."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh random name: no one else holds it
    return descriptor


def _held(path: Path) -> bool:
    """Whether a live process holds the lock at `path` (False when there is no such file: its owner is gone)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
