"""Finding photos on disk and fingerprinting their content."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lookalike.images import is_image_path
from lookalike.video import is_video_path


@dataclass(frozen=True)
class FileStat:
    path: Path
    size: int
    mtime: float


def walk_images(folder: str | os.PathLike[str], videos: bool = False) -> Iterator[Path]:
    """Image files (and videos, when asked) under a folder, recursively, in a stable order (symlinks included,
    even broken ones)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    for directory, subdirs, names in os.walk(folder, onerror=None, followlinks=False):
        subdirs.sort()
        for name in sorted(names):
            if is_image_path(name) or (videos and is_video_path(name)):
                yield Path(directory) / name


def walk_media(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """walk_images, with the videos (lookalike.video.VIDEO_EXTENSIONS) among them."""
    return walk_images(folder, videos=True)


def stat_file(path: Path) -> FileStat | None:
    """Size and mtime, or None when the file is gone or is a broken link."""
    try:
        info = path.stat()
    except OSError:
        return None
    return FileStat(path=path, size=info.st_size, mtime=info.st_mtime)


def content_hash(path: Path) -> str:
    """A digest of the bytes: equal files share it wherever they live."""
    with open(path, "rb") as handle:
        return stream_hash(handle)


def stream_hash(handle: BinaryIO) -> str:
    """content_hash of what is left to read in an open file."""
    digest = hashlib.blake2b(digest_size=20)
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def bytes_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=20).hexdigest()


# --- files read only beneath a root, through no link ------------------------------------------------
# O_NONBLOCK: a FIFO put where a photo was cannot hang the open; O_NOFOLLOW: a link in its place fails (ELOOP)
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePathError(PermissionError):
    """A path that leads outside its root, or through a symbolic link below it: refused, never followed."""


@dataclass(frozen=True)
class Fingerprint:
    """What identifies a file's content as indexed: size, modification time and digest of its bytes."""

    size: int
    mtime: float
    digest: str


@dataclass(frozen=True)
class FileContent:
    """The bytes of one file and the fingerprint of the descriptor they were read from."""

    data: bytes
    fingerprint: Fingerprint


def root_of(path: str | os.PathLike[str], roots: Sequence[str | os.PathLike[str]]) -> Path:
    """The innermost root that holds `path` by its name (no link resolved); UnsafePathError when none does."""
    absolute = os.path.abspath(path)
    holding = [os.path.abspath(root) for root in roots
               if os.path.commonpath([absolute, os.path.abspath(root)]) == os.path.abspath(root)]
    if not holding:
        raise UnsafePathError(f"{os.fsdecode(path)}: outside the allowed roots")
    return Path(max(holding, key=len))


def open_beneath(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> int:
    """A descriptor of the regular file `path`, opened one component at a time from the root's own descriptor
    (openat) without following a link anywhere below the root: what is read is what lies under the root now,
    whatever is renamed or swapped meanwhile. The root itself is the operator's and may be a link."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    parts = [] if relative == "." else relative.split(os.sep)
    if not parts or parts[0] == os.pardir:
        raise UnsafePathError(f"{os.fsdecode(path)}: not a file under {os.fsdecode(root)}")
    folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for depth, name in enumerate(parts[:-1], start=1):
            inner = _open_at(name, FOLDER_FLAGS, folder, Path(root, *parts[:depth]))
            os.close(folder)
            folder = inner
        descriptor = _open_at(parts[-1], FILE_FLAGS, folder, Path(path))
    finally:
        os.close(folder)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise UnsafePathError(f"{os.fsdecode(path)}: not a regular file")
    os.set_blocking(descriptor, True)
    return descriptor


def _open_at(name: str, flags: int, folder: int, shown: Path) -> int:
    try:
        return os.open(name, flags, dir_fd=folder)
    except OSError as error:
        if error.errno == errno.ELOOP or (error.errno in (errno.EMLINK, errno.ENOTDIR) and _is_link(name, folder)):
            raise UnsafePathError(f"{shown} is a symbolic link, which is not followed below a root") from None
        if error.errno == errno.ENOTDIR:  # a link, found as such by open, that was swapped back before lstat
            raise UnsafePathError(f"{shown} is no folder, or was a symbolic link (not followed below a root)") \
                from None
        raise


def _is_link(name: str, folder: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=folder).st_mode)
    except OSError:
        return False


def read_beneath(roots: Sequence[str | os.PathLike[str]], path: str | os.PathLike[str]) -> FileContent:
    """The bytes of a file under one of `roots` (see open_beneath), with their fingerprint taken from the same
    descriptor: the bytes hashed are the bytes decoded."""
    descriptor = open_beneath(root_of(path, roots), path)
    with os.fdopen(descriptor, "rb") as handle:
        found = os.fstat(descriptor)
        data = handle.read()
    return FileContent(data, Fingerprint(len(data), found.st_mtime, bytes_hash(data)))
