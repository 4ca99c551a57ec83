"""Where lookalike keeps things, overridable by environment variables."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Exported ONNX models and other derived files: $LOOKALIKE_CACHE or ~/.cache/lookalike."""
    configured = os.environ.get("LOOKALIKE_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lookalike"


def datasets_dir() -> Path:
    """The shared benchmark photos: $LOOKALIKE_DATASETS or ../shared/datasets."""
    return Path(os.environ.get("LOOKALIKE_DATASETS", "../shared/datasets"))
