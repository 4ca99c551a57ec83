"""The Milvus store on a real Milvus Lite file and on a real Milvus server (the `milvus_server` fixture): same
answers as FAISS, same API and CLI; the server restarted between writes, killed mid-indexing, stopped at search
time. `pytest -k milvus_server` runs the server's half."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from clusters import MilvusServer  # noqa: E402

from lookalike.backends import milvus as milvus_module  # noqa: E402
from lookalike.backends import milvus_filter  # noqa: E402
from lookalike.backends.faiss_flat import FlatBackend  # noqa: E402
from lookalike.backends.filters import Described, Filter  # noqa: E402
from lookalike.backends.milvus import MilvusBackend, parse_store  # noqa: E402
from lookalike.cli import main  # noqa: E402
from lookalike.errors import RequestError  # noqa: E402
from lookalike.index import ImageIndex, described  # noqa: E402

DIMENSION = 64


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Milvus Lite file per module (each file starts a Milvus Lite server)."""
    return tmp_path_factory.mktemp("milvus") / "vectors.db"


Stores = Callable[[str], str]  # a collection name -> the --store string that holds it


@pytest.fixture(scope="module", params=["milvus_lite", "milvus_server"])
def stores(request: pytest.FixtureRequest, database: Path) -> Stores:
    """Where collections live: a Milvus Lite file, then the session's Milvus server."""
    if request.param == "milvus_lite":
        return lambda collection: f"milvus-lite://{database}/{collection}"
    return request.getfixturevalue("milvus_server").store


def unit_vectors(count: int, seed: int, dimension: int = DIMENSION) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def both_stores(stores: Stores, collection: str, ids: np.ndarray, vectors: np.ndarray):
    dimension = vectors.shape[1]
    milvus = MilvusBackend(dimension, stores(collection), owner="test-model")
    flat = FlatBackend(dimension)
    for backend in (milvus, flat):
        backend.add(ids, vectors)
    return milvus, flat


def test_exact_search_returns_the_same_top_10_as_faiss(stores: Stores) -> None:
    ids = np.arange(1, 501, dtype=np.int64)
    milvus, flat = both_stores(stores, "same_as_faiss", ids, unit_vectors(500, seed=1))
    queries = unit_vectors(20, seed=2)
    milvus_scores, milvus_ids = milvus.search(queries, 10)
    flat_scores, flat_ids = flat.search(queries, 10)
    assert milvus.count == 500
    np.testing.assert_array_equal(milvus_ids, flat_ids)
    np.testing.assert_allclose(milvus_scores, flat_scores, atol=1e-5)


def test_clothing_vectors_get_the_same_ids_in_the_same_order_as_faiss(stores: Stores,
                                                                      demo_index: ImageIndex) -> None:
    ids, vectors = demo_index.vectors()  # the 144 demo clothing photos, 1280-d
    milvus, flat = both_stores(stores, "clothing", ids, vectors)
    queries = vectors[::7]
    milvus_scores, milvus_ids = milvus.search(queries, 10)
    flat_scores, flat_ids = flat.search(queries, 10)
    np.testing.assert_array_equal(milvus_ids, flat_ids)
    np.testing.assert_allclose(milvus_scores, flat_scores, atol=1e-5)


def test_filter_and_delete_behave_like_faiss(stores: Stores) -> None:
    ids = np.arange(10, 310, dtype=np.int64)
    milvus, flat = both_stores(stores, "filter_delete", ids, unit_vectors(300, seed=3))
    queries = unit_vectors(5, seed=4)
    allowed = ids[::7]
    filtered_ids = milvus.search(queries, 10, allowed_ids=allowed)[1]
    assert set(filtered_ids.ravel()) <= set(allowed.tolist())
    np.testing.assert_array_equal(filtered_ids, flat.search(queries, 10, allowed_ids=allowed)[1])

    gone = ids[:100]
    milvus.remove(gone)
    flat.remove(gone)
    assert milvus.count == 200
    after = milvus.search(queries, 10)[1]
    assert not set(after.ravel()) & set(gone.tolist())
    np.testing.assert_array_equal(after, flat.search(queries, 10)[1])
    assert (milvus.search(queries, 10, allowed_ids=np.asarray([], dtype=np.int64))[1] == -1).all()


def test_collection_of_another_dimension_or_model_is_refused(stores: Stores) -> None:
    MilvusBackend(DIMENSION, stores("owned"), owner="test-model").add(np.arange(3), unit_vectors(3, seed=5))
    with pytest.raises(ValueError, match="made by another model"):
        MilvusBackend(DIMENSION * 2, stores("owned"), owner="test-model")
    with pytest.raises(ValueError, match="made by another model"):
        MilvusBackend(DIMENSION, stores("owned"), owner="another-model")
    reopened = MilvusBackend(DIMENSION, stores("owned"), owner="test-model")  # same owner: emptied, reused
    assert reopened.count == 0


def test_index_types_milvus_lite_would_ignore_are_refused(database: Path) -> None:
    with pytest.raises(ValueError, match="not supported by Milvus Lite"):
        parse_store(f"{database}/c?index=HNSW")
    with pytest.raises(ValueError, match="not supported by Milvus"):
        parse_store("milvus://localhost:19530/c?index=NOT_AN_INDEX")
    assert parse_store("milvus://db.example:1234/photos?index=hnsw").index_type == "HNSW"
    with pytest.raises(ValueError, match="collection name"):
        parse_store(f"{database}/bad-name")


def test_unreachable_server_fails_fast_with_the_address(tmp_path: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(ConnectionError, match="127.0.0.1:9"):
        ImageIndex.create(tmp_path / "index", store="milvus://127.0.0.1:9/photos")
    assert time.perf_counter() - started < 10
    assert not (tmp_path / "index" / "manifest.json").exists()  # no half-made index is left behind


def test_image_index_on_milvus_matches_the_faiss_index(stores: Stores, demo_copy: Path, tmp_path: Path) -> None:
    store = stores("gallery")
    with ImageIndex.create(tmp_path / "milvus", store=store) as on_milvus:
        report = on_milvus.add_folder(demo_copy)
        assert report.added == len(list(demo_copy.rglob("*.jpg"))) == 30
        assert on_milvus.info()["store"] == store
    with ImageIndex.create(tmp_path / "faiss") as on_faiss:
        on_faiss.add_folder(demo_copy)
        expected = {i: [m.path for m in on_faiss.search(i, k=10).matches] for i in (1, 7, 20)}
    with ImageIndex.open(tmp_path / "milvus") as reopened:  # loads the collection, no rebuild
        assert len(reopened) == 30
        assert {i: [m.path for m in reopened.search(i, k=10).matches] for i in (1, 7, 20)} == expected
        victim = next(Path(demo_copy).rglob("*.jpg"))
        reopened.remove_files([victim])
        assert reopened._store.backend.count == 29
        assert str(victim) not in [m.path for m in reopened.search(2, k=30).matches]


def test_cli_indexes_into_milvus_and_refuses_another_store(stores: Stores, demo_copy: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    index = str(tmp_path / "cli-index")
    assert main(["index", str(demo_copy), "--index", index, "--store", stores("cli"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 30
    assert main(["search", "--id", "3", "--index", index, "-k", "5", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["matches"]) == 5
    assert main(["index", str(demo_copy), "--index", index, "--store", "milvus://127.0.0.1:9/x"]) == 2
    assert "keeps its vectors in" in capsys.readouterr().err


def odd_folders(demo_copy: Path) -> tuple[Path, Path]:
    """Two folders whose names differ where `like` has wildcards (`_`, `%`), three photos each."""
    photos = sorted(demo_copy.rglob("*.jpg"))
    folders = demo_copy / "a_b", demo_copy / "axb%"
    for folder, moved in zip(folders, (photos[:3], photos[3:6]), strict=True):
        folder.mkdir()
        for photo in moved:
            photo.rename(folder / photo.name)
    return folders


def filtered_answers(index: ImageIndex, folders: tuple[Path, Path]) -> dict[str, list[str]]:
    asks = {"colour": {"where": {"colour": ['blu"e\\']}}, "two": {"where": {"colour": ["red", 'blu"e\\']}},
            "both": {"where": {"colour": ["red"]}, "path_prefix": str(folders[0].parent)},
            "a_b": {"path_prefix": str(folders[0])}, "axb%": {"path_prefix": str(folders[1])},
            "none": {"path_prefix": str(folders[0]) + "x"}}
    return {name: [m.path for m in index.search(30, k=8, **ask).matches] for name, ask in asks.items()}


def colours(index: ImageIndex) -> None:
    index.set_labels({i: {"colour": "red" if i % 2 else 'blu"e\\'} for i in index._store.ids().tolist()})


def test_filters_run_inside_milvus_with_the_answers_of_faiss(stores: Stores, demo_copy: Path, tmp_path: Path) -> None:
    folders = odd_folders(demo_copy)
    answers = {}
    for name, store in (("milvus", stores("filtered")), ("faiss", None)):
        with ImageIndex.create(tmp_path / name, store=store) as index:
            index.add_folder(demo_copy)
            colours(index)
            answers[name] = filtered_answers(index, folders)
            backend = index._store.backend
            assert described.applies_inside(backend, Filter(path_prefix=str(folders[0]))) == (name == "milvus")
            inside = name == "milvus" and not backend.location.lite  # Milvus Lite filters labels by ids (slow pairs)
            assert described.applies_inside(backend, Filter({"colour": ("red",)})) == inside
    assert answers["milvus"] == answers["faiss"]
    assert len(answers["faiss"]["a_b"]) == len(answers["faiss"]["axb%"]) == 3 and answers["faiss"]["none"] == []
    assert all(Path(p).parent == folders[0] for p in answers["faiss"]["a_b"])
    assert len(answers["faiss"]["colour"]) == len(answers["faiss"]["two"]) == 8  # 15 of each colour
    assert answers["faiss"]["colour"] != answers["faiss"]["two"]


def test_relabelled_images_are_filtered_by_their_new_labels_in_milvus(stores: Stores, demo_copy: Path,
                                                                        tmp_path: Path) -> None:
    with ImageIndex.create(tmp_path / "index", store=stores("relabelled")) as index:
        index.add_folder(demo_copy)
        colours(index)
        index.set_labels({5: {"colour": "green"}, 6: {"colour": "green", "size": "L"}})
        assert [m.id for m in index.search(1, k=5, where={"colour": "green"}).matches] in ([5, 6], [6, 5])
        assert 5 not in [m.id for m in index.search(1, k=30, where={"colour": "red"}).matches]
        index.remove_files([index._store.record(6).path])
        assert [m.id for m in index.search(1, k=5, where={"colour": "green"}).matches] == [5]
    with ImageIndex.open(tmp_path / "index") as reopened:  # the collection kept the labels: no rebuild needed
        assert [m.id for m in reopened.search(1, k=5, where={"colour": "green"}).matches] == [5]


HOSTILE = ('blu"e\\', "b=c", "\\=", "it's")  # quotes, backslashes and the pairs' `=` in values


def labelled(ids: np.ndarray) -> dict[int, Described]:
    """Labels that an unescaped `name=value` would confuse: name `a` value `b=c` against name `a=b` value `c`."""
    rows = {}
    for i in ids.tolist():
        labels = {"colour": HOSTILE[i % 4], "size": "SML"[i % 3]}
        labels |= {"a": "b=c"} if i % 5 == 0 else {"a=b": "c"} if i % 5 == 1 else {}
        rows[i] = Described(f"/photos/d{i % 2}/{i}.jpg", labels)
    return rows


def allowed_by(rows: dict[int, Described], narrowed: Filter) -> np.ndarray:
    """The ids a filter allows, as the store's SQL would find them."""
    return np.asarray([i for i, row in rows.items()
                       if all(row.labels.get(name) in values for name, values in narrowed.where.items())
                       and row.path.startswith(narrowed.path_prefix or "")], dtype=np.int64)


LABEL_FILTERS = (Filter({"colour": (HOSTILE[0],)}), Filter({"colour": HOSTILE[1:]}),
                 Filter({"colour": (HOSTILE[0], HOSTILE[3]), "size": ("S", "L")}), Filter({"a": ("b=c",)}),
                 Filter({"a=b": ("c",)}), Filter({"size": ("M",)}, path_prefix="/photos/d1/"))


def described_backends(stores: Stores, collection: str, rows: dict[int, Described]):
    ids = np.asarray(sorted(rows), dtype=np.int64)
    milvus = MilvusBackend(DIMENSION, stores(collection), owner="test-model")
    milvus.describe = lambda asked: [rows[i] for i in asked]
    flat = FlatBackend(DIMENSION)
    vectors = unit_vectors(len(ids), seed=11)
    for backend in (milvus, flat):
        backend.add(ids, vectors)
    return milvus, flat


def assert_filters_match_faiss(milvus: MilvusBackend, flat: FlatBackend, rows: dict[int, Described]) -> None:
    queries = unit_vectors(6, seed=12)
    for narrowed in LABEL_FILTERS:
        allowed = allowed_by(rows, narrowed)
        assert len(allowed), narrowed
        milvus_scores, milvus_ids = milvus.search(queries, 10, narrowed)
        flat_scores, flat_ids = flat.search(queries, 10, allowed)
        np.testing.assert_array_equal(milvus_ids, flat_ids, err_msg=str(narrowed))
        np.testing.assert_allclose(milvus_scores, flat_scores, atol=1e-5)


def test_label_pairs_filter_in_milvus_gives_the_ids_and_order_of_faiss(stores: Stores) -> None:
    rows = labelled(np.arange(1, 301))
    milvus, flat = described_backends(stores, "pairs", rows)
    assert milvus.pairs
    assert "array_contains_any(label_pairs" in milvus_filter.expression(LABEL_FILTERS[2])
    assert_filters_match_faiss(milvus, flat, rows)

    changed = [i for i in rows if i % 5 == 0][:20]  # `a` removed from some, another value given to others
    for i in changed:
        labels = dict(rows[i].labels)
        labels.pop("a")
        rows[i] = Described(rows[i].path, labels | ({"colour": HOSTILE[0]} if i % 2 else {}))
    milvus.describe_again(changed)
    gone = list(rows)[150:200]
    milvus.remove(np.asarray(gone))
    flat.remove(np.asarray(gone))
    for i in gone:
        del rows[i]
    assert_filters_match_faiss(milvus, flat, rows)


def test_milvus_label_pairs_keep_names_apart_and_refuse_too_many(monkeypatch) -> None:
    assert milvus_filter.label_pair("a=b", "c") != milvus_filter.label_pair("a", "b=c")
    assert milvus_filter.label_pair("a\\", "=b") != milvus_filter.label_pair("a\\=", "b")
    monkeypatch.setattr(milvus_filter, "PAIRS_CAPACITY", 3)
    with pytest.raises(RequestError, match="image 7 has 4 label names; a Milvus collection keeps at most 3"):
        milvus_filter.label_pairs(7, {name: "x" for name in "abcd"})


def test_milvus_collection_made_before_label_pairs_filters_by_json_until_compacted(stores: Stores, monkeypatch,
                                                                                  demo_copy: Path,
                                                                                  tmp_path: Path) -> None:
    def fields_before_pairs(schema) -> None:  # the collection lookalike made before label_pairs
        from pymilvus import DataType

        schema.add_field(milvus_filter.PATH_FIELD, DataType.VARCHAR, max_length=milvus_filter.PATH_LENGTH)
        schema.add_field(milvus_filter.LABELS_FIELD, DataType.JSON)

    monkeypatch.setattr(milvus_module, "add_fields", fields_before_pairs)
    asks = ({"colour": ['blu"e\\']}, {"colour": ["red", 'blu"e\\']}, {"colour": ["green"]})
    with ImageIndex.create(tmp_path / "faiss") as on_faiss:
        on_faiss.add_folder(demo_copy)
        colours(on_faiss)
        on_faiss.set_labels({5: {"colour": "green"}})
        expected = [[m.path for m in on_faiss.search(30, k=8, where=where).matches] for where in asks]
    with ImageIndex.create(tmp_path / "milvus", store=stores("before_pairs")) as index:
        index.add_folder(demo_copy)
        assert not index._store.backend.pairs
    monkeypatch.undo()
    with ImageIndex.open(tmp_path / "milvus") as index:  # today's code on yesterday's collection
        backend = index._store.backend
        assert not backend.pairs and milvus_filter.PAIRS_FIELD not in backend.check_owner()
        colours(index)
        index.set_labels({5: {"colour": "green"}})  # written without pairs: the collection has no such field
        assert [[m.path for m in index.search(30, k=8, where=where).matches] for where in asks] == expected
        assert index.compact() == 30  # made again with the pairs
    with ImageIndex.open(tmp_path / "milvus") as index:
        assert index._store.backend.pairs and len(index) == index._store.backend.count == 30
        assert [[m.path for m in index.search(30, k=8, where=where).matches] for where in asks] == expected


# --- a real server: restarts, crashes, hangs (pytest -k milvus_server) -------------------------------------------
def paths_of(index: ImageIndex, queries: tuple[int, ...] = (1, 7, 20)) -> dict[int, list[str]]:
    return {i: [m.path for m in index.search(i, k=10).matches] for i in queries}


@pytest.fixture(scope="module")
def faiss_answers(demo_copy_module: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[str]]:
    with ImageIndex.create(tmp_path_factory.mktemp("faiss") / "index") as on_faiss:
        on_faiss.add_folder(demo_copy_module)
        return paths_of(on_faiss)


@pytest.fixture(scope="module")
def demo_copy_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 demo photos (3 per clothing type) shared by the server tests, which only read them."""
    from conftest import DEMO_GALLERY

    folder = tmp_path_factory.mktemp("gallery")
    for label_folder in sorted(p for p in DEMO_GALLERY.iterdir() if p.is_dir()):
        (folder / label_folder.name).mkdir()
        for photo in sorted(label_folder.glob("*.jpg"))[:3]:
            (folder / label_folder.name / photo.name).write_bytes(photo.read_bytes())
    return folder


@pytest.mark.slow  # restarts the server: about 55 s on 2 cores
def test_milvus_server_restarted_between_writes_keeps_every_vector(milvus_server: MilvusServer,
                                                                   demo_copy_module: Path, faiss_answers,
                                                                   tmp_path: Path) -> None:
    photos = sorted(demo_copy_module.rglob("*.jpg"))
    with ImageIndex.create(tmp_path / "index", store=milvus_server.store("restarted")) as index:
        assert index.add_files(photos[:12]).added == 12
    milvus_server.stop()
    milvus_server.start()
    with ImageIndex.open(tmp_path / "index") as index:
        assert index._store.backend.count == 12  # the flushed collection came back with the server
        assert index.add_folder(demo_copy_module).added == 18
        assert index._store.backend.count == 30
        assert paths_of(index) == faiss_answers


@pytest.mark.slow  # restarts the server: about 55 s on 2 cores
def test_milvus_server_killed_mid_indexing_says_so_and_the_next_run_completes(milvus_server: MilvusServer,
                                                                              demo_copy_module: Path,
                                                                              faiss_answers, tmp_path: Path,
                                                                              monkeypatch) -> None:
    monkeypatch.setattr(milvus_module, "INSERT_ROWS", 4)  # several inserts per batch: the kill lands between two

    def kill_the_server(done: int, total: int) -> None:
        if done >= 8:
            milvus_server.kill()

    with ImageIndex.create(tmp_path / "index", store=milvus_server.store("killed")) as index:
        with pytest.raises(ConnectionError, match=milvus_server.address):
            index.add_folder(demo_copy_module, progress=kill_the_server)
        started = time.perf_counter()
        with pytest.raises(ConnectionError, match=f"Milvus server at {milvus_server.address}"):
            index.search(1, k=5)  # down at search time: an error naming the address, at once
        assert time.perf_counter() - started < milvus_module.CONNECT_SECONDS + 2
    milvus_server.start()
    with ImageIndex.open(tmp_path / "index") as index:
        report = index.add_folder(demo_copy_module)
        assert report.added + report.unchanged == 30
        assert len(index) == index._store.backend.count == 30
        assert paths_of(index) == faiss_answers


def test_milvus_server_that_hangs_at_search_time_is_reported_within_the_timeout(milvus_server: MilvusServer,
                                                                               monkeypatch) -> None:
    monkeypatch.setattr(milvus_module, "SEARCH_SECONDS", 3.0)
    ids = np.arange(50, dtype=np.int64)
    backend = MilvusBackend(DIMENSION, milvus_server.store("hangs"), owner="test-model")
    backend.add(ids, unit_vectors(50, seed=6))
    query = unit_vectors(1, seed=7)
    expected = backend.search(query, 5)[1]
    os.killpg(milvus_server.process.pid, signal.SIGSTOP)  # accepts connections, answers nothing
    try:
        started = time.perf_counter()
        with pytest.raises(ConnectionError, match=f"Milvus server at {milvus_server.address} did not answer"):
            backend.search(query, 5)
        assert time.perf_counter() - started < 3.0 + 3
    finally:
        os.killpg(milvus_server.process.pid, signal.SIGCONT)
    np.testing.assert_array_equal(backend.search(query, 5)[1], expected)
