"""Bounded work per request: at most `slots` image decodes and embeddings at once (one per core by default),
so a burst of large uploads cannot take the machine's memory; a request that waits longer than `wait_seconds`
for a slot is refused with 503 and Retry-After. When the last busy slot is freed, the C heap is given back to
the system (glibc keeps freed decode buffers otherwise: 8 large GIFs left the server at 4.8 GB for good)."""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import HTTPException


def cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class WorkSlots:
    """A semaphore for the heavy part of a request (decode + embed), refusing when the queue is too long."""

    def __init__(self, slots: int, wait_seconds: float):
        self.slots = slots
        self.wait_seconds = wait_seconds
        self._free = threading.BoundedSemaphore(slots)
        self._busy = 0
        self._count_lock = threading.Lock()

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._free.acquire(timeout=self.wait_seconds):
            retry = max(1, math.ceil(self.wait_seconds))
            raise HTTPException(503, f"the server is busy decoding other images ({self.slots} at a time, none "
                                     f"free for {self.wait_seconds:g} s); try again in {retry} s",
                                headers={"Retry-After": str(retry)})
        with self._count_lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._count_lock:
                self._busy -= 1
                last = self._busy == 0
            self._free.release()
            if last:
                give_memory_back()


def _glibc(function: str) -> Any:
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), function) if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return None


MALLOC_TRIM, MALLOPT = _glibc("malloc_trim"), _glibc("mallopt")
M_MMAP_THRESHOLD = -3
LARGE = 4 << 20  # bytes: a buffer this large is mapped on its own and unmapped when freed


def give_memory_back() -> None:
    """Return the free pages of every malloc arena to the system (glibc's malloc_trim; a no-op elsewhere)."""
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)


def map_large_buffers() -> None:
    """Have glibc map every buffer of LARGE bytes or more on its own (a decoded photo's 16 MB blocks), so freeing
    it unmaps it. By default the threshold rises after the first such free, the blocks then come from one heap per
    request thread and stay there: 8 concurrent 6000x6000 GIFs with 2 decode slots peaked at 1,022 MiB, not
    the 334 of 2 decodes. For the server process (set before serving)."""
    if MALLOPT is not None:
        MALLOPT(M_MMAP_THRESHOLD, LARGE)
