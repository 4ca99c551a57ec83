"""Looking up whether pages of a mapped file are in memory (mincore), as re-ranking does before reading rows."""

from __future__ import annotations

import mmap

import numpy as np
import pytest

from lookalike.backends import pages


@pytest.fixture
def untouched():
    if not pages.can_probe():
        pytest.skip("this system has no mincore")
    return np.frombuffer(mmap.mmap(-1, 8 * pages.PAGE), dtype=np.uint8)  # anonymous pages: memory once written


def test_pages_never_written_are_not_resident_and_written_ones_are(untouched):
    view = untouched
    assert not pages.all_resident(view, np.array([3 * pages.PAGE + 10]))
    view[3 * pages.PAGE] = 1
    assert pages.all_resident(view, np.array([3 * pages.PAGE + 10]))


def test_one_missing_page_among_resident_ones_is_found(untouched):
    view = untouched
    view[0] = view[pages.PAGE] = 1
    assert pages.all_resident(view, np.array([0, pages.PAGE + 5]))
    assert not pages.all_resident(view, np.array([0, pages.PAGE + 5, 6 * pages.PAGE]))
