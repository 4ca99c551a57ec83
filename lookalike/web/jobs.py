"""Long additions as background jobs: one worker, work in chunks so searches run in between, progress by id."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lookalike.files import read_beneath
from lookalike.index import IndexReport
from lookalike.ingest import Reader
from lookalike.web.registry import ServedIndex
from lookalike.web.shown import report_json
from lookalike.web.uploads import discard_unindexed

CHUNK = 64  # images added per write lock: searches wait at most about one chunk's embedding time
log = logging.getLogger("lookalike.web")


@dataclass(frozen=True)
class Work:
    """What one job adds: files, the roots they must still lie under when read (None: any), whether they are uploads."""

    paths: list[Path]
    roots: list[Path] | None
    uploads: bool

    def reader(self) -> Reader | None:
        """How the job's files are read: beneath an allowed root through no link (a folder swapped for a link
        after the request was checked is refused when the file is opened, not before), or by path."""
        roots = self.roots
        return None if roots is None else lambda path: read_beneath(roots, path)


@dataclass
class Job:
    id: str
    index: str
    total: int
    status: str = "queued"  # queued, running, done, failed
    done: int = 0
    report: IndexReport = field(default_factory=IndexReport)
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "index": self.index, "status": self.status, "done": self.done, "total": self.total,
            "progress": round(self.done / self.total, 4) if self.total else 1.0,
            "report": report_json(self.report), "error": self.error,
            "created": self.created, "finished": self.finished,
        }


class JobQueue:
    """Runs additions one after another in a worker thread and remembers every job of this process."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookalike-job")
        self._lock = threading.Lock()

    def add_files(self, served: ServedIndex, paths: Sequence[Path], roots: Sequence[Path] | None = None,
                  uploads: bool = False) -> Job:
        """Queue an addition. With `roots`, each file must still lie under one when it is read (a link swapped
        in after the request was checked is refused); `uploads` are the server's own copies, deleted if not indexed."""
        job = Job(uuid.uuid4().hex, served.name, len(paths))
        with self._lock:
            self._jobs[job.id] = job
        context = contextvars.copy_context()  # the job's log lines carry the id of the request that started it
        work = Work(list(paths), None if roots is None else list(roots), uploads)
        self._worker.submit(context.run, self._run, job, served, work)
        return job

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(f"no job with id {job_id!r}")
        return job

    def all(self) -> list[Job]:
        return sorted(self._jobs.values(), key=lambda j: j.created)

    def busy(self, index_name: str) -> bool:
        return any(j.index == index_name and j.status in ("queued", "running") for j in self._jobs.values())

    def shutdown(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _add_in_chunks(job: Job, served: ServedIndex, work: Work) -> None:
        """One indexing run, written a chunk per write lock so searches answer in between; it ends once
        (so the index's policy, such as the default PCA, sees the whole job, as `lookalike index` would)."""
        paths = work.paths
        with served.lock.writing():
            served.index.expect(len(paths))
            run = served.index.sync(job.report)
        try:
            for start in range(0, len(paths), CHUNK):
                chunk = paths[start:start + CHUNK]
                with served.lock.writing():
                    run.embed(chunk, read=work.reader())
                    run.commit()
                job.done += len(chunk)
        finally:
            with served.lock.writing():
                try:
                    run.finish()
                finally:
                    if work.uploads:
                        discard_unindexed(paths, served.index)

    def _run(self, job: Job, served: ServedIndex, work: Work) -> None:
        job.status = "running"
        log.info("job started", extra={"job": job.id, "index": job.index, "total": job.total})
        try:
            self._add_in_chunks(job, served, work)
            job.status = "done"
        except Exception as error:  # the job records why; the server keeps serving
            job.status, job.error = "failed", f"{type(error).__name__}: {error}"
            log.exception("job failed", extra={"job": job.id})
        finally:
            job.finished = time.time()
            log.info("job finished", extra={"job": job.id, "status": job.status, "added": job.report.added,
                                            "failed": job.report.failed})



