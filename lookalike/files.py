"""Finding photos on disk and fingerprinting their content."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lookalike.images import is_image_path


@dataclass(frozen=True)
class FileStat:
    path: Path
    size: int
    mtime: float


def walk_images(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Image files under a folder, recursively, in a stable order (symlinks included, even broken ones)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    for directory, subdirs, names in os.walk(folder, onerror=None, followlinks=False):
        subdirs.sort()
        for name in sorted(names):
            if is_image_path(name):
                yield Path(directory) / name


def stat_file(path: Path) -> FileStat | None:
    """Size and mtime, or None when the file is gone or is a broken link."""
    try:
        info = path.stat()
    except OSError:
        return None
    return FileStat(path=path, size=info.st_size, mtime=info.st_mtime)


def content_hash(path: Path) -> str:
    """A digest of the bytes: equal files share it wherever they live."""
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bytes_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=20).hexdigest()
