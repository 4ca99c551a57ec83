"""ImageIndex: incremental indexing, persistence, search."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from conftest import DEMO_GALLERY, write_photo

from lookalike.index import ImageIndex, ModelMismatchError


def test_index_then_reindex_unchanged_embeds_nothing(tmp_path, photo_folder):
    with ImageIndex.create(tmp_path / "idx") as index:
        first = index.add_folder(photo_folder)
        second = index.add_folder(photo_folder)
    assert (first.added, first.failed) == (8, 0)
    assert (second.added, second.updated, second.unchanged, second.removed) == (0, 0, 8, 0)


def test_modified_file_is_updated_and_keeps_its_id(tmp_path, photo_folder):
    target = photo_folder / "set0" / "photo0.png"
    with ImageIndex.create(tmp_path / "idx") as index:
        index.add_folder(photo_folder)
        old = index.record_by_path(str(target))
        write_photo(target, seed=99)
        report = index.add_folder(photo_folder)
        new = index.record_by_path(str(target))
    assert (report.updated, report.unchanged) == (1, 7)
    assert new.id == old.id and new.content_hash != old.content_hash


def test_deleted_file_is_removed(tmp_path, photo_folder):
    with ImageIndex.create(tmp_path / "idx") as index:
        index.add_folder(photo_folder)
        (photo_folder / "set1" / "photo1.png").unlink()
        report = index.add_folder(photo_folder)
        assert report.removed == 1 and len(index) == 7


def test_renamed_file_reuses_vector_without_embedding(tmp_path, photo_folder, monkeypatch):
    with ImageIndex.create(tmp_path / "idx") as index:
        index.add_folder(photo_folder)
        old = index.record_by_path(str(photo_folder / "set0" / "photo2.png"))
        old_vector = index.vectors([old.id])[0]
        (photo_folder / "set0" / "photo2.png").rename(photo_folder / "set1" / "moved.png")
        monkeypatch.setattr(index.embedder, "embed_batch", lambda batch: pytest.fail("must not embed"))
        report = index.add_folder(photo_folder)
        moved = index.record_by_path(str(photo_folder / "set1" / "moved.png"))
        assert (report.reused, report.removed, report.added) == (1, 1, 1)
        np.testing.assert_array_equal(index.vectors([moved.id])[0], old_vector)


def test_progress_counts_every_file_up_to_the_total(tmp_path, photo_folder):
    write_photo(photo_folder / "new" / "extra.png", seed=42)
    with ImageIndex.create(tmp_path / "idx") as index:
        index.add_files(sorted(photo_folder.rglob("photo*.png")))
        calls = []
        report = index.add_folder(photo_folder, progress=lambda done, total: calls.append((done, total)))
    assert (report.added, report.unchanged) == (1, 8)
    assert calls[-1] == (9, 9)  # unchanged files count as done too
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_index_survives_reopen_and_search_finds_the_same_image(tmp_path, photo_folder):
    with ImageIndex.create(tmp_path / "idx") as index:
        index.add_folder(photo_folder)
    with ImageIndex.open(tmp_path / "idx") as index:
        query = tmp_path / "query.png"
        shutil.copy(photo_folder / "set1" / "photo3.png", query)
        result = index.search(query, k=3)
    assert result.matches[0].path.endswith("photo3.png")
    assert result.matches[0].score == pytest.approx(1.0, abs=0.05)
    assert set(result.timings) == {"decode", "embed", "search"}


def test_stale_faiss_copy_is_rebuilt_from_the_database(tmp_path, photo_folder):
    with ImageIndex.create(tmp_path / "idx") as index:
        index.add_folder(photo_folder)
    for copy in (tmp_path / "idx").glob("vectors-*.faiss"):
        copy.write_bytes(b"garbage")
    with ImageIndex.open(tmp_path / "idx") as index:
        assert index._store.backend.count == 8
        assert len(index.search(0 + 1, k=3).matches) == 3


def test_opening_a_sound_index_does_not_scan_its_table_for_damaged_rows(tmp_path, photo_folder, monkeypatch):
    """The scan reads every row's vector (2.5 s of a 3 s open at 100,000 images, page cache cold): only when the
    saved copy holds fewer vectors than the database has rows."""
    with ImageIndex.create(tmp_path / "idx") as index:
        index.add_folder(photo_folder)
    from lookalike.index.rows import ImageRows

    monkeypatch.setattr(ImageRows, "damaged_rows", lambda self: pytest.fail("scanned for damaged rows"))
    with ImageIndex.open(tmp_path / "idx") as index:
        assert index._store.backend.count == 8


def test_search_by_id_excludes_the_query_and_respects_k(demo_index):
    result = demo_index.search(5, k=4)
    assert len(result.matches) == 4
    assert all(match.id != 5 for match in result.matches)
    scores = [m.score for m in result.matches]
    assert scores == sorted(scores, reverse=True)


def test_euclidean_scores_are_inverse_distances_with_the_same_order(demo_index):
    cosine = demo_index.search(7, k=5, method="cosine")
    euclidean = demo_index.search(7, k=5, method="euclidean")
    assert [m.id for m in cosine.matches] == [m.id for m in euclidean.matches]
    for c, e in zip(cosine.matches, euclidean.matches, strict=True):
        assert e.score == pytest.approx(1 / (1 + np.sqrt(2 - 2 * c.score)), abs=1e-5)


def test_min_score_drops_weak_matches(demo_index):
    result = demo_index.search(3, k=50, min_score=0.5, expand="none")
    assert result.matches and all(m.score >= 0.5 for m in result.matches)
    assert len(result.matches) < 50


def test_random_query_is_reproducible_with_a_seed(demo_index):
    assert demo_index.search(random=True, seed=4).query == demo_index.search(random=True, seed=4).query


def test_similar_real_photos_rank_same_type_first(demo_index):
    """Real photos: shoes look like shoes. Most of a shoe photo's neighbours are shoes."""
    shoe = next(r for r in demo_index.records() if "/shoes/" in r.path)
    result = demo_index.search(shoe.id, k=5)
    assert sum("/shoes/" in m.path for m in result.matches) >= 4


def test_vector_of_another_dimension_is_refused(demo_index):
    with pytest.raises(ModelMismatchError, match="dimensions"):
        demo_index.search(vector=np.ones(512, dtype=np.float32))


def test_vector_from_another_model_is_refused(demo_index):
    other = dict(demo_index.manifest.embedder, model="efficientnet-lite2")
    with pytest.raises(ModelMismatchError, match="different model"):
        demo_index.search(vector=np.ones(1280, dtype=np.float32), model=other)


def test_index_folder_moved_with_its_photos_still_works(tmp_path, photo_folder):
    with ImageIndex.create(tmp_path / "idx") as index:
        index.add_folder(photo_folder)
    shutil.move(tmp_path, tmp_path.parent / (tmp_path.name + "-moved"))
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    with ImageIndex.open(moved / "idx") as index:
        assert all(os.path.exists(r.path) for r in index.records())
        assert index.add_folder(moved / "photos").unchanged == 8


# --- one query, one set of options ------------------------------------------------------------
def test_every_kind_of_query_resolves_to_the_same_answer(demo_index):
    """An indexed file's path, its bytes, its id and its vector give the same neighbours."""
    shoe = next(r for r in demo_index.records() if "/shoes/" in r.path)
    with open(shoe.path, "rb") as handle:
        data = handle.read()
    by_path = demo_index.search(shoe.path, k=6)
    by_id = demo_index.search(id=shoe.id, k=6)
    by_bytes = demo_index.search(data, k=7)
    by_vector = demo_index.search(vector=demo_index.vectors([shoe.id])[0], k=7)
    assert by_path.query_id == by_id.query_id == shoe.id and by_bytes.query_id is None
    assert [m.id for m in by_path.matches] == [m.id for m in by_id.matches]
    assert [m.id for m in by_bytes.matches][1:] == [m.id for m in by_id.matches]  # bytes find the file itself first
    assert [m.id for m in by_vector.matches] == [m.id for m in by_bytes.matches]


def test_a_query_must_be_exactly_one_thing(demo_index):
    with pytest.raises(ValueError, match="exactly one query"):
        demo_index.search()
    with pytest.raises(ValueError, match="exactly one query"):
        demo_index.search(3, random=True)


def test_unknown_options_and_bad_values_are_refused(demo_index):
    with pytest.raises(TypeError, match="metric"):
        demo_index.search(3, metric="euclidean")
    with pytest.raises(ValueError, match="k must be"):
        demo_index.search(3, k=0)
    with pytest.raises(ValueError, match="unknown method 'nonsense'.*cosine, euclidean"):
        demo_index.search(3, method="nonsense")


def test_where_with_two_values_of_one_name_keeps_either(demo_clone):
    ids = demo_clone.ids()[:6].tolist()
    demo_clone.set_labels({ids[0]: {"colour": "red"}, ids[1]: {"colour": "blue"}, ids[2]: {"colour": "green"}})
    as_terms = demo_clone.search(id=ids[5], k=10, where=["colour=red", "colour=blue"])
    as_mapping = demo_clone.search(id=ids[5], k=10, where={"colour": ["red", "blue"]})
    assert {m.id for m in as_terms.matches} == {ids[0], ids[1]}
    assert [m.id for m in as_mapping.matches] == [m.id for m in as_terms.matches]
    assert demo_clone.label_counts() == {"colour": {"blue": 1, "green": 1, "red": 1}}


def test_path_prefix_keeps_images_under_a_folder(demo_index):
    shoes = os.path.join(str(DEMO_GALLERY), "shoes")
    result = demo_index.search(random=True, seed=1, k=20, path_prefix=shoes)
    assert result.matches and all(m.path.startswith(shoes + os.sep) for m in result.matches)


# --- the default reduction is the API's policy ----------------------------------------------------
@pytest.fixture
def small_default_plan(monkeypatch):
    """The default PCA plan shrunk to 6 components at 12 images, so growing past it is cheap to test."""
    from lookalike import reduction

    monkeypatch.setattr(reduction, "DEFAULT_PLAN", dict(reduction.DEFAULT_PLAN, components=6, min_images=12))


def test_default_pca_is_fitted_when_an_index_first_grows_past_the_threshold(tmp_path, small_default_plan):
    first, second = tmp_path / "first", tmp_path / "second"
    for number in range(8):
        write_photo(first / f"a{number}.png", seed=number)
        write_photo(second / f"b{number}.png", seed=100 + number)
    with ImageIndex.create(tmp_path / "idx") as index:
        small = index.add_folder(first)
        assert index.reduction is None and small.reduction is None
        grown = index.add_folder(second)
        assert grown.reduction is not None and index.reduction.dimension == 6
        assert index.manifest.reduction["fitted_on"] == 16
    with ImageIndex.open(tmp_path / "idx") as reopened:
        assert reopened.reduction.dimension == 6


def test_pca_zero_keeps_full_vectors_and_removal_is_not_undone(tmp_path, small_default_plan):
    for number in range(14):
        write_photo(tmp_path / "photos" / f"p{number}.png", seed=number)
    with ImageIndex.create(tmp_path / "off", pca=0) as off:
        off.add_folder(tmp_path / "photos")
        assert off.reduction is None
    with ImageIndex.create(tmp_path / "on") as on:
        on.add_folder(tmp_path / "photos")
        assert on.reduction is not None
        on.remove_pca()
        write_photo(tmp_path / "photos" / "late.png", seed=99)
        on.add_folder(tmp_path / "photos")
        assert on.reduction is None


def test_open_or_create_refuses_another_pca_than_the_index_has(tmp_path, photo_folder):
    with ImageIndex.create(tmp_path / "idx", pca=4) as index:
        index.add_folder(photo_folder)
        assert index.reduction.dimension == 4
    with pytest.raises(ValueError, match="already has PCA to 4"):
        ImageIndex.open_or_create(tmp_path / "idx", pca=8)
    ImageIndex.open_or_create(tmp_path / "idx", pca=4).close()


def test_auto_index_type_without_a_count_is_chosen_when_the_first_photos_arrive(tmp_path, photo_folder,
                                                                                monkeypatch):
    from lookalike.index import autoselect

    monkeypatch.setattr(autoselect, "flat_latency_ms", lambda count, dimension: 100.0 if count >= 8 else 0.1)
    with ImageIndex.create(tmp_path / "idx", index_type="auto") as index:
        assert index.manifest.index_type == "flat-ip" and index.manifest.index_type_pending is not None
        index.add_folder(photo_folder)
        assert index.manifest.index_type == "hnsw" and index.manifest.index_type_pending is None
        assert len(index.search(id=int(index.ids()[0]), k=3).matches) == 3
    with ImageIndex.open(tmp_path / "idx") as reopened:
        assert reopened.manifest.index_type == "hnsw" and len(reopened) == 8


def test_a_file_given_twice_is_indexed_once(tmp_path, photo_folder):
    photo = sorted(photo_folder.rglob("*.png"))[0]
    with ImageIndex.create(tmp_path / "idx") as index:
        report = index.add_files([photo, photo, os.path.relpath(photo)])
        assert (report.added, len(index)) == (1, 1)


def test_search_answers_nothing_once_every_image_is_removed_and_finds_them_again_when_added(tmp_path, photo_folder):
    with ImageIndex.create(tmp_path / "idx", pca=0, dba=0) as index:
        query = index.searcher.embed_image(sorted(photo_folder.rglob("*.png"))[0])[0]
        assert index.search(vector=query, k=3).matches == [] and len(index.searcher.nearest(query, 3)[0]) == 0
        index.add_folder(photo_folder)
        assert len(index.search(vector=query, k=3).matches) == 3
        index.remove_ids(index.ids().tolist())
        assert index.search(vector=query, k=3).matches == [] and len(index.searcher.nearest(query, 3)[0]) == 0
        index.add_folder(photo_folder)
        assert len(index.search(vector=query, k=3).matches) == 3 and len(index.searcher.nearest(query, 3)[0]) == 3
