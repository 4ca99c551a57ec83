"""What the guard compares, kept in memory beside the backend (issue 29): each image's searchable vector (reduced,
when the index has a reduction) and its neighbour floor, read once per store generation. A search then gathers its
40 candidates' rows from numpy instead of reading 40 full vectors and 40 augmentation rows from SQLite and
projecting the vectors again (0.84 ms of a 1.6 ms call at 100,000 images). What the matches show of each image
(path, labels, capture: lookalike.index.shown) is read in the same pass and kept beside them.

The rows are those of one database generation: a search uses them only while the store's backend is at that
generation and no write of this process is open; otherwise (and while they are being read) it reads SQLite as
before, with the same answers. They are read at the second search of a generation, not the first, and only once the
generation has lasted STABLE_READS times as long as the last read took: a process that searches once (the CLI), or
whose index another process changes every few seconds (serving while indexing), never or seldom reads them. A thread
of their own reads them (1.5-2.8 s at 100,000 images), on a connection of its own to the catalogue, while searches
go on from SQLite. An index whose rows would take more memory than $LOOKALIKE_GUARD_ROWS_MB (lookalike.settings,
1 GB by default: about 1.7M images at PCA 128) is not read at all: its searches read SQLite, as before issue 29.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lookalike.errors import NotFoundError
from lookalike.index.catalogue import open_catalogue
from lookalike.index.manifest import IndexFormatError
from lookalike.index.shown import ShownRows
from lookalike.settings import guard_rows_bytes

if TYPE_CHECKING:
    from lookalike.index.read_vectors import ReadVectors
    from lookalike.index.store import VectorStore

log = logging.getLogger("lookalike")
Ids = npt.NDArray[np.int64]
Matrix = npt.NDArray[np.float32]
STABLE_READS = 10  # a generation is read once it has lasted this many times the last read: reads take <= ~1/10
SHOWN_BYTES = 80  # what matches show of one image, packed, as estimated before reading (7.6 MiB at 100,000)
READ_CHUNK = 8192  # full vectors read and reduced at once (42 MB of 1,280-d float32), not the 50 MB kept * 6


@dataclass(frozen=True)
class GuardRows:
    """One generation's rows, by position in `ids` (ascending): floors for one neighbour column, with a
    reduction the searchable vectors (without one they are the full vectors, which stay in SQLite), and what matches
    show of each image."""

    generation: int
    reduction: Any
    ids: Ids
    floors: Matrix
    searchable: Matrix | None
    shown: ShownRows

    def positions(self, image_ids: Ids) -> npt.NDArray[np.intp] | None:
        """Where each id's rows are; None when any of them is not here (the caller reads SQLite)."""
        if len(self.ids) == 0:
            return None
        at = np.minimum(np.searchsorted(self.ids, image_ids), len(self.ids) - 1)
        return at if np.array_equal(self.ids[at], image_ids) else None

    @property
    def nbytes(self) -> int:
        return (self.ids.nbytes + self.floors.nbytes + (0 if self.searchable is None else self.searchable.nbytes)
                + self.shown.nbytes)


class ResidentGuard:
    """The guard's rows of one index, kept for the generation its searches are at."""

    def __init__(self, column: int):
        """`column`: which neighbour's similarity is each image's floor (1-based, as VectorStore.neighbour_floors)."""
        self.column = column
        self._rows: GuardRows | None = None
        self._seen: int | None = None  # the generation the previous search was at
        self._since = 0.0  # when a search first saw it (time.monotonic)
        self._last_read_s = 0.0  # how long the last read took
        self._failed: int | None = None  # a generation whose rows could not be read (not tried again)
        self._reading = threading.Lock()  # held while a thread reads
        self._reader: threading.Thread | None = None

    def rows(self, store: VectorStore) -> GuardRows | None:
        """The rows of the generation the store's backend is at, or None: read SQLite as before. When a generation
        has lasted, its rows are read by a thread of their own, on a connection of their own, while searches go on."""
        if store._in_transaction:  # this process's own write is open: the backend holds uncommitted changes
            return None
        rows = self.held(store)
        if rows is not None:
            return rows
        generation, now = store.backend_generation, time.monotonic()
        if self._seen != generation:
            self._seen, self._since = generation, now
            return None
        if (generation in (-1, self._failed) or now - self._since < STABLE_READS * self._last_read_s
                or estimated_bytes(store) > guard_rows_bytes() or not self._reading.acquire(blocking=False)):
            return None
        try:
            reader = reading_copy(store)
        except Exception:  # the catalogue cannot be opened again now: searches read it as before
            self._reading.release()
            return None
        self._reader = threading.Thread(target=self._read, args=(reader, generation), name="lookalike-guard-rows",
                                        daemon=True)
        self._reader.start()
        return None

    def _read(self, reader: VectorStore, generation: int) -> None:
        started, read = time.monotonic(), None
        try:
            read = read_rows(reader, generation, self.column)
        except Exception as error:  # the index closed or its folder went: its searches read the database
            log.debug("guard rows not read: %s", error)
        finally:
            reader.db.close()
            self._last_read_s = time.monotonic() - started
            if read is None:
                self._failed = generation
            else:
                self._rows = read
            self._reading.release()

    def wait(self, timeout: float | None = None) -> None:
        """Until the rows being read (if any) are in: for a benchmark's warm-up or a test."""
        if self._reader is not None:
            self._reader.join(timeout)

    def held(self, store: VectorStore) -> GuardRows | None:
        """The rows already read for the generation the store's backend is at, or None (reads nothing)."""
        rows = self._rows
        if (store._in_transaction or rows is None or rows.generation != store.backend_generation
                or rows.reduction is not store.reduction):
            return None
        return rows

    def shown(self, store: VectorStore, image_ids: list[int],
              limit: int) -> dict[int, tuple[str, dict[str, str], dict[str, Any]]]:
        """Path, labels and capture (Match's fields) of the first `limit` of `image_ids` that exist, by id: from the
        rows when they are here and hold every id, else from the database (an image removed since is left out)."""
        rows = self.held(store)
        at = None if rows is None or not image_ids else rows.positions(np.asarray(image_ids, np.int64))
        if rows is not None and at is not None:
            return {image_id: rows.shown.of_image(position)
                    for image_id, position in zip(image_ids[:limit], at[:limit].tolist(), strict=True)}
        records = store.records_of(image_ids)
        kept = [image_id for image_id in image_ids if image_id in records][:limit]
        labels = store.labels_of(kept)
        return {image_id: (records[image_id].path, labels.get(image_id, {}), records[image_id].capture.shown())
                for image_id in kept}

    def compared(self, store: VectorStore, ids: Ids, exclude: set[int], augmented: bool,
                 read: ReadVectors) -> tuple[Ids, npt.NDArray[np.float32], Matrix | None]:
        """What the guard compares: its candidates (the first answer's `ids` less `exclude`), their plain
        similarities to the query (kept in `read` for the matches to reuse) and, with an augmentation, their
        neighbour floors; gathered from the rows when they are here, else read from the database."""
        # a set lookup, not np.isin: 40 ids against one or two, a fifth of its time
        candidates = ids[[image_id not in exclude for image_id in ids.tolist()]] if exclude else ids
        rows = self.rows(store)
        at = None if rows is None else rows.positions(candidates)
        if rows is None or at is None:
            floors = store.neighbour_floors(candidates.tolist(), self.column) if augmented else None
        else:
            floors = rows.floors[at] if augmented else None
        return candidates, read.candidates(store, candidates, None if rows is None else rows.searchable, at), floors

    @property
    def nbytes(self) -> int:
        return 0 if self._rows is None else self._rows.nbytes


def estimated_bytes(store: VectorStore) -> int:
    """What the rows of the store's images would take: id, floor, what matches show and, with a reduction, the
    searchable vector (512 bytes at PCA 128: 600 MB at 1M images)."""
    searchable = store.searchable_dimension * 4 if store.reduction is not None else 0
    return store.searchable_count() * (8 + 4 + SHOWN_BYTES + searchable)


def read_rows(store: VectorStore, generation: int, column: int) -> GuardRows | None:
    """Every image's floor, what matches show of it (and its searchable vector, with a reduction) as the database
    holds them at `generation`; None when it moved on while they were read, or a row is damaged (those searches read
    SQLite)."""
    if store.generation != generation:
        return None
    ids = store.ids()
    try:
        searchable, shown = searchable_and_shown(store, ids)
    except (IndexFormatError, NotFoundError):  # a damaged vector; an image removed since `ids`
        return None
    labels = store.every_label()
    augmented, _, similarities = store.augmented_graph()
    floors = np.full(len(ids), np.inf, np.float32)
    if len(augmented):
        at = np.searchsorted(ids, augmented)
        known = at < len(ids)
        known[known] = ids[at[known]] == augmented[known]
        floors[at[known]] = floors_of(similarities[known], column)
    if store.generation != generation:  # a commit between the reads: they may mix two generations
        return None
    return GuardRows(generation, store.reduction, ids, floors, searchable, ShownRows.of(ids, shown, labels))


def reading_copy(store: VectorStore) -> VectorStore:
    """The store with a connection of its own to its catalogue, for a thread that only reads: the same folder,
    reduction and backend, none of them changed by reading."""
    reader = copy.copy(store)
    reader.db = open_catalogue(store.folder, getattr(store.db, "location", None))
    return reader


def searchable_and_shown(store: VectorStore, ids: Ids) -> tuple[Matrix | None, list[tuple]]:
    """With a reduction the searchable vectors of `ids`, and what matches show of each (ImageRows.shown_rows), read
    in one pass READ_CHUNK at a time (the full vectors of one chunk at a time in memory)."""
    reduced = store.reduction is not None
    rows = np.empty((len(ids), store.searchable_dimension), np.float32) if reduced else None
    shown: list[tuple] = []
    for start in range(0, len(ids), READ_CHUNK):
        values, full = store.shown_rows(ids[start:start + READ_CHUNK].tolist(), with_vectors=reduced)
        shown.extend(values)
        if rows is not None:
            rows[start:start + len(values)] = store.to_searchable(full)
    return rows, shown


def floors_of(similarities: Matrix, column: int) -> Matrix:
    """Each row's similarity to its `column`-th neighbour: the last finite one when it has fewer, +inf with none
    (as VectorStore.neighbour_floors reads them one by one)."""
    if similarities.shape[1] == 0:
        return np.full(len(similarities), np.inf, np.float32)
    floors = similarities[:, min(column, similarities.shape[1]) - 1].astype(np.float32)
    for row in np.flatnonzero(~np.isfinite(similarities).all(axis=1)):
        finite = similarities[row][np.isfinite(similarities[row])]
        floors[row] = finite[min(column, len(finite)) - 1] if len(finite) else np.inf
    return floors


def indexed_vectors(store: VectorStore, image_ids: Ids) -> Matrix:
    """Vectors as the backend holds them (augmented, reduced): from the backend's memory when it can give them
    (`vectors_of`: FAISS HNSW keeps them as added), else read from the database."""
    held = getattr(store.backend, "vectors_of", None)
    vectors = None if held is None else held(image_ids)
    return store.indexed_vectors(image_ids.tolist()) if vectors is None else vectors
