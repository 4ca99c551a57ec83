"""What a search's matches show of each image (path, labels, capture: lookalike.search.Match's fields), kept in
memory beside the guard's rows of one generation (lookalike.index.resident), so that a search gives its k matches
these without reading SQLite (0.14 ms of a 0.7 ms call at 100,000 images, issue 29). Each text field is packed in
one buffer (a Python str a value would take about three times the memory); a match's values are unpacked when shown.
Offsets and flags are kept in `array` and `bytes`, whose items read as Python numbers in tens of nanoseconds (a numpy
scalar takes a hundred or more, and a search reads some 80 of them).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.capture import Capture

Ids = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Texts:
    """Strings or None, packed: value i is data[ends[i - 1]:ends[i]] (UTF-8; any str, lone surrogates included)."""

    data: bytes
    ends: array  # of int64
    present: bytes  # 1 where the value is a string, 0 where None

    @classmethod
    def packed(cls, values: Sequence[str | None]) -> Texts:
        encoded = [b"" if value is None else value.encode("utf-8", "surrogatepass") for value in values]
        return cls(b"".join(encoded), array("q", accumulate(map(len, encoded))),
                   bytes(value is not None for value in values))

    def __getitem__(self, position: int) -> str | None:
        if not self.present[position]:
            return None
        return self.data[self.ends[position - 1] if position else 0:self.ends[position]].decode("utf-8",
                                                                                               "surrogatepass")

    @property
    def nbytes(self) -> int:
        return len(self.data) + len(self.ends) * self.ends.itemsize + len(self.present)


@dataclass(frozen=True)
class Numbers:
    """Floats or None."""

    values: array  # of float64
    present: bytes

    @classmethod
    def packed(cls, values: Sequence[float | None]) -> Numbers:
        return cls(array("d", (0.0 if value is None else value for value in values)),
                   bytes(value is not None for value in values))

    def __getitem__(self, position: int) -> float | None:
        return self.values[position] if self.present[position] else None

    @property
    def nbytes(self) -> int:
        return len(self.values) * self.values.itemsize + len(self.present)


@dataclass(frozen=True)
class ShownRows:
    """What matches show of every image of one generation, by the image's position in the guard's ids."""

    paths: Texts
    taken: Texts
    taken_source: Texts
    cameras: Texts
    latitudes: Numbers
    longitudes: Numbers
    label_ends: array  # of int64: an image's labels are names/values[label_ends[i - 1]:label_ends[i]]
    label_names: Texts
    label_values: Texts

    @classmethod
    def of(cls, ids: Ids, shown: Sequence[tuple], labels: Sequence[tuple[int, str, str]]) -> ShownRows:
        """`shown`: each id's (path, *capture values in CAPTURE_COLUMNS' order) (ImageRows.shown_rows); `labels`:
        (image id, name, value) by id (ImageRows.every_label); labels of ids not among `ids` are left out."""
        cameras: dict[tuple[str | None, str | None], str | None] = {}
        for row in shown:  # a camera's name once per make and model
            if (row[3], row[4]) not in cameras:
                cameras[row[3], row[4]] = Capture(camera_make=row[3], camera_model=row[4]).camera
        owners = np.fromiter((label[0] for label in labels), np.int64, len(labels))
        at = np.minimum(np.searchsorted(ids, owners), max(len(ids) - 1, 0))
        known = ids[at] == owners if len(ids) else np.zeros(len(labels), bool)
        kept = [label for label, keep in zip(labels, known.tolist(), strict=True) if keep]
        return cls(Texts.packed([row[0] for row in shown]), Texts.packed([row[1] for row in shown]),
                   Texts.packed([row[2] for row in shown]), Texts.packed([cameras[row[3], row[4]] for row in shown]),
                   Numbers.packed([row[5] for row in shown]), Numbers.packed([row[6] for row in shown]),
                   array("q", np.searchsorted(at[known], np.arange(len(ids)), side="right").astype(np.int64).tobytes()),
                   Texts.packed([label[1] for label in kept]), Texts.packed([label[2] for label in kept]))

    def of_image(self, position: int) -> tuple[str, dict[str, str], dict[str, Any]]:
        """An image's path, labels and capture as Capture.shown() gives it (Match's fields)."""
        start, end = self.label_ends[position - 1] if position else 0, self.label_ends[position]
        labels = {self.label_names[i]: self.label_values[i] for i in range(start, end)}
        return self.paths[position], labels, {  # type: ignore[return-value]  # every image has a path
            "taken": self.taken[position], "taken_source": self.taken_source[position],
            "camera": self.cameras[position], "latitude": self.latitudes[position],
            "longitude": self.longitudes[position]}

    @property
    def nbytes(self) -> int:
        return sum(texts.nbytes for texts in (self.paths, self.taken, self.taken_source, self.cameras,
                                              self.latitudes, self.longitudes, self.label_names, self.label_values)
                   ) + len(self.label_ends) * self.label_ends.itemsize
