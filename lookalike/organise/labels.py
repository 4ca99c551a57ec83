"""Labels from a CSV into an index, so searches can be filtered and classifiers trained.

A labels CSV has a `path` column (relative to the CSV's folder unless absolute, or to `root`)
and one column per label attribute (`label`, `split`, `colour`, ...). Rows naming images that are
not in the index and empty cells are skipped and counted, never fatal.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lookalike.index import ImageIndex

SHOWN = 5  # unknown paths listed by name in a report


@dataclass
class LabelImport:
    """What importing a labels CSV did."""

    images: int = 0  # images that received at least one label
    labels: int = 0  # (image, name, value) triples written
    unknown: list[str] = field(default_factory=list)  # paths not in the index
    empty: int = 0  # empty cells skipped
    attributes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "labels": self.labels, "attributes": self.attributes,
                "unknown_images": len(self.unknown), "unknown_examples": self.unknown[:SHOWN],
                "empty_labels": self.empty}

    def summary(self) -> str:
        text = (f"labelled {self.images} images ({self.labels} labels: {', '.join(self.attributes)}); "
                f"skipped {len(self.unknown)} rows naming images not in the index and {self.empty} empty labels")
        if self.unknown:
            text += "\n  not in the index: " + ", ".join(self.unknown[:SHOWN])
            text += " ..." if len(self.unknown) > SHOWN else ""
        return text


@dataclass(frozen=True)
class LabelRow:
    path: str  # absolute
    values: dict[str, str]  # attribute -> value, empty cells included as ""


def read_label_rows(csv_path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> list[LabelRow]:
    """Rows of a labels CSV with absolute paths; a missing file or `path` column is a clear error."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"labels file not found: {csv_path}")
    base = Path(root) if root is not None else csv_path.parent
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c for c in (reader.fieldnames or [])]
        if "path" not in columns or len(columns) < 2:
            raise ValueError(f"{csv_path} needs a 'path' column and at least one label column; "
                             f"it has: {', '.join(columns) or 'nothing'}")
        return list(_rows(reader, base, [c for c in columns if c != "path"]))


def _rows(reader: csv.DictReader, base: Path, attributes: list[str]) -> Iterator[LabelRow]:
    for row in reader:
        raw = (row.get("path") or "").strip()
        if not raw:
            continue
        path = os.path.normpath(raw if os.path.isabs(raw) else os.path.join(os.path.abspath(base), raw))
        yield LabelRow(path, {name: (row.get(name) or "").strip() for name in attributes})


def import_labels(index: ImageIndex, csv_path: str | os.PathLike[str],
                  root: str | os.PathLike[str] | None = None) -> LabelImport:
    """Write the CSV's labels into the index (replacing values of the same name), as one commit."""
    rows = read_label_rows(csv_path, root)
    report = LabelImport(attributes=sorted({name for row in rows for name in row.values}))
    labels: dict[int, dict[str, str]] = {}
    for row in rows:
        record = index.record_by_path(row.path)
        if record is None:
            report.unknown.append(row.path)
            continue
        present = {name: value for name, value in row.values.items() if value}
        report.empty += len(row.values) - len(present)
        if present:
            labels.setdefault(record.id, {}).update(present)
            report.labels += len(present)
    report.images = len(labels)
    index.set_labels(labels)
    return report


def labelled_ids(index: ImageIndex, csv_path: str | os.PathLike[str], attribute: str = "label",
                 root: str | os.PathLike[str] | None = None) -> tuple[dict[int, str], LabelImport]:
    """Image id -> value of one attribute from a CSV (without writing to the index), and what was skipped."""
    rows = read_label_rows(csv_path, root)
    if rows and attribute not in rows[0].values:
        raise ValueError(f"{csv_path} has no column {attribute!r}; it has: {', '.join(rows[0].values)}")
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
