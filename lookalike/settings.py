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


def search_threads() -> int:
    """Threads one lone query may use: $LOOKALIKE_SEARCH_THREADS, 1 by default (batches use every core). Split
    between threads, a query waits for whichever thread the kernel put aside: with other work on 2 cores one IVF
    query took 24 ms on two threads and 1.7 ms on one."""
    return max(1, int(_number("LOOKALIKE_SEARCH_THREADS", 1)))


def guard_rows_bytes() -> int:
    """Memory a searching process may give the guard's rows of one index (lookalike.index.resident):
    $LOOKALIKE_GUARD_ROWS_MB, 1,024 MB by default (PCA to 128: about 1.7M images); 0 keeps none (searches read
    the database). Above it, searches read their rows from the database as they go."""
    return max(0, int(_number("LOOKALIKE_GUARD_ROWS_MB", 1024) * 2**20))


def _number(variable: str, default: float) -> float:
    """An environment variable's number, or `default` when it is unset; anything else is a clear error."""
    value = os.environ.get(variable)
    if value is None or not value.strip():
        return default
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"${variable} must be a number, not {value!r}") from None
