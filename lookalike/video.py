"""Videos as keyframes: the only module that opens video files (through PyAV, which ships FFmpeg in its wheels).

A video is indexed as the frames where its scene changes, each a searchable image whose path is a media-fragment
URI, `clip.mp4#t=12.500` (the video and the frame's time in seconds), so the store, the searches and every door
keep one kind of record. A frame every SAMPLE_EVERY seconds is compared by its colours (a histogram of each RGB
channel, which moving the camera hardly changes): one that differs from the frame before by SCENE_CHANGE (a cut),
or from the last keyframe by DRIFT (a slow change: a fade, a long pan), is a keyframe; each minute of footage keeps
at most `per_minute` of them, the largest changes (the first frame always starts one). benchmarks/video.py measures
both thresholds on footage with known cuts.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
from PIL import Image

from lookalike.errors import RequestError
from lookalike.images import DecodedImage, ImageError, is_image_path

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".webm", ".mkv"})
DEFAULT_PER_MINUTE = 12  # keyframes a minute of footage may give at most ($LOOKALIKE_FRAMES_PER_MINUTE)
SAMPLE_EVERY = 0.5  # seconds between the frames compared
SCENE_CHANGE = 0.15  # histogram distance (0-1) from the frame before that is a cut (moving shots stay under 0.08)
DRIFT = 0.35  # histogram distance from the last keyframe that is a new scene even without a cut
COMPARED_SIDE = 32  # frames are compared at 32x32 pixels
BINS = 16  # per channel
MEDIA_TYPES = {".mp4": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm", ".mkv": "video/x-matroska"}
_FRAGMENT = re.compile(r"^(?P<video>.+\.(?:mp4|mov|webm|mkv))#t=(?P<time>\d+(?:\.\d+)?)$", re.IGNORECASE | re.DOTALL)

Source = str | os.PathLike[str] | BinaryIO  # a video file's path, or the file open for reading


class VideoError(ImageError):
    """A video that cannot be read (corrupt, truncated, no video stream, PyAV missing), with the reason why."""


@dataclass(frozen=True)
class Frame:
    """Where an indexed frame comes from: its video file and its time in seconds."""

    video: str
    time: float


@dataclass(frozen=True)
class Keyframe:
    time: float
    image: DecodedImage  # reduced towards the network's input side; width and height are the video's


def is_video_path(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_media_path(path: str | os.PathLike[str]) -> bool:
    """A photo or a video, by its extension."""
    return is_image_path(path) or is_video_path(path)


def frame_path(video: str | os.PathLike[str], time: float) -> str:
    """The path a frame is indexed under: the video's, with its time as a media fragment (`#t=12.500`)."""
    return f"{os.fsdecode(video)}#t={time:.3f}"


def frame_of(path: str | os.PathLike[str]) -> Frame | None:
    """The video and time of a frame's path; None for the path of a photo."""
    found = _FRAGMENT.match(os.fsdecode(path))
    return Frame(found["video"], float(found["time"])) if found else None


def file_of(path: str) -> str:
    """The file on disk an indexed path reads from: a frame's video, or the photo itself."""
    frame = frame_of(path)
    return frame.video if frame else path


def file_digest(content_hash: str) -> str:
    """The digest of the file an indexed hash was taken from: a frame's is its video's (`<digest>#t=12.500`)."""
    return content_hash.partition("#")[0]


def shown_time(seconds: float) -> str:
    """A frame's time as people read it: 0:12.5, 1:02:03.0."""
    minutes, rest = divmod(round(seconds, 1), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{rest:04.1f}" if hours else f"{minutes}:{rest:04.1f}"


def shown_frame(path: str) -> str:
    """A path as tables show it: a frame as `clip.mp4 @ 0:12.5`, a photo as it is."""
    frame = frame_of(path)
    return f"{frame.video} @ {shown_time(frame.time)}" if frame else path


def frames_per_minute_of(asked: int | None = None) -> int:
    """The cap asked for, else $LOOKALIKE_FRAMES_PER_MINUTE, else DEFAULT_PER_MINUTE; below 1 is a ValueError."""
    value = asked if asked is not None else int(os.environ.get("LOOKALIKE_FRAMES_PER_MINUTE", DEFAULT_PER_MINUTE))
    if value < 1:
        raise RequestError(f"frames per minute must be at least 1, not {value}")
    return value


# --- reading ---------------------------------------------------------------------------------------------
def keyframes(source: Source, target_side: int = 224, per_minute: int = DEFAULT_PER_MINUTE) -> Iterator[Keyframe]:
    """The frames where the video's scenes change, in time order, at most `per_minute` a minute of footage."""
    with _Opened(source) as (container, stream):
        yield from _kept(_scenes(_samples(container, stream), target_side), per_minute)


def frame_at(source: Source, time: float, target_side: int) -> DecodedImage:
    """The frame shown at `time` seconds (the first at or after it), reduced towards target_side."""
    with _Opened(source) as (container, stream):
        start, base = stream.start_time or 0, stream.time_base
        container.seek(start + int(time / base), stream=stream, backward=True, any_frame=False)
        half = 0.5 / float(stream.average_rate or 25)
        for frame in container.decode(stream):
            if _time(frame, stream) >= time - half:
                return _decoded(frame, target_side)
    raise VideoError(f"no frame at {shown_time(time)}: the video is shorter, or changed since it was indexed")


class _Opened:
    """A video open at its first video stream; whatever FFmpeg says of a bad file becomes a VideoError."""

    def __init__(self, source: Source):
        self.source, self.container = source, None

    def __enter__(self) -> tuple[Any, Any]:
        av = _av()
        try:
            self.container = av.open(self.source if not isinstance(self.source, os.PathLike) else
                                     os.fspath(self.source), mode="r")
        except (av.FFmpegError, ValueError, IndexError) as error:
            raise VideoError(f"corrupt or unreadable video: {_reason(error)}") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoError("no video stream in the file")
        stream = self.container.streams.video[0]
        stream.thread_type = "AUTO"  # FFmpeg's own decoding threads
        return self.container, stream

    def __exit__(self, error_type: type[BaseException] | None, error: BaseException | None, *rest: Any) -> None:
        self.container.close()
        if error is not None and isinstance(error, _av().FFmpegError | EOFError):
            raise VideoError(f"corrupt or truncated video: {_reason(error)}") from None


def _reason(error: BaseException) -> str:
    """What FFmpeg says, without the file name it appends (the report names the file)."""
    return getattr(error, "strerror", None) or str(error)


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise VideoError("reading videos needs the video extra: pip install 'lookalike[video]'") from None
    return av


@dataclass
class _Sample:
    time: float
    colours: npt.NDArray[np.float32]  # the share of its pixels in each histogram bin, channel after channel
    frame: Any  # the decoded av.VideoFrame


def _samples(container: Any, stream: Any) -> Iterator[_Sample]:
    """A decoded frame every SAMPLE_EVERY seconds, with its colours (the others are decoded and dropped)."""
    due = 0.0
    for frame in container.decode(stream):
        time = _time(frame, stream)
        if time + 1e-6 < due:
            continue
        due = (math.floor(time / SAMPLE_EVERY + 1e-6) + 1) * SAMPLE_EVERY
        small = frame.reformat(width=COMPARED_SIDE, height=COMPARED_SIDE, format="rgb24").to_ndarray()
        yield _Sample(time, _colours(small), frame)


def _colours(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    counts = [np.bincount(pixels[..., channel].ravel() // (256 // BINS), minlength=BINS) for channel in range(3)]
    return np.concatenate(counts).astype(np.float32) / (pixels.shape[0] * pixels.shape[1])


def _distance(first: npt.NDArray[np.float32], second: npt.NDArray[np.float32]) -> float:
    """0 for the same colours, 1 for none in common (half the L1 distance, averaged over the channels)."""
    return float(np.abs(first - second).sum()) / 6


def _scenes(samples: Iterable[_Sample], target_side: int) -> Iterator[tuple[float, Keyframe]]:
    """Each sample that is a cut from the one before, or has drifted from the last keyframe, with how much."""
    before: npt.NDArray[np.float32] | None = None
    kept: npt.NDArray[np.float32] | None = None
    for sample in samples:
        if before is None or kept is None:
            change = math.inf
        else:
            cut, drift = _distance(sample.colours, before), _distance(sample.colours, kept)
            change = cut if cut >= SCENE_CHANGE else drift if drift >= DRIFT else 0.0
        before = sample.colours
        if change > 0:
            kept = sample.colours
            yield change, Keyframe(sample.time, _decoded(sample.frame, target_side))


def _kept(scenes: Iterable[tuple[float, Keyframe]], per_minute: int) -> Iterator[Keyframe]:
    """The largest `per_minute` changes of each minute (0:00-0:59, 1:00-1:59, ...), in time order, each minute
    given as soon as it ends."""
    minute, found = 0, []
    for change, keyframe in scenes:
        if int(keyframe.time // 60) != minute:
            yield from _largest(found, per_minute)
            minute, found = int(keyframe.time // 60), []
        found.append((change, keyframe))
    yield from _largest(found, per_minute)


def _largest(found: list[tuple[float, Keyframe]], count: int) -> list[Keyframe]:
    chosen = sorted(found, key=lambda pair: -pair[0])[:count]
    return [keyframe for _, keyframe in sorted(chosen, key=lambda pair: pair[1].time)]


def _time(frame: Any, stream: Any) -> float:
    """The frame's time in seconds from the stream's start (its position when it carries no time)."""
    if frame.pts is None:
        raise VideoError("a frame without a time stamp: the video cannot be indexed by time")
    return float((frame.pts - (stream.start_time or 0)) * stream.time_base)


def _decoded(frame: Any, target_side: int) -> DecodedImage:
    """An RGB picture of the frame whose shorter side is target_side (or the frame's own, when smaller)."""
    width, height = frame.width, frame.height
    scale = min(1.0, target_side / min(width, height))
    pixels: Image.Image = frame.to_image(width=max(1, round(width * scale)), height=max(1, round(height * scale)))
    return DecodedImage(pixels=pixels, width=width, height=height)
