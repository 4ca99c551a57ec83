"""Server-side paths a client may name: only inside the configured allowed roots, reached through no link."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lookalike.errors import RequestError
from lookalike.files import UnsafePathError, root_of, walk_media
from lookalike.video import is_media_path


class RefusedPathError(Exception):
    """A path outside every allowed root (or no roots configured)."""


def inside(path: str | os.PathLike[str], roots: Sequence[Path]) -> bool:
    """Whether the path names something under a root with no link below the root (checked now; the job reads
    each file again beneath its root through no link, so a swap made after this check is refused then)."""
    try:
        root = root_of(path, roots)
    except UnsafePathError:
        return False
    relative = Path(os.path.abspath(path)).relative_to(root)
    return not any(os.path.islink(root.joinpath(*relative.parts[:depth]))
                   for depth in range(1, len(relative.parts) + 1))


def images_under_roots(requested: Sequence[str], roots: Sequence[Path]) -> list[Path]:
    """Image and video files named by the request (files or folders), each checked to live under an allowed root."""
    if not roots:
        raise RefusedPathError("adding by server-side path is disabled (start the server with --allowed-roots DIR)")
    found: list[Path] = []
    for text in requested:
        if "\x00" in text or not os.path.isabs(text):
            raise RefusedPathError(f"{text!r}: give an absolute path under an allowed root")
        if not inside(text, roots):
            raise RefusedPathError(f"{text}: outside the allowed roots (or reached through a link)")
        path = Path(text)
        if path.is_dir():
            found += [p for p in walk_media(path) if inside(p, roots)]  # links leading out are skipped
        elif path.is_file():
            if not is_media_path(path):
                raise RequestError(f"{text}: not an image or video file (by extension)")
            found.append(path)
        else:
            raise FileNotFoundError(f"{text}: no such file or folder")
    return list(dict.fromkeys(found))  # a file named twice, or also inside a folder named, is added once
