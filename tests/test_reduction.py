"""PCA reduction: fitted on the indexed vectors, kept beside the index, applied to queries and later additions."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from lookalike.cli import main
from lookalike.index import ImageIndex, ModelMismatchError
from lookalike.index.folder import IndexFolder
from lookalike.reduction import fit_pca, load_reduction


def test_pca_keeps_the_strongest_directions_and_normalises():
    rng = np.random.default_rng(0)
    vectors = (rng.standard_normal((200, 3)) @ np.diag([10.0, 1.0, 0.1]) @ np.eye(3, 16)).astype(np.float32)
    reduction = fit_pca(vectors, 2)
    assert reduction.dimension == 2
    assert abs(reduction.components[0, 0]) > 0.99
    np.testing.assert_allclose(np.linalg.norm(reduction.apply(vectors), axis=1), 1.0, atol=1e-5)
    whitened = fit_pca(vectors, 2, whiten=True)
    projected = (vectors - whitened.mean) @ whitened.components.T * whitened.scale
    np.testing.assert_allclose(projected.std(axis=0, ddof=1), 1.0, rtol=1e-3)


def test_more_components_than_vectors_is_a_clear_error():
    with pytest.raises(ValueError, match="needs at least 64 vectors"):
        fit_pca(np.ones((10, 128), np.float32), 64)


@pytest.fixture
def reduced(demo_copy, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(demo_copy, photos)
    late = sorted(photos.glob("dress/*.jpg"))[-1]
    held = tmp_path / "late.jpg"
    late.rename(held)
    index = ImageIndex.create(tmp_path / "idx")
    index.add_folder(photos)
    index.fit_pca(16)
    yield index, photos, held
    index.close()


def test_index_searches_reduced_vectors_and_keeps_full_ones(reduced, tmp_path):
    index, photos, _ = reduced
    assert index._store.backend.dimension == 16 and index._store.dimension == 1280
    ids, full = index.vectors()
    assert full.shape[1] == 1280
    photo = sorted(photos.glob("hat/*.jpg"))[0]
    query = shutil.copy(photo, tmp_path / "query.jpg")  # not in the index: embedded, then reduced
    result = index.search(query, k=3)
    assert result.matches[0].path == str(photo) and result.matches[0].score == pytest.approx(1.0, abs=0.05)
    assert result.matches[1].score < 0.999
    assert index.info()["reduction"] == f"pca 1280 -> 16 (fitted on {len(ids)})"


def test_reduction_survives_reopen_and_applies_to_later_additions(reduced, tmp_path):
    index, photos, held = reduced
    index.close()
    with ImageIndex.open(tmp_path / "idx") as reopened:
        assert reopened.reduction.dimension == 16 and reopened.manifest.reduction["components"] == 16
        reopened.add_files([held])
        assert reopened._store.backend.count == len(reopened)
        query = shutil.copy(held, tmp_path / "query.jpg")
        assert reopened.search(query, k=1).matches[0].path == str(held)


def test_refit_and_removal_are_explicit_and_consistent(reduced, tmp_path):
    index, photos, _ = reduced
    index.fit_pca(8, whiten=True, sample=20)
    assert index._store.backend.dimension == 8 and load_reduction(IndexFolder(tmp_path / "idx").reduction).whiten
    assert index.manifest.reduction["fitted_on"] == 20
    index.remove_pca()
    assert index._store.backend.dimension == 1280 and load_reduction(IndexFolder(tmp_path / "idx").reduction) is None
    index.close()
    with ImageIndex.open(tmp_path / "idx") as reopened:
        assert reopened.reduction is None and reopened._store.backend.dimension == 1280


def test_reduced_vector_query_is_refused(reduced):
    index, _, _ = reduced
    with pytest.raises(ModelMismatchError, match="reduced by PCA"):
        index.search(vector=np.ones(16, np.float32))


def test_cli_index_with_pca_then_a_different_pca_needs_the_pca_verb(demo_copy, tmp_path, capsys):
    folder = str(tmp_path / "idx")
    assert main(["index", str(demo_copy), "--index", folder, "--pca", "12"]) == 0
    assert main(["index", str(demo_copy), "--index", folder, "--pca", "12"]) == 0  # same: nothing refitted
    assert main(["index", str(demo_copy), "--index", folder, "--pca", "10", "--whiten"]) == 2
    assert "refit explicitly with `lookalike pca`" in capsys.readouterr().err
    assert main(["pca", "--index", folder, "--components", "10", "--whiten"]) == 0
    assert "pca 1280 -> 10, whitened" in capsys.readouterr().out
    assert main(["pca", "--index", folder, "--off"]) == 0
    assert main(["pca", "--index", folder, "--components", "5000"]) == 2


def test_cli_fits_the_default_pca_once_the_index_is_big_enough_unless_pca_0(demo_copy, tmp_path, monkeypatch,
                                                                             capsys):
    from lookalike import reduction

    monkeypatch.setattr(reduction, "DEFAULT_PLAN", dict(reduction.DEFAULT_PLAN, components=8, min_images=20))
    big, skipped = tmp_path / "big", tmp_path / "skipped"
    assert main(["index", str(demo_copy / "shoes"), "--index", str(big)]) == 0  # 3 images: too few
    assert "PCA" not in capsys.readouterr().err and load_reduction(IndexFolder(big).reduction) is None
    assert main(["index", str(demo_copy), "--index", str(big)]) == 0  # grown past 20: fitted now, by the API
    photos = len(list(demo_copy.rglob("*.jpg")))
    note = f"fitted the default PCA (pca 1280 -> 8 (fitted on {photos})); `lookalike pca --index {big} --off` undoes it"
    assert note in capsys.readouterr().err
    assert load_reduction(IndexFolder(big).reduction).dimension == 8
    assert main(["index", str(demo_copy), "--index", str(skipped), "--pca", "0"]) == 0
    assert load_reduction(IndexFolder(skipped).reduction) is None
    assert main(["index", str(demo_copy), "--index", str(skipped)]) == 0  # the opt-out is kept
    assert load_reduction(IndexFolder(skipped).reduction) is None and "PCA" not in capsys.readouterr().err


def test_pca_without_a_sample_size_is_fitted_on_a_bounded_sample(demo_clone, monkeypatch):
    import lookalike.index.upkeep as index_module
    from lookalike import reduction

    fitted_on = []

    def spy(vectors, components, whiten=False):
        fitted_on.append(len(vectors))
        return fit_pca(vectors, components, whiten)

    monkeypatch.setattr(reduction, "MAX_FIT_SAMPLE", 100)
    monkeypatch.setattr(index_module, "fit_pca", spy)
    demo_clone.fit_pca(8)
    demo_clone.fit_pca(8, sample=120)
    assert fitted_on == [100, 120] and len(demo_clone) == 144


def test_vectors_reduced_in_chunks_equal_those_reduced_at_once(tmp_path, photo_folder, monkeypatch):
    from lookalike.index import store

    with ImageIndex.create(tmp_path / "idx", pca=4, dba=0) as index:
        index.add_folder(photo_folder)
        ids = index.ids().tolist()
        at_once = index.reduction.apply(index.vectors(ids))
        monkeypatch.setattr(store, "SEARCHABLE_CHUNK", 3)  # 8 images: chunks of 3, 3 and 2
        np.testing.assert_allclose(index._store.searchable_vectors(ids), at_once, atol=1e-6)
