"""The rows of an index's database as it is read: images (paths, hashes, sizes, full vectors) and labels.

ImageRows opens the catalogue (images.sqlite, or a PostgreSQL database: catalogue.py), brought to this format
(schema.py), and answers every read; VectorStore (store.py) adds the writes and the searchable copy. Paths are stored
relative to the index folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lookalike.capture import Capture
from lookalike.capture_filter import CaptureFilter
from lookalike.embedders import Matrix
from lookalike.errors import NotFoundError
from lookalike.index.catalogue import open_catalogue
from lookalike.index.labels import LabelCatalog
from lookalike.index.manifest import IndexFormatError

Ids = npt.NDArray[np.int64]


@dataclass(frozen=True)
class NewImage:
    """An image about to be stored. `path` is absolute; it is stored relative to the index folder."""

    path: str
    content_hash: str
    size: int
    mtime: float
    width: int
    height: int
    capture: Capture = Capture()  # from its EXIF; stored dated by `mtime` when the EXIF has no date


@dataclass(frozen=True)
class ImageRecord(NewImage):
    """One indexed image, with its id."""

    id: int = 0


class ImageRows:
    """Reads of one index database: its images, their full vectors and labels."""

    def __init__(self, folder: Path, dimension: int, catalog: str | None = None):
        """`catalog` None: the SQLite file in the folder; else the PostgreSQL catalogue it names (catalogue.py)."""
        self.folder = Path(folder)
        self.root = os.path.abspath(folder)
        self.dimension = dimension
        self.db = open_catalogue(self.folder, catalog)
        self._in_transaction = False  # a write is open (VectorStore): its labels may still be rolled back
        self._label_catalog: tuple[int, LabelCatalog] | None = None  # (generation, catalog)

    @property
    def generation(self) -> int:
        row = self.db.execute("SELECT value FROM state WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    def __len__(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM images").fetchone()[0])

    def is_empty(self) -> bool:
        """No images: one row looked at, where COUNT(*) walks the whole table."""
        return self.db.execute("SELECT 1 FROM images LIMIT 1").fetchone() is None

    def records(self) -> Iterator[ImageRecord]:
        for row in self.db.scan(f"SELECT {_RECORD_COLUMNS} FROM images ORDER BY id"):
            yield self._record(row)

    def records_without_capture(self) -> list[ImageRecord]:
        """Images stored before the index kept capture data (format 3), or whose capture is unknown."""
        return [self._record(row) for row in
                self.db.execute(f"SELECT {_RECORD_COLUMNS} FROM images WHERE taken_source IS NULL ORDER BY id")]

    def record(self, image_id: int) -> ImageRecord | None:
        row = self.db.execute(f"SELECT {_RECORD_COLUMNS} FROM images WHERE id = ?", (image_id,)).fetchone()
        return self._record(row) if row else None

    def record_with_vector(self, image_id: int) -> tuple[ImageRecord, Matrix] | None:
        """An image's record and full vector in one query (a search from an indexed image), or None."""
        row = self.db.execute(f"SELECT {_RECORD_COLUMNS}, vector FROM images WHERE id = ?", (image_id,)).fetchone()
        return None if row is None else (self._record(row), self._matrix({image_id: row[-1]}, [image_id])[0])

    def records_of(self, image_ids: Sequence[int]) -> dict[int, ImageRecord]:
        """The records of the given ids that exist, by id (a search's matches: a query per 500 ids)."""
        return {int(row[0]): self._record(row)
                for row in self._rows_for_ids(f"SELECT {_RECORD_COLUMNS} FROM images WHERE id IN", image_ids)}

    def labels_of(self, image_ids: Sequence[int]) -> dict[int, dict[str, str]]:
        """The labels of each of the given ids that has any."""
        found: dict[int, dict[str, str]] = {}
        for image_id, name, value in self._rows_for_ids("SELECT image_id, name, value FROM labels WHERE image_id IN",
                                                        image_ids):
            found.setdefault(int(image_id), {})[name] = value
        return found

    def _rows_for_ids(self, select: str, image_ids: Sequence[int]) -> Iterator[tuple]:
        """`select ... IN (ids)`, 500 ids a query (SQLite limits the parameters of one statement)."""
        ids = [int(image_id) for image_id in image_ids]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            yield from self.db.execute(f"{select} ({','.join('?' * len(chunk))})", chunk).fetchall()

    def record_by_path(self, path: str) -> ImageRecord | None:
        row = self.db.execute(f"SELECT {_RECORD_COLUMNS} FROM images WHERE path = ?", (self._encode(path),)).fetchone()
        return self._record(row) if row else None

    def record_for_hash(self, content_hash: str) -> ImageRecord | None:
        """Any image with exactly this content (its vector can be reused)."""
        query = f"SELECT {_RECORD_COLUMNS} FROM images WHERE content_hash = ? LIMIT 1"
        row = self.db.execute(query, (content_hash,)).fetchone()
        return self._record(row) if row else None

    def vectors(self, image_ids: Sequence[int]) -> Matrix:
        """The full vectors of `image_ids`, in their order (one query per 500 ids, not one per id)."""
        return self._matrix(dict(self._rows_for_ids("SELECT id, vector FROM images WHERE id IN", image_ids)),
                            image_ids)

    def shown_rows(self, image_ids: Sequence[int],
                   with_vectors: bool = False) -> tuple[list[tuple], Matrix | None]:
        """What a search's match shows of each image, in the order of `image_ids`: its path and its capture's values
        (CAPTURE_COLUMNS); and
        `with_vectors` their full vectors, read in the same pass (a row's capture follows its vector: reading it
        walks the vector's pages anyway). Raises NotFoundError for an id not there."""
        select = f"SELECT {_SHOWN_COLUMNS}{', vector' if with_vectors else ''} FROM images WHERE id IN"
        rows = {int(row[0]): row for row in self._rows_for_ids(select, image_ids)}
        shown = []
        for image_id in image_ids:
            row = rows.get(int(image_id))
            if row is None:
                raise NotFoundError(f"no image with id {image_id} in the index")
            shown.append((self._absolute(row[1]), *row[2:8]))
        if not with_vectors:
            return shown, None
        return shown, self._matrix({image_id: row[8] for image_id, row in rows.items()}, image_ids)

    def _matrix(self, blobs: Mapping[int, bytes], image_ids: Sequence[int]) -> Matrix:
        """The vectors of `image_ids` from their rows' blobs, in their order."""
        matrix = np.zeros((len(image_ids), self.dimension), dtype=np.float32)
        for row_number, image_id in enumerate(image_ids):
            blob = blobs.get(int(image_id))
            if blob is None:
                raise NotFoundError(f"no image with id {image_id} in the index")
            if len(blob) != self.dimension * 4:
                raise IndexFormatError(self._damaged_row_message(int(image_id), len(blob)))
            matrix[row_number] = blob_vector(blob)
        return matrix

    def _damaged_row_message(self, image_id: int, blob_bytes: int) -> str:
        record = self.record(image_id)
        return (f"{self.db.where}, image id {image_id} ({record.path if record else '?'}): its vector has "
                f"{blob_bytes / 4:g} values, the model makes {self.dimension}; the row is damaged and is not "
                "searched: remove that image from the index and add it again")

    def damaged_rows(self) -> int:
        """Images whose stored vector is not of the model's length (a damaged row): they are left out of searches."""
        query = "SELECT COUNT(*) FROM images WHERE length(vector) != ?"
        return int(self.db.execute(query, (self.dimension * 4,)).fetchone()[0])

    def ids(self) -> Ids:
        """Every image's id, ascending. Sorted here, not by the database: without ORDER BY, SQLite reads the ids from
        its smallest index instead of walking the table, whose rows hold the vectors (600 MB at 100,000 images;
        the first search after a cold start spent 0.24 s here)."""
        rows = self.db.execute("SELECT id FROM images").fetchall()
        return np.sort(np.asarray(rows, dtype=np.int64).reshape(-1))

    def id_at(self, position: int) -> int:
        """The id at a position in id order (for picking one at random without loading all ids)."""
        row = self.db.execute("SELECT id FROM images ORDER BY id LIMIT 1 OFFSET ?", (position,)).fetchone()
        if row is None:
            raise IndexError(f"position {position} is past the end of the index")
        return int(row[0])

    def every_label(self) -> list[tuple[int, str, str]]:
        """Every (image id, name, value), by id and, within an image, in the order labels_of gives them (by name)."""
        return self.db.execute("SELECT image_id, name, value FROM labels ORDER BY image_id, name").fetchall()

    def labels(self, image_id: int) -> dict[str, str]:
        rows = self.db.execute("SELECT name, value FROM labels WHERE image_id = ?", (image_id,))
        return dict(rows.fetchall())

    def label_values(self, name: str) -> dict[int, str]:
        """Every image's value of one label attribute (images without it are left out)."""
        rows = self.db.execute("SELECT image_id, value FROM labels WHERE name = ?", (name,))
        return {int(image_id): value for image_id, value in rows}

    def label_counts(self) -> dict[str, dict[str, int]]:
        rows = self.db.execute("SELECT name, value, COUNT(*) FROM labels GROUP BY name, value ORDER BY name, value")
        counts: dict[str, dict[str, int]] = {}
        for name, value, count in rows:
            counts.setdefault(name, {})[value] = int(count)
        return counts

    def label_catalog(self) -> LabelCatalog:
        """Every label name and value, read once per committed change, so checking a search's `where` against
        them costs one small query (the generation) on an index of any size."""
        generation, cached = self.generation, self._label_catalog
        if cached is not None and cached[0] == generation and not self._in_transaction:
            return cached[1]
        catalog = LabelCatalog(self.label_counts())
        if not self._in_transaction:  # labels written in an open transaction may still be rolled back
            self._label_catalog = (generation, catalog)
        return catalog

    def ids_matching(self, where: dict[str, str | Sequence[str]] | None = None,
                     path_prefix: str | None = None, capture: CaptureFilter | None = None) -> Ids:
        """Ids whose labels match every `where` entry (a list of values means any of them), whose
        absolute path starts with `path_prefix` (a plain string prefix) and whose capture `capture` admits."""
        ids = set(self.ids().tolist()) if capture is None else self._ids_captured(capture)
        for name, wanted in (where or {}).items():
            values = [wanted] if isinstance(wanted, str) else list(wanted)
            marks = ",".join("?" * len(values))
            rows = self.db.execute(f"SELECT image_id FROM labels WHERE name = ? AND value IN ({marks})",
                                   (name, *values))
            ids &= {int(row[0]) for row in rows}
        if path_prefix is not None:
            prefix = os.path.abspath(path_prefix)
            ids = {i for i, path in self.db.execute("SELECT id, path FROM images")
                   if i in ids and os.path.normpath(os.path.join(self.root, os.fsdecode(path))).startswith(prefix)}
        return np.asarray(sorted(ids), dtype=np.int64)

    def _ids_captured(self, capture: CaptureFilter) -> set[int]:
        """Ids whose capture passes, in SQL: the dates (an index-only scan of `taken` when only dates are asked),
        the camera (lower() folds ASCII only: a name beyond ASCII is compared here) and a latitude band, within
        which the great-circle distance is computed for all rows at once."""
        clauses, values = self._capture_clauses(capture)
        sql_camera = all(name.isascii() for name in capture.cameras)
        if capture.near is None and sql_camera:
            return {row[0] for row in self.db.execute(f"SELECT id FROM images WHERE {clauses}", values)}
        rows = self.db.execute(f"SELECT id, camera_make, camera_model, latitude, longitude FROM images "
                               f"WHERE {clauses}", values).fetchall()
        if not sql_camera:
            rows = [row for row in rows if capture.admits(Capture(camera_make=row[1], camera_model=row[2]))]
        if capture.near is not None and rows:
            distances = capture.near.distances_km([row[3] for row in rows], [row[4] for row in rows])
            rows = [row for row, km in zip(rows, distances, strict=True) if km <= capture.near.km]
        return {row[0] for row in rows}

    @staticmethod
    def _capture_clauses(capture: CaptureFilter) -> tuple[str, list[str | float]]:
        clauses, values = ["1 = 1"], []
        for clause, value in (("taken >= ?", capture.after), ("taken < ?", capture.before)):
            if value is not None:
                clauses.append(clause)
                values.append(value)
        if capture.periods:
            clauses.append("(" + " OR ".join(["(taken >= ? AND taken < ?)"] * len(capture.periods)) + ")")
            values.extend(edge for period in capture.periods for edge in (period.start, period.end))
        if capture.near is not None:
            clauses.append("latitude BETWEEN ? AND ? AND longitude IS NOT NULL")
            values.extend(capture.near.latitude_band())
        if capture.cameras and all(name.isascii() for name in capture.cameras):
            marks = ",".join("?" * len(capture.cameras))
            clauses.append(f"(lower(camera_make) IN ({marks}) OR lower(camera_model) IN ({marks}) OR "
                           f"lower(trim(coalesce(camera_make, '') || ' ' || coalesce(camera_model, ''))) IN ({marks}))")
            values.extend(capture.cameras * 3)
        return " AND ".join(clauses), values

    # --- paths --------------------------------------------------------------------------
    def _encode(self, path: str) -> bytes:
        """Paths relative to the index folder (so index and photos can move together), as bytes
        (so file names that are not valid UTF-8 survive). URIs (s3://...) are kept as they are."""
        if "://" in path:
            return os.fsencode(path)
        absolute = os.path.abspath(path)
        try:
            stored = os.path.relpath(absolute, self.root)
        except ValueError:
            stored = absolute
        return os.fsencode(stored)

    def _written(self, image: NewImage, vector: npt.NDArray[np.float32]) -> tuple:
        """The values of WRITTEN_COLUMNS for an image (its capture dated by its file when its EXIF has no date)."""
        return (self._encode(image.path), image.content_hash, image.size, image.mtime, image.width, image.height,
                vector_blob(vector), *capture_values(image.capture.dated(image.mtime)))

    def _record(self, row: tuple) -> ImageRecord:
        return ImageRecord(self._absolute(row[1]), row[2], row[3], row[4], row[5], row[6], Capture(*row[7:13]),
                           id=row[0])

    def _absolute(self, stored_path: bytes) -> str:
        """A path as stored (relative to the index folder; a URI as it is) as the records give it."""
        stored = os.fsdecode(stored_path)
        return stored if "://" in stored else os.path.normpath(os.path.join(self.root, stored))


CAPTURE_COLUMNS = "taken, taken_source, camera_make, camera_model, latitude, longitude"
_RECORD_COLUMNS = f"id, path, content_hash, size, mtime, width, height, {CAPTURE_COLUMNS}"
_SHOWN_COLUMNS = f"id, path, {CAPTURE_COLUMNS}"  # what a search's match shows (ImageRows.shown_rows)
WRITTEN_COLUMNS = f"path, content_hash, size, mtime, width, height, vector, {CAPTURE_COLUMNS}"  # ImageRows._written


class Writes:
    """The statements VectorStore writes image rows with (their values: ImageRows._written, captured_rows)."""

    insert = f"INSERT INTO images ({WRITTEN_COLUMNS}) VALUES ({','.join('?' * len(WRITTEN_COLUMNS.split(',')))})"
    update = f"UPDATE images SET ({WRITTEN_COLUMNS}) = ({','.join('?' * len(WRITTEN_COLUMNS.split(',')))}) WHERE id = ?"
    capture = f"UPDATE images SET ({CAPTURE_COLUMNS}) = (?,?,?,?,?,?) WHERE id = ?"


def captured_rows(captures: Mapping[int, Capture]) -> list[tuple[str | float | None, ...]]:
    """The parameters of Writes.capture for each image id and its capture."""
    return [(*capture_values(capture), image_id) for image_id, capture in captures.items()]


def capture_values(capture: Capture) -> tuple[str | float | None, ...]:
    """A capture as the values of CAPTURE_COLUMNS."""
    return (capture.taken, capture.taken_source, capture.camera_make, capture.camera_model, capture.latitude,
            capture.longitude)


def vector_blob(vector: npt.NDArray[np.float32]) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def blob_vector(blob: bytes) -> npt.NDArray[np.float32]:
    return np.frombuffer(blob, dtype=np.float32).copy()
