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

from lookalike.errors import NotFoundError
from lookalike.files import read_beneath
from lookalike.index import IndexBusyError, IndexReport
from lookalike.ingest import Reader
from lookalike.web.journal import KEPT_JOBS, Entry, Recovered
from lookalike.web.registry import ServedIndex
from lookalike.web.shown import report_json
from lookalike.web.uploads import discard_unindexed

CHUNK = 64  # images added per write lock: searches wait at most about one chunk's embedding time
BUSY_WAIT_SECONDS = 300.0  # how long a job waits for another process's write to the index before it fails
BUSY_RETRY_SECONDS = 0.5
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
                  uploads: bool = False, batch: Entry | None = None) -> Job:
        """Queue an addition, written in the index's journal first (a crash from here on does not lose it). With
        `roots`, each file must still lie under one when it is read (a link swapped in after the request was
        checked is refused); `uploads` are the server's own copies, deleted if not indexed, journalled as `batch`."""
        job = Job(uuid.uuid4().hex, served.name, len(paths))
        if batch is not None:
            served.journal.accept(batch, job.id)
        else:
            served.journal.record_job(job.id, paths, roots, uploads)
        self._queue(job, served, Work(list(paths), None if roots is None else list(roots), uploads))
        return job

    def resume(self, served: ServedIndex) -> Recovered:
        """Take over what a server that died left in the index's journal: its unfinished jobs run again under
        their ids, its finished ones answer as they did. Call once per index, before serving writes."""
        recovered = served.journal.recover(served.index)
        with self._lock:
            for entry in recovered.finished:
                self._jobs[entry.id] = RecordedJob(entry.outcome | {"index": served.name})
        for entry in recovered.unfinished:
            roots = None if entry.roots is None else [Path(r) for r in entry.roots]
            self._queue(Job(entry.id, served.name, len(entry.paths)), served,
                        Work([Path(p) for p in entry.paths], roots, entry.uploads))
        if recovered.unfinished or recovered.removed_uploads or recovered.adopted_uploads:
            log.warning("journal recovered", extra={"index": served.name, "jobs_resumed": len(recovered.unfinished),
                                                    "uploads_removed": recovered.removed_uploads,
                                                    "uploads_adopted": recovered.adopted_uploads})
        return recovered

    def _queue(self, job: Job, served: ServedIndex, work: Work) -> None:
        with self._lock:
            self._jobs[job.id] = job
        context = contextvars.copy_context()  # the job's log lines carry the id of the request that started it
        self._worker.submit(context.run, self._run, job, served, work)

    def get(self, job_id: str) -> Job | RecordedJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"job {job_id!r} is unknown to this server. It answers for every job of the indexes it "
                           f"serves that is queued or running, across restarts, and for the last {KEPT_JOBS} "
                           "finished ones of each; an id from another server or of a deleted index is unknown. "
                           "What an index holds now: GET /api/indexes/NAME/images")
        return job

    def all(self) -> list[Job | RecordedJob]:
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
            self._add_when_free(job, served, work)
            job.status = "done"
        except Exception as error:  # the job records why; the server keeps serving
            log.exception("job failed", extra={"job": job.id})
            try:
                if work.uploads:  # refused before its run began (the index busy): no upload left without an id
                    with served.lock.writing():
                        discard_unindexed(work.paths, served.index)
            finally:  # said failed once its uploads are gone: a client that saw it failed finds no file left
                job.status, job.error = "failed", f"{type(error).__name__}: {error}"
        finally:
            job.finished = time.time()
            served.journal.finish_job(job.id, job.status, job.to_dict())
            log.info("job finished", extra={"job": job.id, "status": job.status, "added": job.report.added,
                                            "failed": job.report.failed})

    def _add_when_free(self, job: Job, served: ServedIndex, work: Work) -> None:
        """The job's run; while another process writes the index (IndexBusyError before anything was added), it
        waits its turn, up to BUSY_WAIT_SECONDS: an acknowledged job is not dropped for a moment's conflict."""
        deadline = time.monotonic() + BUSY_WAIT_SECONDS
        while True:
            try:
                self._add_in_chunks(job, served, work)
                return
            except IndexBusyError:
                if job.done or time.monotonic() > deadline:
                    raise
                time.sleep(BUSY_RETRY_SECONDS)


@dataclass(frozen=True)
class RecordedJob:
    """A job an earlier server process ran to its end: it answers as it did then (from the journal)."""

    answer: dict[str, Any]

    @property
    def index(self) -> str:
        return str(self.answer["index"])

    @property
    def status(self) -> str:
        return str(self.answer["status"])

    @property
    def created(self) -> float:
        return float(self.answer["created"])

    def to_dict(self) -> dict[str, Any]:
        return self.answer



