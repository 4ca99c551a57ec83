"""Uploaded images: size limits, content sniffed by Pillow (never trusted from the name), saved into the index."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from lookalike.faults import DiskFullError, disk_full_reported
from lookalike.files import bytes_hash
from lookalike.index import ImageIndex
from lookalike.index.folder import IndexFolder

EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif", "GIF": ".gif",
              "HEIF": ".heic", "AVIF": ".avif"}


class UploadError(Exception):
    """An upload refused before decoding; `status` is the HTTP status that says why (413 or 422)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    format: str  # what Pillow found in the bytes: JPEG, PNG, ...
    width: int
    height: int

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


def check_upload(data: bytes, name: str, max_bytes: int, max_pixels: int) -> CheckedImage:
    """The bytes as an image of a supported format within the limits, or UploadError saying what is wrong."""
    if len(data) > max_bytes:
        raise UploadError(413, f"{name}: {len(data):,} bytes is more than the limit of {max_bytes:,} bytes")
    if not data:
        raise UploadError(422, f"{name}: empty upload (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                found, (width, height) = image.format, image.size
    except Image.DecompressionBombError:
        raise UploadError(422, f"{name}: too many pixels (decompression bomb refused)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise UploadError(422, f"{name}: not an image (the content is no JPEG, PNG, WebP, BMP, TIFF or GIF)") \
            from None
    if found not in EXTENSIONS:
        raise UploadError(422, f"{name}: image format {found} is not supported; use one of "
                                  f"{', '.join(sorted(EXTENSIONS))}")
    if width * height > max_pixels:
        raise UploadError(422, f"{name}: {width}x{height} is {width * height:,} pixels, more than the limit "
                                  f"of {max_pixels:,}")
    return CheckedImage(data, found, width, height)


def upload_path(image: CheckedImage, files: IndexFolder) -> Path:
    """Where an upload is saved: INDEX/uploads/ under a name made from the content (the same photo twice is one
    file), known before it is written so the journal can name it first."""
    return files.uploads / f"{bytes_hash(image.data)[:24]}{image.extension}"


def save_upload(image: CheckedImage, files: IndexFolder) -> Path:
    """Write the upload to its `upload_path`."""
    folder = files.uploads
    folder.mkdir(exist_ok=True)
    target = upload_path(image, files)
    if not target.exists():
        partial = target.with_suffix(target.suffix + ".partial")
        try:
            with disk_full_reported(folder, writer=False):  # a full disk is a 507, not a 500
                partial.write_bytes(image.data)
        except DiskFullError:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, target)
    return target


def discard_unindexed(saved: Iterable[Path], index: ImageIndex) -> None:
    """Delete the saved uploads that did not end up indexed (failed, or the run raised): no bytes without an id.
    Call it under the index's write lock, so an upload of the same bytes cannot be indexed in between."""
    for path in saved:
        if is_upload(path, index.files) and index.record_by_path(path) is None:
            path.unlink(missing_ok=True)


def is_upload(path: str | os.PathLike[str], files: IndexFolder) -> bool:
    """Whether a file is one this server saved into the index's uploads folder (and may delete)."""
    uploads = os.path.realpath(files.uploads)
    return os.path.dirname(os.path.realpath(path)) == uploads
