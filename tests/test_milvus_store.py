"""The Milvus store on a real Milvus Lite file: same answers as FAISS, same API and CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from lookalike.backends.faiss_flat import FlatBackend  # noqa: E402
from lookalike.backends.milvus import MilvusBackend, parse_store  # noqa: E402
from lookalike.cli import main  # noqa: E402
from lookalike.index import ImageIndex  # noqa: E402

DIMENSION = 64


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Milvus Lite file per module (each file starts a Milvus Lite server)."""
    return tmp_path_factory.mktemp("milvus") / "vectors.db"


def unit_vectors(count: int, seed: int, dimension: int = DIMENSION) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def both_stores(database: Path, collection: str, ids: np.ndarray, vectors: np.ndarray):
    milvus = MilvusBackend(DIMENSION, f"{database}/{collection}", owner="test-model")
    flat = FlatBackend(DIMENSION)
    for backend in (milvus, flat):
        backend.add(ids, vectors)
    return milvus, flat


def test_exact_search_returns_the_same_top_10_as_faiss(database: Path) -> None:
    ids = np.arange(1, 501, dtype=np.int64)
    milvus, flat = both_stores(database, "same_as_faiss", ids, unit_vectors(500, seed=1))
    queries = unit_vectors(20, seed=2)
    milvus_scores, milvus_ids = milvus.search(queries, 10)
    flat_scores, flat_ids = flat.search(queries, 10)
    assert milvus.count == 500
    np.testing.assert_array_equal(milvus_ids, flat_ids)
    np.testing.assert_allclose(milvus_scores, flat_scores, atol=1e-5)


def test_filter_and_delete_behave_like_faiss(database: Path) -> None:
    ids = np.arange(10, 310, dtype=np.int64)
    milvus, flat = both_stores(database, "filter_delete", ids, unit_vectors(300, seed=3))
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


def test_collection_of_another_dimension_or_model_is_refused(database: Path) -> None:
    MilvusBackend(DIMENSION, f"{database}/owned", owner="test-model").add(np.arange(3), unit_vectors(3, seed=5))
    with pytest.raises(ValueError, match="made by another model"):
        MilvusBackend(DIMENSION * 2, f"{database}/owned", owner="test-model")
    with pytest.raises(ValueError, match="made by another model"):
        MilvusBackend(DIMENSION, f"{database}/owned", owner="another-model")
    reopened = MilvusBackend(DIMENSION, f"{database}/owned", owner="test-model")  # same owner: emptied, reused
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


def test_image_index_on_milvus_matches_the_faiss_index(database: Path, demo_copy: Path, tmp_path: Path) -> None:
    store = f"milvus-lite://{database}/gallery"
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


def test_cli_indexes_into_milvus_and_refuses_another_store(database: Path, demo_copy: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    index = str(tmp_path / "cli-index")
    assert main(["index", str(demo_copy), "--index", index, "--store", f"{database}/cli", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 30
    assert main(["search", "--id", "3", "--index", index, "-k", "5", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["matches"]) == 5
    assert main(["index", str(demo_copy), "--index", index, "--store", "milvus://127.0.0.1:9/x"]) == 2
    assert "keeps its vectors in" in capsys.readouterr().err
