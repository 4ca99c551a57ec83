"""The small JSON file that says what an index folder is and which model made it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from lookalike.faults import crash_point, disk_full_reported
from lookalike.index.folder import MANIFEST as FILE
from lookalike.version import __version__

FORMAT = "lookalike-index"
FORMAT_VERSION = 1


class IndexFormatError(Exception):
    """An index folder that is missing, damaged or written by a newer lookalike."""


def write_manifest(folder: Path, content: dict[str, Any]) -> None:
    """Replace the manifest atomically: readers see the old file or the new one, never half."""
    partial = folder / (FILE + ".partial")
    with disk_full_reported(folder):
        partial.write_text(json.dumps(content, indent=2, sort_keys=True))
    crash_point("manifest.writing")
    os.replace(partial, folder / FILE)
    crash_point("manifest.written")


def new_manifest(embedder_description: dict[str, Any], index_type: str = "flat-ip") -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "lookalike_version": __version__,
        "embedder": embedder_description,
        "index_type": index_type,
    }


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / FILE
    if not path.exists():
        raise IndexFormatError(f"{folder} is not a lookalike index (no {FILE}); create one with `lookalike index`")
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
        raise IndexFormatError(f"{path} is damaged or unreadable: {error}") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise IndexFormatError(f"{path} is not a lookalike index manifest")
    missing = [key for key in ("embedder", "index_type", "created") if key not in content]
    if missing:
        raise IndexFormatError(f"{path} is damaged: it lacks {', '.join(missing)}")
    if int(content.get("format_version", 0)) > FORMAT_VERSION:
        raise IndexFormatError(
            f"{folder} was written by a newer lookalike (format {content['format_version']}, "
            f"this version reads up to {FORMAT_VERSION}): upgrade lookalike"
        )
    return content
