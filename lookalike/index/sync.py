"""The one sync algorithm: keep an index in step with files on disk (local and Ray ingestion share it).

    plan       sort files as the embedder asks for them: unchanged (skipped), moved or copied
               (stored with the vector of the same content, not embedded), to embed
    vanished   drop the images under a synced folder whose files are gone
    store      apply embedded batches (add by path, or replace the vector of a known path)
    commit     every COMMIT_EVERY images, so a crash redoes at most that much work
    finish     commit, save the searchable copy, log the failures in the index folder

A run holds the index's writer lock from its start until `finish` (or `close`, which drops what was
not committed yet); `with index.sync() as run:` finishes when the block ends and closes if it raises.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.capture import Capture
from lookalike.embedders import Embedder
from lookalike.faults import crash_point, disk_full_reported
from lookalike.files import Fingerprint, content_hash, stat_file
from lookalike.index.folder import IndexFolder
from lookalike.index.frames import embed_videos, frames_by_video
from lookalike.index.labels import LabelImport
from lookalike.index.store import NewImage, VectorStore
from lookalike.ingest import Failure, Prepared, Reader, embed_files
from lookalike.video import file_of, frames_per_minute_of, is_media_path, is_video_path

COMMIT_EVERY = 256  # images per transaction: at most this much work is redone after a crash

Progress = Callable[[int, int], None]  # (images done, images to do)


@dataclass
class IndexReport:
    """What one indexing run did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    reused: int = 0  # renamed, moved or copied files whose vector was reused without embedding
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    reduction: str | None = None  # the reduction this run fitted (the default PCA when the index grew past it)
    labels: LabelImport | None = None  # what a labels.csv at the indexed folder's top gave (add_folder)

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def handled(self) -> int:
        """Files dealt with so far, in any way (a reused vector counts as added or updated)."""
        return self.added + self.updated + self.unchanged + self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added, "updated": self.updated, "unchanged": self.unchanged, "removed": self.removed,
            "reused": self.reused, "failed": self.failed, "seconds": round(self.seconds, 3),
            "reduction": self.reduction, "labels": self.labels.to_dict() if self.labels else None,
            "failures": [{"path": os.fsdecode(f.path), "reason": f.reason} for f in self.failures],
        }


class Sync:
    """One indexing run. Made by ImageIndex.sync(); `finish` ends it (commit, save, log, and the index's
    policy such as the default reduction, applied once per run: a run split into chunks ends as one).
    `on_close` runs once when the run ends either way (ImageIndex releases its writer lock there)."""

    def __init__(self, store: VectorStore, folder: IndexFolder, embedder: Embedder, report: IndexReport,
                 on_finish: Callable[[IndexReport], None] = lambda report: None,
                 on_close: Callable[[], None] = lambda: None):
        self.store = store
        self.embedder = embedder
        self.folder = folder
        self.report = report
        self.on_finish = on_finish
        self.on_close = on_close
        self.closed = False
        self.started = time.perf_counter()
        self.digests: dict[Path, str] = {}  # content hashes computed while planning, so files are read once
        self.since_commit = 0

    def __enter__(self) -> Sync:
        return self

    def __exit__(self, error_type: type[BaseException] | None, *exc: object) -> None:
        if error_type is None and not self.closed:
            self.finish()
        else:
            self.close()

    # --- embed ------------------------------------------------------------------------------
    def embed(self, paths: Sequence[Path], progress: Progress | None = None, read: Reader | None = None,
              frames_per_minute: int | None = None) -> None:
        """Plan `paths`, embed what needs it (decoding in threads while the network runs) and store it.
        A long run may call this once per chunk, committing in between, and finish once at the end.
        With `read` (files confined beneath roots), every file is opened only through it, and what is stored
        (size, time, digest) is what was read from the descriptor whose bytes were decoded. Videos among the
        paths are indexed as their keyframes, at most `frames_per_minute` (lookalike.video); progress counts files."""
        videos = [p for p in paths if is_video_path(p)]
        if videos:
            photos = [p for p in paths if not is_video_path(p)]
            self.embed(photos, progress and (lambda done, _: progress(done, len(paths))), read)
            counted = iter(range(len(photos) + 1, len(paths) + 1))
            embed_videos(self, videos, read, frames_per_minute_of(frames_per_minute),
                         lambda: progress and progress(next(counted), len(paths)))
            return
        handled_before = self.report.handled
        planned = self.plan(paths) if read is None else self._plan_read(paths, read)
        for batch in embed_files(self.embedder, planned, read=read):
            self.fail(batch.failures)
            if read is None:
                self.store_files([(i.path, i.width, i.height, i.capture) for i in batch.images], batch.vectors)
            else:
                self.store_images([_described(i) for i in batch.images], batch.vectors)
            if progress:
                progress(self.report.handled - handled_before, len(paths))

    def embed_named(self, paths: Sequence[Path], progress: Progress | None = None,
                    frames_per_minute: int | None = None) -> None:
        """embed files named one by one (add_files): one that is neither a photo nor a video is a failure."""
        self.fail(Failure(p, "not a supported image or video type (by extension)") for p in paths
                  if not is_media_path(p) and p.exists())
        self.embed([p for p in paths if is_media_path(p) or not p.exists()], progress,
                   frames_per_minute=frames_per_minute)

    # --- plan -------------------------------------------------------------------------------
    def plan(self, paths: Iterable[Path], remember_hashes: bool = True) -> Iterator[Path]:
        """The files whose vectors must be computed, found as the embedder asks for them (so sorting a
        million files overlaps embedding instead of delaying it). Unchanged files are counted; moved
        or copied ones are stored with the vector of the same content already indexed. The content
        hashes computed here are kept for store_files unless whoever embeds hashes the files itself."""
        self._check_open()
        for path in paths:
            if self._needs_embedding(path, remember_hashes):
                yield path

    def _plan_read(self, paths: Iterable[Path], read: Reader) -> Iterator[Path]:
        """plan, with every file fingerprinted through `read`: one that cannot be read is left to the decoder,
        which reads it again the same way and reports why."""
        self._check_open()
        for path in paths:
            try:
                found = read(path).fingerprint
            except OSError:
                yield path
                continue
            if self._known_or_reused(path, found):
                continue
            yield path

    def _needs_embedding(self, path: Path, remember_hashes: bool) -> bool:
        stat = stat_file(path)
        if stat is None:
            return True  # the decoder reports exactly what is wrong with it
        known = self.store.record_by_path(os.path.abspath(path))
        if known and known.size == stat.size and known.mtime == stat.mtime:
            self.report.unchanged += 1
            return False
        try:
            digest = content_hash(path)
        except OSError:
            return True
        if remember_hashes:
            self.digests[path] = digest
        return not self._known_or_reused(path, Fingerprint(stat.size, stat.mtime, digest))

    def _known_or_reused(self, path: Path, found: Fingerprint) -> bool:
        """Whether a file needs no embedding: its content is indexed under its path (unchanged) or under another
        (its vector is reused, stored here under this path)."""
        known = self.store.record_by_path(os.path.abspath(path))
        if known and known.content_hash == found.digest:
            if (known.size, known.mtime) != (found.size, found.mtime):
                self.store.touch(known.id, found.size, found.mtime)
            self.report.unchanged += 1
            self.digests.pop(path, None)
            return True
        source = self.store.record_for_hash(found.digest)
        if source is None:
            return False
        self.digests.pop(path, None)
        image = NewImage(os.path.abspath(path), found.digest, found.size, found.mtime, source.width, source.height,
                         source.capture.exif_only())  # the same bytes, the same EXIF; dated by this file if none
        self.store_images([image], self.store.vectors([source.id]))
        self.report.reused += 1
        return True

    def plan_uris(self, uris: Sequence[str]) -> list[str]:
        """Remote files (URIs) not indexed yet; an indexed URI counts as unchanged."""
        known = [uri for uri in uris if self.store.record_by_path(uri) is not None]
        self.report.unchanged += len(known)
        indexed = set(known)
        return [uri for uri in uris if uri not in indexed]

    def remove_vanished(self, folder: str | os.PathLike[str], seen: Iterable[str | os.PathLike[str]]) -> None:
        """Drop the images under `folder` whose files were not seen by this run."""
        self._check_open()
        present = {os.path.abspath(p) for p in seen}
        prefix = os.path.join(os.path.abspath(folder), "")
        vanished = [r.id for r in self.store.records() if r.path.startswith(prefix) and file_of(r.path) not in present]
        self.report.removed += self.store.remove(vanished)

    def remove_files(self, files: Iterable[str | os.PathLike[str]]) -> None:
        self._check_open()
        ids: list[int] = []
        videos = None  # each video's frames, read once a video is named
        for path in files:
            absolute = os.path.abspath(path)
            record = self.store.record_by_path(absolute)
            if record is None and is_video_path(path):  # a video is removed as its frames
                videos = frames_by_video(self.store.records()) if videos is None else videos
                found = [frame.id for frame in videos.get(absolute, [])]
            else:
                found = [] if record is None else [record.id]
            if not found:
                self.report.failures.append(Failure(Path(path), "not in the index"))
            ids += found
        self.report.removed += self.store.remove(ids)

    # --- store --------------------------------------------------------------------------------
    def store_files(self, files: Sequence[tuple[Path, int, int, Capture]], vectors: np.ndarray) -> None:
        """Embedded local files (path, width, height, capture) with their vectors; size, time and hash read here."""
        images, rows = [], []
        for row, (path, width, height, capture) in enumerate(files):
            image = self._describe(path, width, height, capture)
            if image is not None:
                images.append(image)
                rows.append(row)
        self.store_images(images, np.asarray(vectors)[rows])

    def store_images(self, images: Sequence[NewImage], vectors: np.ndarray) -> None:
        """Add each image by path, or give a known path its new content and vector; commit when due."""
        self._check_open()
        new, new_rows = [], []
        last_row = {image.path: row for row, image in enumerate(images)}  # a path given twice: its last version
        for row, image in enumerate(images):
            if last_row[image.path] != row:
                continue
            known = self.store.record_by_path(image.path)
            if known is None:
                new.append(image)
                new_rows.append(row)
            else:
                self.store.replace(known.id, image, vectors[row])
                self.report.updated += 1
        if new:
            self.store.add(new, np.asarray(vectors)[new_rows])  # one batch: one backend insert
            self.report.added += len(new)
        self.since_commit += len(images)
        if self.since_commit >= COMMIT_EVERY:
            self.commit()

    def fail(self, failures: Iterable[Failure]) -> None:
        self.report.failures.extend(failures)

    def _describe(self, path: Path, width: int, height: int, capture: Capture) -> NewImage | None:
        stat = stat_file(path)
        if stat is None:
            self.report.failures.append(Failure(path, "file disappeared while indexing"))
            return None
        try:
            digest = self.digests.pop(path, None) or content_hash(path)
        except OSError as error:
            self.report.failures.append(Failure(path, f"unreadable: {error}"))
            return None
        return NewImage(os.path.abspath(path), digest, stat.size, stat.mtime, width, height, capture)

    # --- commit and finish --------------------------------------------------------------------
    def commit(self) -> None:
        self._check_open()
        self.store.commit()
        self.since_commit = 0

    def finish(self) -> IndexReport:
        """Commit, save, apply the index's policy and log the failures; the run ends even if one of them fails."""
        try:
            self.commit()
            crash_point("sync.saving")
            self.store.save()
            crash_point("sync.finishing")
            self.on_finish(self.report)
            self.report.seconds = time.perf_counter() - self.started
            self._log_failures()
            return self.report
        finally:
            self.close()

    def close(self) -> None:
        """End the run without finishing it: what was not committed is dropped, the writer lock released."""
        if self.closed:
            return
        self.closed = True
        try:
            self.store.rollback()
        finally:
            self.on_close()

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("this indexing run has ended (finish or close was called): start another")

    def _log_failures(self) -> None:
        if not self.report.failures:
            return
        with disk_full_reported(self.folder.root), open(self.folder.failure_log, "a", encoding="utf-8",
                                                        errors="backslashreplace") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            for failure in self.report.failures:
                log.write(f"{stamp}\t{os.fsdecode(failure.path)}\t{failure.reason}\n")


def _described(image: Prepared) -> NewImage:
    """An image read by a Reader, as stored: its fingerprint is that of the bytes that were decoded."""
    assert image.fingerprint is not None
    found = image.fingerprint
    return NewImage(os.path.abspath(image.path), found.digest, found.size, found.mtime, image.width, image.height,
                    image.capture)
