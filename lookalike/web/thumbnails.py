"""Thumbnails of indexed images, made with Pillow once and cached in INDEX/thumbnails/."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from lookalike.images import load_image
from lookalike.index import ImageRecord
from lookalike.index.folder import IndexFolder
from lookalike.web.frames import frame_picture, is_frame
from lookalike.web.originals import read_indexed


def cached_thumbnail(record: ImageRecord, files: IndexFolder, side: int) -> Path | None:
    """The thumbnail made earlier, if any (serving it decodes nothing)."""
    target = _thumbnail_path(record, files, side)
    return target if target.exists() else None


def thumbnail(record: ImageRecord, files: IndexFolder, side: int, roots: Sequence[Path]) -> Path:
    """A JPEG no larger than side x side; the name carries the content hash, so changed files get a new one.
    It is made from the indexed file, read beneath one of `roots`, only while that is still the file indexed
    (see originals); a video's frame is decoded from its video (see frames)."""
    folder, target = files.thumbnails, _thumbnail_path(record, files, side)
    if target.exists():
        return target
    pixels = frame_picture(record, roots, side) if is_frame(record) else \
        load_image(read_indexed(record, roots), target_side=side).pixels
    folder.mkdir(exist_ok=True)
    pixels.thumbnail((side, side), Image.Resampling.LANCZOS)
    partial = target.with_name(target.name + f".{uuid.uuid4().hex}.partial")
    pixels.save(partial, "JPEG", quality=85)
    os.replace(partial, target)
    return target


def _thumbnail_path(record: ImageRecord, files: IndexFolder, side: int) -> Path:
    return files.thumbnails / f"{record.id}-{record.content_hash[:16]}-{side}.jpg"
