"""The index on disk: SQLite for metadata and vectors (the source of truth) plus a vector backend.

Only this module touches SQLite. Every batch of changes is one SQLite transaction, so a crash
at any moment leaves the last committed batch readable. The backend (FAISS by default) is a
derived copy saved with the database generation; when it is missing, stale (a crash after the
commit) or damaged, it is rebuilt from the database on open.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.backends import VectorBackend, load_backend, new_backend
from lookalike.embedders import Matrix

DATABASE = "images.sqlite"
Ids = npt.NDArray[np.int64]

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path BLOB NOT NULL UNIQUE,
    content_hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS images_by_hash ON images (content_hash);
CREATE TABLE IF NOT EXISTS labels (
    image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (image_id, name)
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class ImageRecord:
    """One indexed image. `path` is absolute; it is stored relative to the index folder."""

    id: int
    path: str
    content_hash: str
    size: int
    mtime: float
    width: int
    height: int


@dataclass(frozen=True)
class NewImage:
    path: str
    content_hash: str
    size: int
    mtime: float
    width: int
    height: int


class VectorStore:
    """Vectors with their image records, searchable by inner product."""

    def __init__(self, folder: Path, dimension: int, index_type: str = "flat-ip",
                 index_params: dict[str, Any] | None = None):
        self.folder = Path(folder)
        self.root = os.path.abspath(folder)
        self.dimension = dimension
        self.index_type = index_type
        self.index_params = index_params or {}
        self.db = sqlite3.connect(self.folder / DATABASE, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)
        self._in_transaction = False
        self.backend = self._load_or_rebuild()

    # --- transactions -------------------------------------------------------------------
    def begin(self) -> None:
        if not self._in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self._in_transaction = True

    def commit(self) -> None:
        """Make the changes since begin() durable, as one step."""
        if self._in_transaction:
            generation = self.generation + 1
            self.db.execute("INSERT OR REPLACE INTO state VALUES ('generation', ?)", (str(generation),))
            self.db.execute("COMMIT")
            self._in_transaction = False

    def rollback(self) -> None:
        if self._in_transaction:
            self.db.execute("ROLLBACK")
            self._in_transaction = False
            self.backend = self._rebuild()

    @property
    def generation(self) -> int:
        row = self.db.execute("SELECT value FROM state WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    # --- writes -------------------------------------------------------------------------
    def add(self, images: Sequence[NewImage], vectors: Matrix) -> list[int]:
        self.begin()
        ids = []
        for image, vector in zip(images, vectors, strict=True):
            cursor = self.db.execute(
                "INSERT INTO images (path, content_hash, size, mtime, width, height, vector) VALUES (?,?,?,?,?,?,?)",
                (self._encode(image.path), image.content_hash, image.size, image.mtime, image.width, image.height,
                 _vector_blob(vector)),
            )
            ids.append(int(cursor.lastrowid or 0))
        if ids:
            self.backend.add(np.asarray(ids, dtype=np.int64), np.asarray(vectors, dtype=np.float32))
        return ids

    def replace(self, image_id: int, image: NewImage, vector: npt.NDArray[np.float32]) -> None:
        """New content for an existing image: the id stays, the vector changes."""
        self.begin()
        self.db.execute(
            "UPDATE images SET path=?, content_hash=?, size=?, mtime=?, width=?, height=?, vector=? WHERE id=?",
            (self._encode(image.path), image.content_hash, image.size, image.mtime, image.width, image.height,
             _vector_blob(vector), image_id),
        )
        ids = np.asarray([image_id], dtype=np.int64)
        self.backend.remove(ids)
        self.backend.add(ids, np.asarray(vector, dtype=np.float32).reshape(1, -1))

    def touch(self, image_id: int, size: int, mtime: float) -> None:
        self.begin()
        self.db.execute("UPDATE images SET size=?, mtime=? WHERE id=?", (size, mtime, image_id))

    def remove(self, image_ids: Iterable[int]) -> int:
        ids = [int(i) for i in image_ids]
        if not ids:
            return 0
        self.begin()
        self.db.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in ids])
        self.backend.remove(np.asarray(ids, dtype=np.int64))
        return len(ids)

    def set_labels(self, image_id: int, labels: dict[str, str]) -> None:
        self.begin()
        self.db.executemany(
            "INSERT OR REPLACE INTO labels VALUES (?,?,?)", [(image_id, k, v) for k, v in labels.items()]
        )

    # --- reads --------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM images").fetchone()[0])

    def records(self) -> Iterator[ImageRecord]:
        for row in self.db.execute(f"SELECT {_RECORD_COLUMNS} FROM images ORDER BY id"):
            yield self._record(row)

    def record(self, image_id: int) -> ImageRecord | None:
        row = self.db.execute(f"SELECT {_RECORD_COLUMNS} FROM images WHERE id = ?", (image_id,)).fetchone()
        return self._record(row) if row else None

    def record_by_path(self, path: str) -> ImageRecord | None:
        row = self.db.execute(f"SELECT {_RECORD_COLUMNS} FROM images WHERE path = ?", (self._encode(path),)).fetchone()
        return self._record(row) if row else None

    def record_for_hash(self, content_hash: str) -> ImageRecord | None:
        """Any image with exactly this content (its vector can be reused)."""
        query = f"SELECT {_RECORD_COLUMNS} FROM images WHERE content_hash = ? LIMIT 1"
        row = self.db.execute(query, (content_hash,)).fetchone()
        return self._record(row) if row else None

    def vectors(self, image_ids: Sequence[int]) -> Matrix:
        matrix = np.zeros((len(image_ids), self.dimension), dtype=np.float32)
        for row_number, image_id in enumerate(image_ids):
            row = self.db.execute("SELECT vector FROM images WHERE id = ?", (int(image_id),)).fetchone()
            if row is None:
                raise KeyError(f"no image with id {image_id} in the index")
            matrix[row_number] = _blob_vector(row[0])
        return matrix

    def ids(self) -> Ids:
        return np.asarray([r[0] for r in self.db.execute("SELECT id FROM images ORDER BY id")], dtype=np.int64)

    def labels(self, image_id: int) -> dict[str, str]:
        rows = self.db.execute("SELECT name, value FROM labels WHERE image_id = ?", (image_id,))
        return dict(rows.fetchall())

    def search(self, queries: Matrix, k: int, allowed_ids: Ids | None = None) -> tuple[Matrix, Ids]:
        """Top-k inner products per query; `allowed_ids` restricts the search inside the backend."""
        k = max(1, min(k, self.backend.count))
        return self.backend.search(np.ascontiguousarray(queries, dtype=np.float32), k, allowed_ids)

    # --- persistence --------------------------------------------------------------------
    def save(self) -> None:
        """Write the backend's copy for the committed generation (atomically)."""
        if self._in_transaction:
            raise RuntimeError("commit before saving")
        self.backend.save(self.folder, self.generation)

    def close(self) -> None:
        self.rollback()
        self.db.close()

    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.folder.iterdir() if f.is_file())

    def _load_or_rebuild(self) -> VectorBackend:
        backend = load_backend(self.index_type, self.dimension, self.folder, self.generation, self.index_params)
        if backend is not None and backend.count == len(self):
            return backend
        return self._rebuild()

    def _rebuild(self) -> VectorBackend:
        backend = new_backend(self.index_type, self.dimension, self.index_params)
        batch_ids: list[int] = []
        batch_vectors: list[npt.NDArray[np.float32]] = []
        for image_id, blob in self.db.execute("SELECT id, vector FROM images ORDER BY id"):
            batch_ids.append(image_id)
            batch_vectors.append(_blob_vector(blob))
            if len(batch_ids) == 4096:
                backend.add(np.asarray(batch_ids, dtype=np.int64), np.stack(batch_vectors))
                batch_ids, batch_vectors = [], []
        if batch_ids:
            backend.add(np.asarray(batch_ids, dtype=np.int64), np.stack(batch_vectors))
        return backend

    # --- paths --------------------------------------------------------------------------
    def _encode(self, path: str) -> bytes:
        """Paths relative to the index folder (so index and photos can move together), as bytes
        (so file names that are not valid UTF-8 survive)."""
        absolute = os.path.abspath(path)
        try:
            stored = os.path.relpath(absolute, self.root)
        except ValueError:
            stored = absolute
        return os.fsencode(stored)

    def _record(self, row: tuple) -> ImageRecord:
        path = os.path.normpath(os.path.join(self.root, os.fsdecode(row[1])))
        return ImageRecord(row[0], path, row[2], row[3], row[4], row[5], row[6])


_RECORD_COLUMNS = "id, path, content_hash, size, mtime, width, height"


def _vector_blob(vector: npt.NDArray[np.float32]) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def _blob_vector(blob: bytes) -> npt.NDArray[np.float32]:
    return np.frombuffer(blob, dtype=np.float32).copy()
