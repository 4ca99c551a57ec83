"""The guard's rows kept in memory (lookalike.index.resident): the same answers as reading them from the database,
and a write by another process seen at the next search."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lookalike.capture import Capture
from lookalike.index import ImageIndex, NewImage
from lookalike.index import resident as resident_module
from lookalike.index.resident import ResidentGuard, floors_of, indexed_vectors
from lookalike.index.shown import Texts
from lookalike.search import SearchResult
from lookalike.settings import guard_rows_bytes

DIMENSION = 1280  # the default model's


def clustered(count: int, seed: int) -> np.ndarray:
    """Unit vectors around 12 centres, like photos of 12 kinds of things."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, DIMENSION))
    vectors = centres[rng.integers(0, 12, count)] + 0.8 * rng.normal(size=(count, DIMENSION))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def stored(index: ImageIndex, vectors: np.ndarray, first: int = 0) -> None:
    run = index.sync()
    run.store_images([NewImage(f"/made-up/{n}.jpg", f"hash{n}", 1, 0.0, 8, 8)
                      for n in range(first, first + len(vectors))], vectors)
    run.finish()


class ReadFromDatabase(ResidentGuard):
    """The guard as it was before: every search reads its rows from SQLite."""

    def rows(self, store):  # noqa: ANN001, ANN201
        return None


def answers(result: SearchResult) -> list[tuple]:
    return [(m.id, round(m.score, 6), round(m.similarity or 0.0, 6), m.same_photo) for m in result.matches] + [
        result.low_confidence]


@pytest.fixture(scope="module")
def reduced_index(tmp_path_factory: pytest.TempPathFactory) -> ImageIndex:
    """PCA to 32 and the default augmentation (DBA), so the guard compares reduced vectors against floors."""
    index = ImageIndex.create(tmp_path_factory.mktemp("resident") / "index", pca=32)
    stored(index, clustered(600, seed=1))
    yield index
    index.close()


def test_rows_in_memory_give_the_answers_read_from_the_database(reduced_index: ImageIndex) -> None:
    queries = clustered(40, seed=2)
    searcher, kept = reduced_index.searcher, reduced_index.searcher.resident
    searcher.resident = ReadFromDatabase(kept.column)
    from_database = [answers(reduced_index.search(vector=q)) for q in queries]
    by_id = [answers(reduced_index.search(id=i)) for i in (3, 77, 400)]
    searcher.resident = kept
    reduced_index.search(vector=queries[0])
    reduced_index.search(vector=queries[0])  # the second search at this generation starts reading the rows
    kept.wait()
    assert kept.nbytes >= 600 * 32 * 4
    assert [answers(reduced_index.search(vector=q)) for q in queries] == from_database
    assert [answers(reduced_index.search(id=i)) for i in (3, 77, 400)] == by_id


def test_a_write_by_another_process_is_seen_at_the_next_search(reduced_index: ImageIndex,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resident_module, "STABLE_READS", 0)  # each new generation read at its second search
    query = clustered(1, seed=3)[0]
    for _ in range(3):
        reduced_index.search(vector=query)
    resident = reduced_index.searcher.resident
    resident.wait()
    assert resident.rows(reduced_index._store) is not None
    with ImageIndex.open(reduced_index.folder) as other:
        stored(other, query[None], first=600)
    new = reduced_index.search(vector=query)  # the first search after the write reads the database
    again = reduced_index.search(vector=query)  # the second the new generation's rows
    for found in (new, again):
        assert found.matches[0].path.endswith("/made-up/600.jpg")
        assert found.matches[0].similarity == pytest.approx(1.0, abs=1e-5)
    resident.wait()
    assert resident.rows(reduced_index._store).generation == reduced_index._store.generation
    with ImageIndex.open(reduced_index.folder) as other:
        other.remove_ids([found.matches[0].id])
    for _ in range(2):
        assert all(not m.path.endswith("/made-up/600.jpg") for m in reduced_index.search(vector=query).matches)
    with ImageIndex.open(reduced_index.folder) as other:  # image 5 gets new content: the query's vector
        stored(other, query[None], first=5)
    for _ in range(2):
        first = reduced_index.search(vector=query).matches[0]
        assert first.path.endswith("/made-up/5.jpg") and first.similarity == pytest.approx(1.0, abs=1e-5)


def test_without_a_reduction_the_full_vectors_are_not_kept_twice(tmp_path: Path) -> None:
    with ImageIndex.create(tmp_path / "index", pca=0) as index:
        stored(index, clustered(200, seed=4))
        queries = clustered(10, seed=5)
        index.searcher.resident = ReadFromDatabase(index.searcher.resident.column)
        from_database = [answers(index.search(vector=q)) for q in queries]
        index.searcher.resident = ResidentGuard(index.searcher.resident.column)
        assert [answers(index.search(vector=q)) for q in queries] == from_database
        index.searcher.resident.wait()
        rows = index.searcher.resident.rows(index._store)
        assert rows is not None and rows.searchable is None
        assert np.isfinite(rows.floors).all()


def test_floors_skip_missing_neighbours_as_the_database_reads_do() -> None:
    similarities = np.array([[0.9, 0.8, 0.7], [0.9, np.nan, np.nan], [np.nan, np.nan, np.nan]], np.float32)
    assert floors_of(similarities, 2).tolist() == pytest.approx([0.8, 0.9, np.inf])


def test_the_expansion_reads_the_vectors_an_hnsw_index_holds_from_its_memory(tmp_path: Path) -> None:
    with ImageIndex.create(tmp_path / "index", pca=32, index_type="hnsw") as index:
        stored(index, clustered(300, seed=6))
        store, ids = index._store, index.ids()[[5, 0, 200]]
        assert np.array_equal(indexed_vectors(store, ids), store.indexed_vectors(ids.tolist()))
        assert store.backend.vectors_of(ids) is not None  # held: the database was not read


def test_a_generation_is_read_only_once_it_lasted_ten_times_the_last_read(reduced_index: ImageIndex,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """An index changed every few seconds is searched from the database, not stopped by a read at each change."""
    clock = [1000.0]
    monkeypatch.setattr(resident_module.time, "monotonic", lambda: clock[0])
    guard, store = ResidentGuard(10), reduced_index._store
    assert guard.rows(store) is None and guard.rows(store) is None  # the second search starts the first read
    guard.wait()
    assert guard.rows(store) is not None
    guard._last_read_s = 2.0  # as a read of 100,000 images takes
    with ImageIndex.open(reduced_index.folder) as other:
        other.set_labels({1: {"kind": "a"}})  # a new generation
    reduced_index.search(vector=clustered(1, seed=7)[0])  # catches up with it
    assert guard.rows(store) is None and guard.rows(store) is None  # seen, but not for 20 s yet
    clock[0] += 19.0
    assert guard.rows(store) is None
    clock[0] += 1.5
    assert guard.rows(store) is None  # read now, by its thread
    guard.wait()
    rows = guard.rows(store)
    assert rows is not None and rows.generation == store.generation


# --- what the matches show (lookalike.index.shown), kept with the rows -----------------------------------------
CAPTURES = [Capture(), Capture("2021-06-01T10:00:00", "exif", "NIKON CORPORATION", "NIKON D750", 48.85, 2.35),
            Capture("2020-01-02T03:04:05", "file", None, "EOS", None, -0.5)]


@pytest.fixture()
def described_index(tmp_path: Path) -> ImageIndex:
    """PCA and DBA, with paths (one not UTF-8), captures and labels of every kind a match shows."""
    index = ImageIndex.create(tmp_path / "index", pca=32)
    run = index.sync()
    names = [f"/made-up/{n}.jpg" if n % 7 else f"/made-up/caf\udce9-{n}.jpg" for n in range(300)]
    run.store_images([NewImage(name, f"hash{n}", 1, 0.0, 8, 8, CAPTURES[n % 3]) for n, name in enumerate(names)],
                     clustered(300, seed=8))
    run.finish()
    index.set_labels({int(i): {"size": "L", "colour": f"c{n % 4}"} if n % 2 else {"b": "ü"}
                      for n, i in enumerate(index.ids()) if n % 5})
    yield index
    index.close()


def shown_json(result: SearchResult) -> dict:
    return {key: value for key, value in result.to_dict().items() if key != "timings_ms"}


def test_matches_show_from_memory_what_the_database_shows(described_index: ImageIndex,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    queries, ids = clustered(30, seed=9), described_index.ids()[[0, 7, 101, 299]].tolist()
    searcher, kept = described_index.searcher, described_index.searcher.resident
    searcher.resident = ReadFromDatabase(kept.column)
    from_database = [shown_json(described_index.search(vector=q)) for q in queries]
    by_id = [shown_json(described_index.search(id=i)) for i in ids]
    searcher.resident = kept
    for _ in range(2):  # the second search at this generation starts reading the rows
        described_index.search(vector=queries[0])
    kept.wait()
    assert kept.held(described_index._store) is not None

    def not_read(*args: object) -> None:
        raise AssertionError("read from the database")

    monkeypatch.setattr(described_index._store, "records_of", not_read)
    monkeypatch.setattr(described_index._store, "labels_of", not_read)
    as_text = json.dumps  # the same JSON, keys in the same order
    assert as_text([shown_json(described_index.search(vector=q)) for q in queries]) == as_text(from_database)
    assert as_text([shown_json(described_index.search(id=i)) for i in ids]) == as_text(by_id)
    shown = [m for result in from_database for m in result["matches"]]
    assert {m["camera"] for m in shown} == {None, "NIKON D750", "EOS"} and any("\udce9" in m["path"] for m in shown)
    assert any(m["labels"] == {"colour": "c1", "size": "L"} for m in shown) and any(not m["labels"] for m in shown)


def test_another_process_relabelling_and_renaming_is_seen_at_the_next_search(described_index: ImageIndex,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resident_module, "STABLE_READS", 0)
    query = described_index.vectors([described_index.ids()[3]])[0]
    for _ in range(3):
        first = described_index.search(vector=query).matches[0]
    described_index.searcher.resident.wait()
    assert described_index.searcher.resident.held(described_index._store) is not None
    with ImageIndex.open(described_index.folder) as other:
        other.set_labels({first.id: {"size": "XS"}})
    for _ in range(2):  # from the database, then (the second starting their read) from the new generation's rows
        assert described_index.search(vector=query).matches[0].labels["size"] == "XS"
    described_index.searcher.resident.wait()  # a read still running when the index moves on holds the next back
    with ImageIndex.open(described_index.folder) as other:
        other._store.replace(first.id, NewImage("/made-up/renamed.jpg", "hash3", 1, 0.0, 8, 8), query)
        other._store.commit()
    for _ in range(2):
        renamed = described_index.search(vector=query).matches[0]
        assert (renamed.id, renamed.path, renamed.taken) == (first.id, "/made-up/renamed.jpg", None)
    described_index.searcher.resident.wait()
    assert described_index.searcher.resident.held(described_index._store) is not None


def test_texts_pack_any_string_and_none() -> None:
    values = ["", None, "a", "caf\udce9", "ü" * 3, None]
    packed = Texts.packed(values)
    assert [packed[i] for i in range(len(values))] == values
    assert packed.nbytes < sum(map(sys.getsizeof, values))


def test_an_index_whose_rows_exceed_the_memory_budget_is_searched_from_the_database_without_reading_them(
        reduced_index: ImageIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resident_module, "STABLE_READS", 0)
    needed_mb = resident_module.estimated_bytes(reduced_index._store) / 2**20
    monkeypatch.setenv("LOOKALIKE_GUARD_ROWS_MB", str(needed_mb * 0.99))
    query = clustered(1, seed=7)[0]
    guard = ResidentGuard(reduced_index.searcher.resident.column)
    monkeypatch.setattr(reduced_index.searcher, "resident", guard)
    found = [answers(reduced_index.search(vector=query)) for _ in range(3)]
    guard.wait()
    assert guard.held(reduced_index._store) is None and guard.nbytes == 0
    assert found[0] == found[2]
    monkeypatch.setenv("LOOKALIKE_GUARD_ROWS_MB", str(needed_mb * 1.01))
    reduced_index.search(vector=query)
    guard.wait()
    assert guard.held(reduced_index._store) is not None


def test_the_search_that_starts_a_read_does_not_wait_for_it(reduced_index: ImageIndex,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows are read by a thread with a connection of its own: searches go on from the database meanwhile."""
    monkeypatch.setattr(resident_module, "STABLE_READS", 0)
    read_rows = resident_module.read_rows
    monkeypatch.setattr(resident_module, "read_rows", lambda *args: time.sleep(3) or read_rows(*args))
    guard = ResidentGuard(reduced_index.searcher.resident.column)
    monkeypatch.setattr(reduced_index.searcher, "resident", guard)
    query = clustered(1, seed=9)[0]
    reduced_index.search(vector=query)
    started = time.perf_counter()
    during = [answers(reduced_index.search(vector=query)) for _ in range(3)]  # the first of them starts the read
    assert time.perf_counter() - started < 2.5 and guard.held(reduced_index._store) is None
    guard.wait()
    assert guard.held(reduced_index._store) is not None
    assert answers(reduced_index.search(vector=query)) == during[0]


def test_the_memory_budget_is_read_from_the_environment_and_a_bad_value_is_named(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOKALIKE_GUARD_ROWS_MB", raising=False)
    assert guard_rows_bytes() == 1024 * 2**20
    monkeypatch.setenv("LOOKALIKE_GUARD_ROWS_MB", "0")
    assert guard_rows_bytes() == 0
    monkeypatch.setenv("LOOKALIKE_GUARD_ROWS_MB", "lots")
    with pytest.raises(ValueError, match=r"\$LOOKALIKE_GUARD_ROWS_MB must be a number, not 'lots'"):
        guard_rows_bytes()


def test_a_random_pick_is_the_same_image_from_the_rows_in_memory_without_walking_the_table(
        reduced_index: ImageIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    searcher, kept = reduced_index.searcher, reduced_index.searcher.resident
    searcher.resident = ReadFromDatabase(kept.column)
    from_database = [searcher.random_id(seed) for seed in range(20)]
    searcher.resident = kept
    for _ in range(2):  # the second search at this generation starts reading the rows
        reduced_index.search(id=from_database[0])
    kept.wait()
    assert kept.held(reduced_index._store) is not None
    monkeypatch.setattr(reduced_index._store, "id_at", lambda position: pytest.fail("walked the table"))
    assert [searcher.random_id(seed) for seed in range(20)] == from_database
    assert len(set(from_database)) > 10


def test_ids_come_sorted_whatever_order_the_database_reads_them_in(described_index: ImageIndex) -> None:
    store = described_index._store
    as_read = [row[0] for row in store.db.execute("SELECT id FROM images").fetchall()]
    assert as_read != sorted(as_read)  # read from the index of capture dates: by date, then by id
    ids = store.ids()
    assert ids.dtype == np.int64 and ids.tolist() == sorted(as_read)
