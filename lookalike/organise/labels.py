"""Labels from a CSV for organising: the import itself lives in the index core (lookalike.index.labels, so that
indexing a folder can read its labels.csv); this module adds reading one attribute without writing it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from lookalike.errors import RequestError
from lookalike.index.labels import LabelImport, LabelRow, import_labels, read_label_rows

if TYPE_CHECKING:
    from lookalike.index import ImageIndex

__all__ = ["LabelImport", "LabelRow", "import_labels", "labelled_ids", "read_label_rows"]


def labelled_ids(index: ImageIndex, csv_path: str | os.PathLike[str], attribute: str = "label",
                 root: str | os.PathLike[str] | None = None) -> tuple[dict[int, str], LabelImport]:
    """Image id -> value of one attribute from a CSV (without writing to the index), and what was skipped."""
    rows = read_label_rows(csv_path, root)
    if rows and attribute not in rows[0].values:
        raise RequestError(f"{csv_path} has no column {attribute!r}; it has: {', '.join(rows[0].values)}")
    report = LabelImport(attributes=[attribute])
    found: dict[int, str] = {}
    for row in rows:
        record = index.record_by_path(row.path)
        if record is None:
            report.unknown.append(row.path)
        elif not row.values.get(attribute):
            report.empty += 1
        else:
            found[record.id] = row.values[attribute]
    report.images = report.labels = len(found)
    return found, report
