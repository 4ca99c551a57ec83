"""Server-side paths a client may name: only inside the configured allowed roots, symlinks resolved first."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lookalike.files import walk_images
from lookalike.images import is_image_path


class RefusedPathError(Exception):
    """A path outside every allowed root (or no roots configured)."""


def inside(path: str | os.PathLike[str], roots: Sequence[Path]) -> bool:
    real = os.path.realpath(path)
    for root in roots:
        base = os.path.realpath(root)
        if os.path.commonpath([real, base]) == base:
            return True
    return False


def images_under_roots(requested: Sequence[str], roots: Sequence[Path]) -> list[Path]:
    """Image files named by the request (files or folders), each checked to live under an allowed root."""
    if not roots:
        raise RefusedPathError("adding by server-side path is disabled (start the server with --allowed-roots DIR)")
    found: list[Path] = []
    for text in requested:
        if "\x00" in text or not os.path.isabs(text):
            raise RefusedPathError(f"{text!r}: give an absolute path under an allowed root")
        if not inside(text, roots):
            raise RefusedPathError(f"{text}: outside the allowed roots")
        path = Path(text)
        if path.is_dir():
            found += [p for p in walk_images(path) if inside(p, roots)]  # links leading out are skipped
        elif path.is_file():
            if not is_image_path(path):
                raise ValueError(f"{text}: not an image file (by extension)")
            found.append(path)
        else:
            raise FileNotFoundError(f"{text}: no such file or folder")
    return list(dict.fromkeys(found))  # a file named twice, or also inside a folder named, is added once
