"""The index on disk: SQLite for metadata and vectors (the source of truth) plus a vector backend.

Only this module and rows.py (the reads VectorStore inherits) write SQL, run by a Catalogue (catalogue.py: the
SQLite file, or a PostgreSQL database in its place). Every batch of changes is one transaction, so a crash at any
moment leaves the last committed batch readable. The backend (FAISS by
default) is a derived copy saved with the database generation; when it is missing, stale (a crash after the
commit) or damaged, it is rebuilt from the database on open.

The store remembers which generation its backend reflects. Another process's commit (writers take
turns: see writer.py) makes it older than the database: `catch_up` reloads it before a search, and
a write or a save brings it up to date first, so a saved copy always holds exactly its generation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.backends import VectorBackend, load_backend, new_backend
from lookalike.capture import Capture
from lookalike.embedders import Matrix
from lookalike.faults import crash_point, disk_full_reported
from lookalike.index import described
from lookalike.index.rows import ImageRecord, ImageRows, NewImage, Writes, blob_vector, captured_rows, vector_blob

Ids = npt.NDArray[np.int64]
log = logging.getLogger("lookalike")
__all__ = ["ImageRecord", "NewImage", "VectorStore"]  # the records are defined in rows.py, with the reads


class VectorStore(ImageRows):
    """Vectors with their image records (ImageRows), writable, and searchable by inner product."""

    def __init__(self, folder: Path, dimension: int, index_type: str = "flat-ip", reduction: Any = None,
                 catalog: str | None = None, **backend_options: Any):
        """`backend_options` locate a backend kept outside the folder (see Manifest.backend_options); `catalog` a
        catalogue kept outside it (PostgreSQL)."""
        super().__init__(folder, dimension, catalog)
        self.index_type = index_type
        self.reduction = reduction  # e.g. PCA: SQLite keeps full vectors, the backend searches reduced ones
        self.backend_options = backend_options
        self._reloading = threading.Lock()
        generation = self.generation
        self.backend = self._load_or_rebuild(generation)
        self.backend_generation = generation  # what the backend reflects; the database may move on

    # --- transactions -------------------------------------------------------------------
    def begin(self) -> None:
        """Start a write. A backend that missed another process's commit is reloaded first, inside the
        transaction (no one else can commit now), so this write's changes land on the current vectors."""
        if not self._in_transaction:
            self.db.begin()
            self._in_transaction = True
            if self.generation != self.backend_generation:
                self._reload()

    def commit(self) -> None:
        """Make the changes since begin() durable, as one step."""
        if self._in_transaction:
            described.before_commit(self.backend)  # a backend filtering by labels gets this write's new ones first
            generation = self.generation + 1
            self.db.execute("INSERT OR REPLACE INTO state VALUES ('generation', ?)", (str(generation),))
            crash_point("store.committing")
            with disk_full_reported(self.folder):
                self.db.commit()
            self._in_transaction = False
            crash_point("store.committed")
            self.backend_generation = generation  # current at begin(), and given every change since

    def rollback(self) -> None:
        if self._in_transaction:
            self.db.rollback()
            self._in_transaction = False
            if getattr(self.backend, "shared", False):  # the one collection holds the rolled-back changes
                generation = self.generation
                self.backend = self._rebuild()
                self.backend_generation = generation
            else:
                self.backend_generation = -1  # it holds rolled-back changes: reloaded before its next use

    def mark_changed(self) -> None:
        """A new generation with the same rows: for a change kept beside the database (the reduction, the
        manifest), so other processes reload what they search."""
        self.begin()
        self.commit()

    # --- writes -------------------------------------------------------------------------
    def add(self, images: Sequence[NewImage], vectors: Matrix) -> list[int]:
        self.begin()
        ids = self.db.insert(Writes.insert, [self._written(image, vector)
                                             for image, vector in zip(images, vectors, strict=True)])
        if ids:
            self.backend.add(np.asarray(ids, dtype=np.int64), self._searchable(vectors))
        crash_point("store.added")
        return ids

    def replace(self, image_id: int, image: NewImage, vector: npt.NDArray[np.float32]) -> None:
        """New content for an existing image: the id stays, the vector changes."""
        self.begin()
        self.db.execute(Writes.update, (*self._written(image, vector), image_id))
        self._vector_changed([image_id])
        ids = np.asarray([image_id], dtype=np.int64)
        self.backend.remove(ids)
        self.backend.add(ids, self._searchable(np.asarray(vector).reshape(1, -1)))

    def touch(self, image_id: int, size: int, mtime: float) -> None:
        self.begin()
        self.db.execute("UPDATE images SET size=?, mtime=? WHERE id=?", (size, mtime, image_id))

    def remove(self, image_ids: Iterable[int]) -> int:
        ids = [int(i) for i in image_ids]
        if not ids:
            return 0
        self.begin()
        self.db.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in ids])
        self._vector_changed(ids)
        self.backend.remove(np.asarray(ids, dtype=np.int64))
        crash_point("store.removed")
        return len(ids)

    def set_capture(self, captures: Mapping[int, Capture]) -> None:
        """Give images their capture (read from their files after an upgrade), each dated by its stored file time."""
        self.begin()
        self.db.executemany(Writes.capture, captured_rows(captures))

    def set_labels(self, labels: Mapping[int, Mapping[str, str]]) -> None:
        """Labels of many images (id -> name -> value), in one statement: one round trip to a remote catalogue."""
        self.begin()
        self.db.executemany("INSERT OR REPLACE INTO labels VALUES (?,?,?)",
                            [(int(image_id), k, v) for image_id, values in labels.items() for k, v in values.items()])
        described.labels_changed(self.backend, list(labels))

    # --- the searchable copy -------------------------------------------------------------
    def searchable_count(self) -> int:
        """How many vectors the backend searches (no SQL: len() counts rows, 7 ms at 1M)."""
        return int(self.backend.count)

    def is_behind(self) -> bool:
        """Whether another process committed since the backend was built (one small query)."""
        return not self._in_transaction and self.generation != self.backend_generation

    def catch_up(self) -> None:
        """Search what the database holds now: the saved copy of its generation, else rebuilt from it."""
        with self._reloading:  # concurrent searches of a server reload once
            if self.is_behind():
                self._reload()

    def configure(self, index_type: str, reduction: Any, **backend_options: Any) -> None:
        """Another process changed what the backend is (index type, parameters, reduction): the next
        catch_up builds that one."""
        self.index_type, self.reduction, self.backend_options = index_type, reduction, backend_options
        self.backend_generation = -1  # whatever the database's generation, this backend is not it

    def search(self, queries: Matrix, k: int, allowed_ids: Ids | None = None,
               searchable: bool = False) -> tuple[Matrix, Ids]:
        """Top-k inner products per query; `allowed_ids` restricts the search inside the backend.
        Queries are full vectors, or already searchable ones (reduced) when `searchable`."""
        k = max(1, min(k, self.backend.count))
        queries = np.asarray(queries, np.float32) if searchable else self._searchable(queries)
        return self.backend.search(np.ascontiguousarray(queries), k, allowed_ids)

    def to_searchable(self, vectors: Matrix) -> Matrix:
        """Full vectors as the backend compares them (reduced, when the index has a reduction)."""
        return self._searchable(vectors)

    def compact(self) -> int | None:
        """Rebuild a backend that keeps deleted vectors as tombstones; None when it deletes in place."""
        compact = getattr(self.backend, "compact", None)
        if compact is None:
            return None
        compact()
        crash_point("store.compacted")
        self.save()
        return int(self.backend.count)

    def searchable_vectors(self, image_ids: Sequence[int]) -> Matrix:
        """Vectors as the backend searches them (reduced, when the index has a reduction), read and reduced 65,536
        at a time: at 1M 1,280-d images reduced to 128, 0.5 GB instead of two 5 GB copies."""
        if self.reduction is None or len(image_ids) <= SEARCHABLE_CHUNK:
            return self._searchable(self.vectors(image_ids))
        out = np.empty((len(image_ids), self.reduction.dimension), dtype=np.float32)
        for start in range(0, len(image_ids), SEARCHABLE_CHUNK):
            chunk = image_ids[start:start + SEARCHABLE_CHUNK]
            out[start:start + len(chunk)] = self._searchable(self.vectors(chunk))
        return out

    def use_reduction(self, reduction: Any) -> None:
        """Search through another reduction (or None): a new generation, the backend rebuilt from SQLite."""
        self.begin()
        self.db.execute("DELETE FROM augmented")  # augmented vectors live in the old reduction's space
        self.commit()
        crash_point("store.reduction-committed")
        self.reduction = reduction
        self.backend = self._rebuild()

    # --- database-side augmentation (see augmentation.py) ----------------------------------------
    def augmented_graph(self) -> tuple[Ids, Ids, Matrix]:
        """Ids with an augmented vector, their neighbours and similarities (rows in id order)."""
        rows = self.db.execute("SELECT image_id, neighbours, similarities FROM augmented ORDER BY image_id").fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.int64), np.zeros((0, 0), np.float32)
        return (np.asarray([r[0] for r in rows], np.int64), np.stack([np.frombuffer(r[1], np.int64) for r in rows]),
                np.stack([np.frombuffer(r[2], np.float32) for r in rows]))

    def neighbour_floors(self, image_ids: Sequence[int], column: int) -> Matrix:
        """Each image's similarity to its `column`-th nearest other image (1-based; the last the graph has when it
        has fewer), from the augmentation's graph; +inf for an image with no augmented row yet."""
        floors = dict.fromkeys((int(i) for i in image_ids), np.inf)
        select = "SELECT image_id, similarities FROM augmented WHERE image_id IN"
        for image_id, similarities in self._rows_for_ids(select, image_ids):
            known = np.frombuffer(similarities, np.float32)
            known = known[np.isfinite(known)]
            if len(known):
                floors[int(image_id)] = float(known[min(column, len(known)) - 1])
        return np.array([floors[int(i)] for i in image_ids], np.float32)

    def augmented_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM augmented").fetchone()[0])

    def changed_vector_ids(self) -> set[int]:
        """Ids removed or given a new vector since the last augmentation pass."""
        return {int(row[0]) for row in self.db.execute("SELECT image_id FROM changed_vectors")}

    def set_augmented(self, ids: Ids, neighbours: Ids, similarities: Matrix, vectors: Matrix,
                      rebuild: bool = False) -> None:
        """Augmented vectors for some images, searched from now on (`rebuild`: build the backend afresh
        rather than replacing each one, for a pass that touched much of the collection)."""
        self.begin()
        self.db.executemany("INSERT OR REPLACE INTO augmented VALUES (?,?,?,?)",
                            [(int(i), n.astype(np.int64).tobytes(), s.astype(np.float32).tobytes(), vector_blob(v))
                             for i, n, s, v in zip(ids, neighbours, similarities, vectors, strict=True)])
        self.db.execute("DELETE FROM changed_vectors")
        if rebuild:
            self.backend = self._rebuild()
        elif len(ids):
            self.backend.remove(np.asarray(ids, np.int64))
            self.backend.add(np.asarray(ids, np.int64), np.asarray(vectors, np.float32))

    def drop_augmented(self) -> None:
        """Search every image by its own vector again (and forget what changed)."""
        self.begin()
        self.db.execute("DELETE FROM augmented")
        self.db.execute("DELETE FROM changed_vectors")
        self.backend = self._rebuild()

    def indexed_vectors(self, image_ids: Sequence[int]) -> Matrix:
        """Vectors as the backend holds them: augmented where the image has one, else searchable."""
        matrix = np.zeros((len(image_ids), self.searchable_dimension), dtype=np.float32)
        augmented = dict(self._rows_for_ids("SELECT image_id, vector FROM augmented WHERE image_id IN", image_ids))
        plain: list[int] = []
        for row_number, image_id in enumerate(image_ids):
            blob = augmented.get(int(image_id))  # one query for all: a round trip each where the catalogue is remote
            if blob is None:
                plain.append(row_number)
            else:
                matrix[row_number] = blob_vector(blob)
        if plain:
            matrix[plain] = self.searchable_vectors([int(image_ids[i]) for i in plain])
        return matrix

    def _vector_changed(self, image_ids: Sequence[int]) -> None:
        self.db.executemany("INSERT OR IGNORE INTO changed_vectors VALUES (?)", [(int(i),) for i in image_ids])
        self.db.executemany("DELETE FROM augmented WHERE image_id = ?", [(int(i),) for i in image_ids])

    def _searchable(self, vectors: Matrix) -> Matrix:
        vectors = np.asarray(vectors, dtype=np.float32)
        return vectors if self.reduction is None else self.reduction.apply(vectors)

    @property
    def searchable_dimension(self) -> int:
        return self.dimension if self.reduction is None else self.reduction.dimension

    # --- persistence --------------------------------------------------------------------
    def save(self) -> None:
        """Write the backend's copy for the committed generation (atomically). A backend that missed
        another process's commit is brought up to date first: a copy never lacks its generation's changes."""
        if self._in_transaction:
            raise RuntimeError("commit before saving")
        if self.generation != self.backend_generation:
            self._reload()
        with disk_full_reported(self.folder):
            self.backend.save(self.folder, self.backend_generation)

    def close(self) -> None:
        self._in_transaction = False
        self.db.close()  # rolls back what was not committed

    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.folder.iterdir() if f.is_file())

    def _reload(self) -> None:
        """The backend as the database is now: its generation's saved copy when valid, else rebuilt."""
        generation = self.generation  # read first: what is loaded or rebuilt below is at least this new
        if getattr(self.backend, "shared", False):  # one collection every process writes: nothing to copy
            self.backend.refresh(self.searchable_dimension)  # type: ignore[attr-defined]
        else:
            self.backend = self._load_or_rebuild(generation)
        self.backend_generation = generation

    def _load_or_rebuild(self, generation: int) -> VectorBackend:
        backend = described.attached(self, load_backend(self.index_type, self.searchable_dimension, self.folder,
                                                        generation, **self.backend_options))
        if backend is not None and (backend.count == (count := len(self))  # the damaged rows only when it differs:
                                    or backend.count == count - self.damaged_rows()):  # they are a scan of the table
            return backend
        return self._rebuild()

    def _rebuild(self) -> VectorBackend:
        backend = described.attached(self, new_backend(self.index_type, self.searchable_dimension,
                                                       **self.backend_options))
        batch_ids: list[int] = []
        batch_vectors: list[npt.NDArray[np.float32]] = []
        batch_augmented: list[bytes | None] = []
        rows = self.db.scan("SELECT images.id, images.vector, augmented.vector FROM images "
                            "LEFT JOIN augmented ON augmented.image_id = images.id ORDER BY images.id")
        for image_id, blob, augmented in rows:
            if len(blob) != self.dimension * 4:  # one damaged row must not make the whole index unopenable
                log.warning("lookalike: %s", self._damaged_row_message(image_id, len(blob)))
                continue
            batch_ids.append(image_id)
            batch_vectors.append(blob_vector(blob))
            batch_augmented.append(augmented)
            if len(batch_ids) == 4096:
                backend.add(np.asarray(batch_ids, dtype=np.int64), self._rows(batch_vectors, batch_augmented))
                batch_ids, batch_vectors, batch_augmented = [], [], []
        if batch_ids:
            backend.add(np.asarray(batch_ids, dtype=np.int64), self._rows(batch_vectors, batch_augmented))
        return backend

    def _rows(self, vectors: list[npt.NDArray[np.float32]], augmented: list[bytes | None]) -> Matrix:
        """What the backend holds for a batch: the augmented vector where there is one, else searchable."""
        rows = self._searchable(np.stack(vectors))
        for row, blob in enumerate(augmented):
            if blob is not None and len(blob) == rows.shape[1] * 4:  # else of a reduction lost since (refitted on open)
                rows[row] = blob_vector(blob)
        return rows

SEARCHABLE_CHUNK = 65_536  # vectors read and reduced at once by searchable_vectors
