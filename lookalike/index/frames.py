"""Videos in an indexing run: each video's keyframes (lookalike.video) stored as images under media-fragment
paths (`clip.mp4#t=12.500`), found again by the video's size, time and digest, extracted again when the video
changed, dropped with it.

A frame's record carries its video's size and modification time and, as its content hash, the video's digest
with the frame's fragment (`<digest>#t=12.500`: one per frame, so no two frames look like copies of each other).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from lookalike.embedders import Embedder, Matrix
from lookalike.files import Fingerprint, content_hash, stat_file
from lookalike.index.rows import ImageRecord, NewImage
from lookalike.ingest import Failure, Reader
from lookalike.video import Keyframe, VideoError, file_digest, frame_of, frame_path, keyframes

if TYPE_CHECKING:
    from lookalike.index.store import VectorStore


class Counts(Protocol):
    unchanged: int
    removed: int


class VideoRun(Protocol):
    """What indexing videos needs of an indexing run (lookalike.index.sync.Sync is one)."""

    embedder: Embedder
    store: VectorStore
    report: Counts

    def fail(self, failures: Iterable[Failure]) -> None: ...

    def store_images(self, images: Sequence[NewImage], vectors: np.ndarray) -> None: ...

BATCH = 32  # keyframes embedded together


def embed_videos(run: VideoRun, videos: Sequence[Path], read: Reader | None, per_minute: int,
                 done: Callable[[], None]) -> None:
    """Index each video's keyframes, or count them unchanged; a video that cannot be read is a failure and keeps
    the frames it had. `done` is called after each video."""
    known = frames_by_video(run.store.records())
    for path in videos:
        _sync_video(run, Path(path), known.get(os.path.abspath(path), []), read, per_minute)
        done()


def frames_by_video(records: Iterable[ImageRecord]) -> dict[str, list[ImageRecord]]:
    """The indexed frames of each video, by the video's absolute path."""
    found: dict[str, list[ImageRecord]] = {}
    for record in records:
        frame = frame_of(record.path)
        if frame is not None:
            found.setdefault(frame.video, []).append(record)
    return found


def _sync_video(run: VideoRun, path: Path, known: list[ImageRecord], read: Reader | None, per_minute: int) -> None:
    try:
        content = read(path) if read is not None else None
        found = content.fingerprint if content is not None else _fingerprint(path, known)
        if found is None:
            run.report.unchanged += len(known)
            return
        if known and all(file_digest(r.content_hash) == found.digest for r in known):
            for record in known:
                run.store.touch(record.id, found.size, found.mtime)
            run.report.unchanged += len(known)
            return
        source = io.BytesIO(content.data) if content is not None else path
        kept, vectors = _embedded(run.embedder, keyframes(source, run.embedder.input_side, per_minute))
    except (OSError, VideoError) as error:
        run.fail([Failure(path, str(error) if isinstance(error, VideoError) else f"unreadable: {error}")])
        return
    _store(run, path, found, kept, vectors, known)


def _fingerprint(path: Path, known: list[ImageRecord]) -> Fingerprint | None:
    """The video's fingerprint, or None when its size and time are those its frames were indexed with."""
    stat = stat_file(path)
    if stat is None:
        raise VideoError("file not found (deleted or moved while indexing?)")
    if known and all((r.size, r.mtime) == (stat.size, stat.mtime) for r in known):
        return None
    return Fingerprint(stat.size, stat.mtime, content_hash(path))


Kept = tuple[float, int, int]  # a keyframe once embedded: its time, and the video's width and height


def _embedded(embedder: Embedder, found: Iterable[Keyframe]) -> tuple[list[Kept], Matrix]:
    """The keyframes' times and sizes (their pictures dropped once embedded) and their vectors, a batch at a time."""
    kept: list[Kept] = []
    vectors: list[Matrix] = []
    batch: list[np.ndarray] = []
    for keyframe in found:
        batch.append(embedder.preprocess(keyframe.image))
        kept.append((keyframe.time, keyframe.image.width, keyframe.image.height))
        if len(batch) == BATCH:
            vectors.append(embedder.embed_batch(np.stack(batch)))
            batch = []
    if batch:
        vectors.append(embedder.embed_batch(np.stack(batch)))
    if not kept:
        raise VideoError("no frame could be decoded")
    return kept, np.concatenate(vectors)


def _store(run: VideoRun, path: Path, found: Fingerprint, kept: list[Kept], vectors: Matrix,
           known: list[ImageRecord]) -> None:
    """The new frames in place of the old: a frame at a time already indexed is replaced, the others are
    added, and old frames at times no longer kept are removed."""
    video = os.path.abspath(path)
    images = [NewImage(frame_path(video, time), f"{found.digest}#t={time:.3f}", found.size, found.mtime, width,
                       height) for time, width, height in kept]
    paths = {image.path for image in images}
    run.report.removed += run.store.remove([r.id for r in known if r.path not in paths])
    run.store_images(images, vectors)
