"""Paths and messages as JSON can carry them: the bytes of a file name that are not UTF-8, which Python keeps
as lone surrogates (b'caf\\xe9' is 'caf\\udce9'), are shown escaped ('caf\\\\xe9') instead of breaking the answer."""

from __future__ import annotations

import os
from typing import Any

from lookalike.index import IndexReport


def shown_text(text: str) -> str:
    """The text with each undecodable file-name byte written as \\xNN (any other lone surrogate as \\uNNNN)."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file name decodes to
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def shown_path(path: str | os.PathLike[str] | bytes) -> str:
    return shown_text(os.fsdecode(path))


def report_json(report: IndexReport) -> dict[str, Any]:
    """An indexing report as JSON, its failures' paths and reasons (which may quote a link's target) shown."""
    body = report.to_dict()
    body["failures"] = [{"path": shown_path(f["path"]), "reason": shown_text(f["reason"])} for f in body["failures"]]
    return body
