"""Labels: from a CSV into an index, and `where` filters checked against the labels the index holds.

A labels CSV has a `path` column (relative to the CSV's folder unless absolute, or to `root`)
and one column per label attribute (`label`, `split`, `colour`, ...). Rows naming images that are
not in the index and empty cells are skipped and counted, never fatal. A `labels.csv` at the top of
a folder is read when the folder is indexed (`add_folder`, `lookalike index`).

Label names and values match ignoring case in every door (Python, CLI, HTTP); a filter on a name or
value no image has is refused with the ones that exist (UnknownLabelError), not answered with nothing.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lookalike.errors import RequestError

if TYPE_CHECKING:
    from lookalike.index import ImageIndex

LABELS_CSV = "labels.csv"  # read from the top of an indexed folder
SHOWN = 5  # unknown paths listed by name in a report
SHOWN_VALUES = 40  # label values listed by name in an error
Where = dict[str, tuple[str, ...]]
log = logging.getLogger("lookalike")


@dataclass
class LabelImport:
    """What importing a labels CSV did."""

    images: int = 0  # images that received at least one label
    labels: int = 0  # (image, name, value) triples written
    unknown: list[str] = field(default_factory=list)  # paths not in the index
    empty: int = 0  # empty cells skipped
    attributes: list[str] = field(default_factory=list)
    source: str | None = None  # the CSV, when it was found in an indexed folder
    problem: str | None = None  # why that CSV could not be read (the indexing itself went on)

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "labels": self.labels, "attributes": self.attributes,
                "unknown_images": len(self.unknown), "unknown_examples": self.unknown[:SHOWN],
                "empty_labels": self.empty, "source": self.source, "problem": self.problem}

    def summary(self) -> str:
        text = (f"labelled {self.images} images ({self.labels} labels: {', '.join(self.attributes)}); "
                f"skipped {len(self.unknown)} rows naming images not in the index and {self.empty} empty labels")
        if self.unknown:
            text += "\n  not in the index: " + ", ".join(self.unknown[:SHOWN])
            text += " ..." if len(self.unknown) > SHOWN else ""
        return text

    def found_summary(self) -> str:
        """One line for an indexing run that found a labels.csv."""
        if self.problem:
            return f"labels: {self.source} was not read: {self.problem}"
        skipped = f"; skipped {len(self.unknown)} rows naming images not in the index" if self.unknown else ""
        return f"labels: {self.images} images from {self.source} ({', '.join(self.attributes)}){skipped}"


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
            raise RequestError(f"{csv_path} needs a 'path' column and at least one label column; "
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


def import_folder_labels(index: ImageIndex, folder: str | os.PathLike[str]) -> LabelImport | None:
    """The labels of a `labels.csv` at the top of an indexed folder, written into the index (None when the folder
    has none). A CSV that cannot be read is reported, not raised: the images are indexed already."""
    csv_path = Path(folder) / LABELS_CSV
    if not csv_path.is_file():
        return None
    try:
        report = import_labels(index, csv_path)
    except (ValueError, csv.Error) as error:  # UnicodeDecodeError is a ValueError
        log.warning("lookalike: %s was not read: %s", csv_path, error)
        return LabelImport(source=str(csv_path), problem=str(error))
    report.source = str(csv_path)
    return report


# --- where filters ----------------------------------------------------------------------------------
class UnknownLabelError(RequestError):
    """A `where` filter names a label, or a value of one, that no indexed image has. `known` lists what exists:
    the label names when the name is unknown, else that label's values."""

    def __init__(self, message: str, name: str, unknown: tuple[str, ...], known: tuple[str, ...]):
        super().__init__(message)
        self.name, self.unknown, self.known = name, unknown, known


class LabelCatalog:
    """The label names and values an index holds, looked up ignoring case (made from label_counts)."""

    def __init__(self, counts: Mapping[str, Mapping[str, int]]):
        self.names = tuple(sorted(counts))
        self._names = _by_folded(counts)
        self._values = {name: _by_folded(values) for name, values in counts.items()}

    def resolve(self, where: Mapping[str, str | Sequence[str]]) -> Where:
        """`where` in the index's own spelling: each name and value matches whatever the index holds that differs
        only in case (all such spellings). A name or value no image has raises UnknownLabelError naming the ones
        that exist. Names given in different cases are one name, so their values mean either."""
        resolved: dict[str, list[str]] = {}
        for name, given in where.items():
            values = (given,) if isinstance(given, str) else tuple(given)
            stored = self._name(name)
            spellings = [self._values[stored].get(value.casefold()) for value in values]
            unknown = tuple(value for value, found in zip(values, spellings, strict=True) if not found)
            if unknown:
                known = tuple(sorted({v for found in self._values[stored].values() for v in found}))
                raise UnknownLabelError(_unknown_values_text(stored, unknown, known), name, unknown, known)
            resolved.setdefault(stored, []).extend(v for found in spellings if found for v in found)
        return {name: tuple(dict.fromkeys(values)) for name, values in resolved.items()}

    def _name(self, name: str) -> str:
        spellings = self._names.get(name.casefold())
        if spellings:
            return name if name in spellings else spellings[0]
        if not self.names:
            raise UnknownLabelError(f"this index has no labels, so where {name}=... matches nothing: give images "
                                    "labels with `lookalike labels import CSV` (ImageIndex.set_labels), or keep a "
                                    f"{LABELS_CSV} (path,label[,...]) at the top of the folder you index",
                                    name, (name,), ())
        raise UnknownLabelError(f"no image has a label named {name!r}; this index's labels are: "
                                f"{', '.join(self.names)}", name, (name,), self.names)


def _by_folded(spellings: Iterable[str]) -> dict[str, list[str]]:
    """Case-folded text -> the spellings that fold to it."""
    folded: dict[str, list[str]] = {}
    for text in sorted(spellings):
        folded.setdefault(text.casefold(), []).append(text)
    return folded


def _unknown_values_text(name: str, unknown: tuple[str, ...], known: tuple[str, ...]) -> str:
    asked = ", ".join(f"{name}={value}" for value in unknown)
    listed = ", ".join(known[:SHOWN_VALUES])
    more = f" and {len(known) - SHOWN_VALUES} more" if len(known) > SHOWN_VALUES else ""
    return f"no image has {asked} (case is ignored); the values of {name!r} are: {listed}{more}"
