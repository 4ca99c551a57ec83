"""The server's log under a flood: repeated warnings are rate-limited and counted, per-request lines never."""

from __future__ import annotations

import logging
import time

from lookalike.web.logs import RepeatFilter


def record(message: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.error", level, __file__, 1, message, (), None)


def test_a_repeated_warning_is_let_through_a_few_times_a_window_then_counted() -> None:
    repeats = RepeatFilter(burst=5, window=0.2)
    passed = [r for r in (record("[Errno 24] Too many open files") for _ in range(1000)) if repeats.filter(r)]
    other = repeats.filter(record("another warning"))
    requests = sum(repeats.filter(record("request", logging.INFO)) for _ in range(1000))
    time.sleep(0.25)
    after = record("[Errno 24] Too many open files")
    assert len(passed) == 5 and other and requests == 1000
    assert repeats.filter(after) and after.repeats_dropped == 995
