"""Checksums of saved index files, so a damaged file is detected instead of searched.

Each backend seals the files it saves for a generation with a small JSON sidecar (size and
SHA-256 per file). On load, a missing sidecar, a missing file, a wrong size (truncation) or a
wrong digest (corruption) makes the copy unusable: the store rebuilds it from SQLite and says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from lookalike.faults import crash_point

log = logging.getLogger("lookalike")


def file_digest(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def seal(sidecar: Path, files: list[Path]) -> None:
    """Record size and digest of `files` (same folder as the sidecar), atomically."""
    crash_point("backend.sealing")
    content = {f.name: {"size": f.stat().st_size, "sha256": file_digest(f)} for f in files}
    partial = sidecar.with_name(sidecar.name + ".partial")
    partial.write_text(json.dumps(content, indent=2, sort_keys=True))
    os.replace(partial, sidecar)


def damage(sidecar: Path) -> str | None:
    """What is wrong with the sealed files, or None when every file matches its checksum."""
    if not sidecar.exists():
        return f"{sidecar.name} (the checksums) is missing"
    try:
        content = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"{sidecar.name} (the checksums) is damaged"
    for name, expected in content.items():
        path = sidecar.parent / name
        if not path.exists():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != expected["size"]:
            return f"{name} is truncated or extended ({size} bytes, expected {expected['size']})"
        if file_digest(path) != expected["sha256"]:
            return f"{name} is corrupted (checksum mismatch)"
    return None


def verified(sidecar: Path) -> bool:
    """True when the sealed files are intact; otherwise logs what is damaged and returns False."""
    problem = damage(sidecar)
    if problem is None:
        return True
    log.warning("lookalike: index copy in %s is damaged: %s; rebuilding it from the database",
                sidecar.parent, problem)
    return False
