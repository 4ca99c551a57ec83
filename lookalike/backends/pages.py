"""Whether parts of a memory-mapped file are in the page cache (mincore), without reading them.

Re-ranking reads a few hundred scattered rows of a mapped file. When the kernel has dropped the file's pages
(memory pressure, a fresh boot), reading them one page fault at a time costs the disk's latency per row;
asking for them all at once first lets the disk read them in parallel. Probing a few rows tells which case
it is for a cost of microseconds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap

import numpy as np

PAGE = mmap.PAGESIZE


def _mincore():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        function = libc.mincore
    except (OSError, AttributeError):  # no libc with mincore (Windows)
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    function.restype = ctypes.c_int
    return function


_MINCORE = _mincore()


def can_probe() -> bool:
    return _MINCORE is not None


def all_resident(mapped: np.ndarray, offsets: np.ndarray) -> bool:
    """True when the page holding each byte offset of `mapped` (a memory map) is in RAM; True when unknown."""
    if _MINCORE is None or mapped.size == 0:
        return True
    start = mapped.ctypes.data
    flag = ctypes.c_ubyte()
    for offset in np.asarray(offsets, dtype=np.int64).tolist():
        page = (start + offset) & ~(PAGE - 1)
        if _MINCORE(page, PAGE, ctypes.byref(flag)) != 0:
            return True  # the kernel cannot say: act as if resident
        if not flag.value & 1:
            return False
    return True
