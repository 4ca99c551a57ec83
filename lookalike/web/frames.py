"""Video frames served as pictures: a frame's record (`clip.mp4#t=12.500`) is decoded from its video, read like any
indexed file beneath a root through no link, and only while the video is still the one indexed (see originals)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from lookalike.index import ImageRecord
from lookalike.video import frame_at, frame_of
from lookalike.web.originals import open_indexed


def is_frame(record: ImageRecord) -> bool:
    return frame_of(record.path) is not None


def frame_picture(record: ImageRecord, roots: Sequence[Path], side: int | None = None) -> Image.Image:
    """The frame as an RGB picture whose shorter side is `side` (default: the video's own)."""
    frame = frame_of(record.path)
    assert frame is not None, f"not a video frame: {record.path}"
    with open_indexed(record, roots) as handle:
        return frame_at(handle, frame.time, side or min(record.width, record.height)).pixels


def frame_jpeg(record: ImageRecord, roots: Sequence[Path]) -> bytes:
    """The frame at the video's size, as a JPEG."""
    encoded = io.BytesIO()
    frame_picture(record, roots).save(encoded, "JPEG", quality=90)
    return encoded.getvalue()
